"""The pieces of the training loop: optimiser, schedule, sampling, one optimiser step, evaluation, pictures.

training/train.py strings them together; each piece takes numbers and modules, not the config.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from training.checkpoint import unwrap
from training.distributed import Context, all_true, sum_over_ranks
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


def endless_batches(dataset: Dataset, batch_size: int, num_workers: int, seed: int, context: Context,
                    micro_batches_done: int = 0):
    """Yields training micro-batches forever, continuing after ``micro_batches_done`` of them.

    Item order and augmentation depend only on ``seed`` (and the rank): see SeededItems."""
    sampler = ShuffledSampler(len(dataset), seed, context.rank, context.world_size)
    per_epoch = sampler.per_rank // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {sampler.per_rank} training items per process")
    epoch, within = divmod(micro_batches_done, per_epoch)
    sampler.set_position(epoch, within * batch_size)
    loader = DataLoader(SeededItems(dataset), batch_size=batch_size, sampler=SeededDraws(sampler),
                        num_workers=num_workers, drop_last=True, pin_memory=context.device.type == "cuda",
                        persistent_workers=num_workers > 0, worker_init_fn=seed_worker)
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
    """Mixed precision on GPU only (bf16 where the GPU has it, else fp16); a no-op on CPU."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=amp_dtype())


def amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def as_float32(outputs: dict) -> dict:
    """The criterion (FCM membership, log terms, Hungarian costs) runs in fp32, outside autocast."""
    return {"depth": outputs["depth"].float(), "attn": [a.float() for a in outputs["attn"]]}


@dataclass
class StepResult:
    terms: dict[str, float] = field(default_factory=dict)  # mean over the micro-batches, unweighted
    loss: float = float("nan")  # the weighted total
    grad_norm: float = float("nan")
    skipped: bool = False  # True when a loss or gradient was not finite: no update was made
    weights: dict[str, float] = field(default_factory=dict)  # the weight table of this step (warm-up applied)
    # With measure_features: {term: L2 norm of d term / d (F1, F2, F3)}, unweighted, first micro-batch only
    feature_grad_norms: dict[str, float] = field(default_factory=dict)


class FeatureCapture:
    """Keeps the neck's outputs F1..F3 of the next forward pass (a forward hook on ``model.neck``)."""

    def __init__(self, model: nn.Module):
        self.features: list[torch.Tensor] = []
        self.handle = unwrap(model).neck.register_forward_hook(self.keep)

    def keep(self, module: nn.Module, inputs, outputs: list[torch.Tensor]) -> None:
        self.features = list(outputs)

    def close(self) -> None:
        self.handle.remove()


def feature_gradient_norms(terms: dict[str, torch.Tensor], features: list[torch.Tensor]) -> dict[str, float]:
    """{term: L2 norm, over F1..F3 together, of the term's gradient at ``features``} (graph kept)."""
    norms = {}
    for name, value in terms.items():
        grads = torch.autograd.grad(value, features, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        norms[name] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    return norms


def train_step(model: nn.Module, criterion: nn.Module, micro_batches: list[dict], optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler | None, grad_clip: float, context: Context, amp: bool,
               step: int | None = None, measure_features: bool = False) -> StepResult:
    """One optimiser step over ``len(micro_batches)`` accumulated micro-batches.

    ``step``: the optimiser step (0 = first) that sets the ICM warm-up; None = after any warm-up.
    ``measure_features``: also each term's gradient norm at the neck features (first micro-batch).
    A non-finite loss on any rank makes every rank skip the step (decided together, so DDP's gradient
    all-reduce never waits for a rank that left). Gradients are all-reduced on the last micro-batch only.
    """
    optimizer.zero_grad(set_to_none=True)
    result = StepResult(weights=criterion.weights_at(step))
    sums: dict[str, float] = {}
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
            # Non-finite outputs never reach the criterion: its Hungarian matcher rejects NaN costs.
            finite = all(bool(torch.isfinite(t).all()) for t in (outputs["depth"], *outputs["attn"]))
            terms = criterion(outputs, batch) if finite else {}
            loss = criterion.total(terms, step) / len(micro_batches) if finite else torch.tensor(math.nan)
            if not all_true(finite and bool(torch.isfinite(loss)), context):
                optimizer.zero_grad(set_to_none=True)
                return StepResult(terms={k: float(v) for k, v in terms.items()}, skipped=True,
                                  weights=result.weights)
            if capture is not None:
                result.feature_grad_norms = feature_gradient_norms(terms, capture.features)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) / len(micro_batches)
    if scaler is not None:
        scaler.unscale_(optimizer)
    parameters = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else math.inf)
    result.terms, result.grad_norm = sums, float(grad_norm)
    result.loss = sum(result.weights[name] * value for name, value in sums.items())
    if scaler is not None:
        scaler.step(optimizer)  # skips the update itself when fp16 gradients overflowed
        scaler.update()
    elif math.isfinite(result.grad_norm):  # gradients are all-reduced: every rank agrees
        optimizer.step()
    else:
        result.skipped = True
    return result


def evaluation_loader(dataset: Dataset, batch_size: int, num_workers: int, context: Context,
                      max_images: int = 0) -> DataLoader:
    """Each rank takes every world_size-th image (no padding: sums over ranks count each image once)."""
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    indices = list(range(context.rank, count, context.world_size))
    return DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers)


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
