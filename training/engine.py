"""The pieces of the training loop: optimiser, schedule, sampling, one optimiser step, evaluation, pictures.

training/train.py strings them together; each piece takes numbers and modules, not the config.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from training.checkpoint import unwrap
from training.distributed import Context, any_rank, sum_over_ranks
from training.metrics import EXTRA_NAMES, METRIC_NAMES, MetricMeans, batch_figures, cluster_labels


def build_optimizer(model: nn.Module, lr: float, backbone_lr: float, weight_decay: float,
                    betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with two learning rates: the encoder (``model.encoder``) gets ``backbone_lr``.
    Biases and norm scales (1-D parameters) get no weight decay."""
    groups = {(is_backbone, decays): [] for is_backbone in (True, False) for decays in (True, False)}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups[(name.startswith("encoder."), parameter.ndim > 1)].append(parameter)
    return torch.optim.AdamW(
        [
            {"params": params, "lr": backbone_lr if is_backbone else lr, "weight_decay": weight_decay if decays else 0.0}
            for (is_backbone, decays), params in groups.items()
            if params
        ],
        lr=lr,
        betas=tuple(betas),
        # The fused kernel takes ``found_inf`` (a device tensor) and skips the update on the device: a step
        # with a non-finite loss is dropped without reading anything back to the host (train_step).
        fused=True,
    )


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, pct_start: float, div_factor: float,
                    final_div_factor: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """OneCycle over ``total_steps`` optimiser steps; each group peaks at its own learning rate."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=max(total_steps, 2),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum=False,  # AdamW's betas stay fixed (iDisc)
    )


class ShuffledSampler(Sampler[int]):
    """A fresh permutation per epoch, seeded by (seed, epoch), split over the ranks, able to start mid-epoch.

    Every rank sees ``length // world_size`` distinct items per epoch (the tail is dropped so all ranks run
    the same number of steps). ``set_position(epoch, offset)`` lets --resume continue with the very next
    item instead of replaying or skipping data.
    """

    def __init__(self, length: int, seed: int, rank: int = 0, world_size: int = 1):
        if length < world_size:
            raise ValueError(f"dataset of {length} items is too small for {world_size} processes")
        self.length, self.seed, self.rank, self.world_size = length, seed, rank, world_size
        self.per_rank = length // world_size
        self.epoch, self.offset = 0, 0

    def set_position(self, epoch: int, offset: int) -> None:
        self.epoch, self.offset = epoch, offset

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator)[: self.per_rank * self.world_size]
        mine = order[self.rank :: self.world_size][self.offset :].tolist()
        self.epoch, self.offset = self.epoch + 1, 0  # the next pass is the next epoch
        return iter(mine)

    def __len__(self) -> int:
        return self.per_rank - self.offset


def draw_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of item ``index`` in epoch ``epoch`` of a run seeded ``seed``."""
    return (seed * 1_000_003 + epoch) * 10_000_019 + index


class SeededDraws(Sampler[tuple[int, int]]):
    """Wraps a ShuffledSampler: yields (item index, augmentation seed) pairs, for SeededItems."""

    def __init__(self, sampler: ShuffledSampler):
        self.sampler = sampler

    def __iter__(self):
        epoch = self.sampler.epoch  # iterating the sampler moves it on to the next epoch
        return iter([(index, draw_seed(self.sampler.seed, epoch, index)) for index in self.sampler])

    def __len__(self) -> int:
        return len(self.sampler)


class SeededItems(Dataset):
    """Item (index, seed) of a dataset whose augmentation draws from torch's generator, seeded per item.

    The augmentation of every draw is then a function of (run seed, epoch, index) alone: not of the
    worker that renders it, of --resume, or of how many random numbers building the model took (method I
    builds three cluster matrices, II/III one), so every method of the ablation sees the same images.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it was
            torch.manual_seed(seed)
            return self.dataset[index]


@dataclass(frozen=True)
class LoaderSettings:
    """How batches reach the device: worker processes, pinned host memory, batches prefetched per worker."""

    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int = 2

    def loader_kwargs(self) -> dict:
        workers = self.num_workers > 0
        return {"num_workers": self.num_workers, "pin_memory": self.pin_memory, "persistent_workers": workers,
                "prefetch_factor": self.prefetch_factor if workers else None}


def loader_settings(num_workers: int, pin_memory: bool, prefetch_factor: int, device: torch.device) -> LoaderSettings:
    """``num_workers`` -1 = sized for ``device``: on CUDA up to 8 workers (scene rendering and augmentation
    must keep up with a GPU step), on the CPU up to 2 (the workers compete with training for the cores);
    never more than the cores this process may use, shared by the processes torchrun starts on this
    machine (LOCAL_WORLD_SIZE), one core left to the training process. Pinned memory only on CUDA, where it
    makes the copy asynchronous (``non_blocking=True``)."""
    if num_workers < 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        per_process = cores // max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1) - 1
        num_workers = max(0, min(8 if device.type == "cuda" else 2, per_process))
    return LoaderSettings(num_workers, pin_memory and device.type == "cuda", prefetch_factor)


def endless_batches(dataset: Dataset, batch_size: int, loading: LoaderSettings, seed: int, context: Context,
                    micro_batches_done: int = 0):
    """Yields training micro-batches forever, continuing after ``micro_batches_done`` of them.

    Item order and augmentation depend only on ``seed`` (and the rank): see SeededItems."""
    sampler = ShuffledSampler(len(dataset), seed, context.rank, context.world_size)
    per_epoch = sampler.per_rank // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {sampler.per_rank} training items per process")
    epoch, within = divmod(micro_batches_done, per_epoch)
    sampler.set_position(epoch, within * batch_size)
    loader = DataLoader(SeededItems(dataset), batch_size=batch_size, sampler=SeededDraws(sampler), drop_last=True,
                        worker_init_fn=seed_worker, **loading.loader_kwargs())
    return _forever(loader)  # the checks above run now, at the call, not at the first batch


def _forever(loader: DataLoader):
    while True:
        yield from loader


def seed_worker(worker_id: int) -> None:
    """Augmentation randomness in loader workers follows torch's per-worker seed (seeded runs)."""
    np.random.seed(torch.initial_seed() % 2**32)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on GPU only (amp_dtype); a no-op on CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=amp_dtype(device))


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the GPU computes it natively (compute capability 8.0 and later: A100, H100, RTX 30xx,
    Jetson Orin), else fp16, which needs a GradScaler (training/train.py makes one for fp16 only).

    Not ``torch.cuda.is_bf16_supported()``: it also says yes where bf16 is only emulated (a T4, 7.5), which
    is slow and would train without loss scaling's protection."""
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def to_host(values: list[torch.Tensor]) -> list[float]:
    """Every figure the training loop reads back from the device, in one copy (one host sync).

    Routing all reads through here is what keeps the loop at one sync per logging interval."""
    if not values:
        return []
    return torch.stack([value.detach().float().reshape(()) for value in values]).cpu().tolist()


def as_float32(outputs: dict) -> dict:
    """The criterion (FCM membership, log terms, Hungarian costs) runs in fp32, outside autocast."""
    return {"depth": outputs["depth"].float(), "attn": [a.float() for a in outputs["attn"]]}


@dataclass
class StepResult:
    """One optimiser step, as 0-d tensors on the device (read them with to_host, at log steps only)."""

    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # mean over the micro-batches, unweighted
    loss: torch.Tensor | None = None  # the weighted total
    grad_norm: torch.Tensor | None = None
    skipped: torch.Tensor | None = None  # bool: a loss or gradient was not finite (on some rank): no update
    weights: dict[str, float] = field(default_factory=dict)  # the weight table of this step (warm-up applied)
    # With measure_features: {term: L2 norm of d term / d (F1, F2, F3)}, unweighted, first micro-batch only
    feature_grad_norms: dict[str, torch.Tensor] = field(default_factory=dict)


class FeatureCapture:
    """Keeps the neck's outputs F1..F3 of the next forward pass (a forward hook on ``model.neck``)."""

    def __init__(self, model: nn.Module):
        self.features: list[torch.Tensor] = []
        self.handle = unwrap(model).neck.register_forward_hook(self.keep)

    def keep(self, module: nn.Module, inputs, outputs: list[torch.Tensor]) -> None:
        self.features = list(outputs)

    def close(self) -> None:
        self.handle.remove()


def feature_gradient_norms(terms: dict[str, torch.Tensor], features: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """{term: L2 norm, over F1..F3 together, of the term's gradient at ``features``} (graph kept), 0-d tensors."""
    norms = {}
    for name, value in terms.items():
        grads = torch.autograd.grad(value, features, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[name] = torch.stack(squares).sum().sqrt() if squares else torch.zeros((), device=value.device)
    return norms


def train_step(model: nn.Module, criterion: nn.Module, micro_batches: list[dict], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None, grad_clip: float, context: Context, amp: bool,
               step: int | None = None, measure_features: bool = False) -> StepResult:
    """One optimiser step over ``len(micro_batches)`` accumulated micro-batches, without reading anything
    back to the host: the result stays on the device (StepResult).

    ``optimizer``: built by build_optimizer (fused AdamW, which skips its update when ``found_inf`` is set).
    ``step``: the optimiser step (0 = first) that sets the ICM warm-up; None = after any warm-up.
    ``measure_features``: also each term's gradient norm at the neck features (first micro-batch).
    A non-finite model output, loss or gradient norm on any rank makes every rank skip the update: the flag
    is all-reduced on the device (no rank leaves DDP's gradient all-reduce). Gradients are all-reduced on
    the last micro-batch only. The criterion itself still copies each cluster-instance cost matrix to the
    host for scipy's Hungarian matcher (training/losses/matcher.py) where ICM terms are on.
    """
    optimizer.zero_grad(set_to_none=True)
    result = StepResult(weights=criterion.weights_at(step))
    finite = torch.ones((), dtype=torch.bool, device=context.device)
    sums: dict[str, torch.Tensor] = {}
    for index, batch in enumerate(micro_batches):
        batch = to_device(batch, context.device)
        last = index == len(micro_batches) - 1
        sync = model.no_sync() if context.distributed and not last else contextlib.nullcontext()
        capture = FeatureCapture(model) if measure_features and index == 0 else None
        with sync:
            try:
                with autocast(context.device, amp):
                    outputs = model(batch["image"])
            finally:
                if capture is not None:
                    capture.close()
            outputs = as_float32(outputs)
            # The criterion copes with non-finite outputs (its matcher treats NaN costs as the worst pairs):
            # its loss is then non-finite too, and the step is skipped below.
            terms = criterion(outputs, batch)
            loss = criterion.total(terms, step) / len(micro_batches)
            finite = finite & torch.isfinite(loss) & torch.stack(
                [torch.isfinite(t).all() for t in (outputs["depth"], *outputs["attn"])]).all()
            if capture is not None:
                result.feature_grad_norms = feature_gradient_norms(terms, capture.features)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach() / len(micro_batches)
    if scaler is not None:
        scaler.unscale_(optimizer)  # records fp16 overflow for scaler.update(), on the device
    parameters = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else math.inf)
    skipped = any_rank(~(finite & torch.isfinite(grad_norm)), context)
    # Fused AdamW skips the update of every parameter (and its step count) where found_inf is 1. The scaler's
    # own step() is not used: it would skip only for overflowed gradients, not for a non-finite loss whose
    # gradients happen to be finite.
    optimizer.grad_scale, optimizer.found_inf = None, skipped.float()
    optimizer.step()
    if scaler is not None:
        scaler.update()  # halves the scale after an fp16 overflow, grows it after a run of good steps
    result.terms, result.grad_norm, result.skipped = sums, grad_norm.detach(), skipped
    result.loss = sum(result.weights[name] * value for name, value in sums.items())
    return result


def evaluation_loader(dataset: Dataset, batch_size: int, loading: LoaderSettings, context: Context,
                      max_images: int = 0) -> DataLoader:
    """Each rank takes every world_size-th image (no padding: sums over ranks count each image once)."""
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    indices = list(range(context.rank, count, context.world_size))
    return DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                      **loading.loader_kwargs())


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, context: Context, min_depth: float, max_depth: float,
             crop: str = "none", full_size: tuple[int, int] | None = None, amp: bool = True) -> dict[str, float]:
    """Means over images (all ranks together) of METRIC_NAMES + EXTRA_NAMES; "images" = images evaluated."""
    was_training = model.training
    model.eval()
    means = MetricMeans()
    for batch in loader:
        batch = to_device(batch, context.device)
        with autocast(context.device, amp):
            outputs = model(batch["image"])
        for figures in batch_figures(as_float32(outputs), batch, min_depth, max_depth, crop, full_size):
            means.add(figures)
            means.add({"images": 1.0 if figures else None})
    model.train(was_training)
    names = METRIC_NAMES + EXTRA_NAMES + ("images",)
    sums, counts = sum_over_ranks(means.sums, means.counts, context, names)
    total = MetricMeans()
    total.merge(sums, counts)
    result = total.means()
    result["images"] = float(counts.get("images", 0))
    return result


# --- pictures for TensorBoard ---------------------------------------------------------------------------
# A perceptually ordered ramp (dark = far, bright = near, like the paper's figures) and a cluster palette.
_RAMP = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], np.float32) / 255


def colorize_depth(depth: np.ndarray, valid: np.ndarray | None = None, max_depth: float = 80.0,
                   near: float = 3.0) -> np.ndarray:
    """depth [H, W] metres -> RGB [3, H, W] in [0, 1] by log depth on a fixed scale (``near`` metres
    brightest, ``max_depth`` darkest), so predicted and true depth and all steps compare; invalid black."""
    log_depth = np.log(np.clip(np.nan_to_num(depth, nan=max_depth), near, max_depth))
    closeness = (np.log(max_depth) - log_depth) / (np.log(max_depth) - np.log(near))  # 0 far .. 1 near
    position = np.clip(closeness, 0, 1) * (len(_RAMP) - 1)
    lower = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    fraction = (position - lower)[..., None]
    rgb = _RAMP[lower] * (1 - fraction) + _RAMP[lower + 1] * fraction  # [H, W, 3]
    if valid is not None:
        rgb[~valid] = 0
    return rgb.transpose(2, 0, 1)


def colorize_clusters(labels: np.ndarray, num_clusters: int) -> np.ndarray:
    """labels [H, W] ints -> RGB [3, H, W]: a fixed random colour per cluster (paper Fig. 4)."""
    palette = np.random.default_rng(7).uniform(0.15, 1.0, size=(max(num_clusters, 1), 3)).astype(np.float32)
    return palette[labels % len(palette)].transpose(2, 0, 1)


@torch.no_grad()
def pictures(model: nn.Module, batch: dict, context: Context, max_depth: float) -> dict[str, np.ndarray]:
    """The first image of ``batch``: {"image", "depth_pred", "depth_true", "clusters"}, each [3, H, W]."""
    was_training = model.training
    model.eval()
    image = batch["image"][:1].to(context.device)
    outputs = model(image)
    model.train(was_training)
    attn = outputs["attn"][-1].float()  # finest scale, [1, N, H/4, W/4]
    labels = cluster_labels(attn, tuple(image.shape[-2:]))[0].cpu().numpy()
    valid = batch["valid"][0, 0].cpu().numpy() if "valid" in batch else None
    return {
        "image": np.nan_to_num(image[0].float().cpu().numpy()).clip(0, 1),
        "depth_pred": colorize_depth(outputs["depth"][0, 0].float().cpu().numpy(), None, max_depth),
        "depth_true": colorize_depth(batch["depth"][0, 0].cpu().numpy(), valid, max_depth),
        "clusters": colorize_clusters(labels, attn.shape[1]),
    }
