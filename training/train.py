#!/usr/bin/env python
"""Train the ICM depth network.

    python training/train.py --config training/configs/NAME.yaml [key=value ...] [--resume]
    torchrun --nproc_per_node=8 training/train.py --config ...        # many GPUs (NCCL) or CPUs (gloo)

Writes under config.train.output_dir (default outputs/<config name>): last.pt (every save_every steps),
best.pt (lowest validation abs_rel), config.yaml, log.jsonl (loss terms, lr, images/s, metrics),
report.json / report.md (the final evaluation) and TensorBoard logs in tensorboard/.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `training.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training import distributed
from training.checkpoint import (
    BEST,
    LAST,
    load_checkpoint,
    restore_random_state,
    save_checkpoint,
    training_state,
    unwrap,
)
from training.config import (
    Config,
    ConfigError,
    build_criterion,
    build_datasets,
    build_model,
    format_config,
    load_config,
    set_key,
)
from training.engine import (
    amp_dtype,
    build_optimizer,
    build_scheduler,
    endless_batches,
    evaluate,
    evaluation_loader,
    loader_settings,
    pictures,
    to_host,
    train_step,
)
from training.evaluate import write_report


class NonFiniteLossError(RuntimeError):
    """Too many optimiser steps in a row had a non-finite loss or gradient."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def without_instance_terms(config: Config, train_set, say: bool = True) -> Config:
    """``config`` itself, or a copy with the ICM terms off when the training set has no instance masks
    (KITTI without pseudo masks, docs/data.md); the change is printed (``say``) and saved with the run's config."""
    if getattr(train_set, "has_instances", True):
        return config
    for key in ("loss.icm_1", "loss.icm_2", "loss.icm_3"):
        config = set_key(config, key, 0.0)
    if say:
        print(f"{type(train_set).__name__}: no instance masks, ICM terms off (loss.icm_1/2/3 = 0): this run is "
              "method II", flush=True)
    return config


class NonFiniteCounters:
    """Skipped steps, counted on the device so that no step waits for the host: how many since the last read,
    the current run of them in a row, and the longest run since the last read."""

    def __init__(self, device: torch.device):
        self.skipped, self.in_a_row, self.most_in_a_row = (torch.zeros((), dtype=torch.int64, device=device)
                                                           for _ in range(3))

    def add(self, skipped: torch.Tensor) -> None:
        skipped = skipped.to(torch.int64)
        self.skipped += skipped
        self.in_a_row = (self.in_a_row + 1) * skipped  # 0 after a good step
        self.most_in_a_row = torch.maximum(self.most_in_a_row, self.in_a_row)

    def tensors(self) -> list[torch.Tensor]:
        return [self.skipped, self.in_a_row, self.most_in_a_row]

    def reset(self) -> None:
        """After a read: the count starts again; a run of skipped steps still going carries on."""
        self.skipped = torch.zeros_like(self.skipped)
        self.most_in_a_row = self.in_a_row.clone()


class TrainingRun:
    """One training run, set up in the constructor and driven by ``run()``: each method is one part of it
    (optimisation state, resuming, outputs, one step, its log record, evaluation and checkpoints)."""

    def __init__(self, config: Config, resume: bool, datasets, context: distributed.Context):
        self.context, self.output = context, config.output_dir
        seed_everything(config.train.seed)  # the same initial weights on every rank
        self.model = build_model(config, pretrained=not resume).to(context.device)
        self.train_set, self.val_set = datasets if datasets is not None else build_datasets(config)
        self.config = without_instance_terms(config, self.train_set, say=context.is_main)
        self.criterion = build_criterion(self.config)
        optim = self.config.optim
        self.optimizer = build_optimizer(self.model, optim.lr, optim.backbone_lr, optim.weight_decay, optim.betas)
        self.scheduler = build_scheduler(self.optimizer, self.config.train.steps, optim.pct_start, optim.div_factor,
                                         optim.final_div_factor)
        self.step, self.metrics, self.best, self.nonfinite = 0, {}, {"abs_rel": math.inf, "step": -1}, 0
        self.amp = self.config.train.amp and context.device.type == "cuda"
        # fp16 needs loss scaling (its gradients underflow); bf16 has fp32's range and needs none.
        self.scaler = torch.amp.GradScaler("cuda") if self.amp and amp_dtype(context.device) == torch.float16 else None
        if context.device.type == "cuda":
            torch.backends.cudnn.benchmark = self.config.train.cudnn_benchmark
        if resume:
            self.restore()
        self.counters = NonFiniteCounters(context.device)
        train_cfg, data_cfg = self.config.train, self.config.data
        self.loading = loader_settings(data_cfg.num_workers, data_cfg.pin_memory, data_cfg.prefetch_factor,
                                       context.device)
        self.batches = endless_batches(self.train_set, train_cfg.batch_size, self.loading, train_cfg.seed, context,
                                       self.step * train_cfg.accumulate)
        if context.distributed:
            device_ids = [context.device.index] if context.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.bare = unwrap(self.model)
        self.writer, self.log = self.open_outputs(resume)

    def restore(self) -> None:
        """Continue from last.pt: weights, optimiser, schedule, counters, loss scale and RNG, after checking that the
        config asks for the same network and schedule."""
        last = self.output / LAST
        state = load_checkpoint(last, map_location=self.context.device)
        saved, asked = state["config"], self.config.to_dict()
        if saved["model"] != asked["model"]:
            raise ConfigError(f"{last} was trained with model {saved['model']}, the config asks for {asked['model']}")
        if saved["train"]["steps"] != self.config.train.steps:  # the OneCycle schedule is fixed at the start
            raise ConfigError(f"{last} runs a {saved['train']['steps']}-step schedule; resume it with "
                              f"train.steps={saved['train']['steps']} (got {self.config.train.steps})")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.metrics, self.best, self.nonfinite = state["step"], state["metrics"], state["best"], state["nonfinite"]
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        restore_random_state(state["rng"], self.context.device)

    def open_outputs(self, resume: bool):
        """config.yaml, TensorBoard and log.jsonl on rank 0. A new run starts a new log (an older run's
        records are moved aside, and that is said); a resumed one keeps the records up to its step."""
        log = LogFile(self.output / "log.jsonl", self.context.is_main)
        if not self.context.is_main:
            return None, log
        print(f"resolved config ({self.config.name}):\n{format_config(self.config)}", flush=True)
        self.output.mkdir(parents=True, exist_ok=True)
        (self.output / "config.yaml").write_text(format_config(self.config) + "\n")
        if resume:
            log.truncate_after(self.step)  # records of steps after last.pt are re-made by this run
        else:
            moved = log.move_aside()
            if moved is not None:
                print(f"{log.path} held another run's records (no last.pt to resume): moved to {moved}", flush=True)
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.output / "tensorboard"), purge_step=self.step if resume else None), log

    def run(self) -> dict:
        train_cfg = self.config.train
        eval_cfg = self.config.eval
        eval_loader = evaluation_loader(self.val_set, eval_cfg.batch_size, self.loading, self.context,
                                        train_cfg.eval_max_images)
        self.progress = tqdm(total=train_cfg.steps, initial=self.step, disable=not self.context.is_main,
                             dynamic_ncols=True)
        self.last_read = (time.perf_counter(), self.step)  # images/s: over the steps between two host reads
        self.model.train()
        while self.step < train_cfg.steps:
            self.train_one_step(self.batches)
            evaluating = self.step % train_cfg.eval_every == 0 or self.step == train_cfg.steps
            if evaluating or self.step % train_cfg.save_every == 0:
                self.check_nonfinite(*to_host(self.counters.tensors()), terms={})  # all ranks: the same counts
                if evaluating:
                    self.evaluate(eval_loader)
                self.save(LAST)
        self.progress.close()
        if self.context.is_main:
            write_report(self.output / "report", self.config, self.metrics,
                         {"checkpoint": str(self.output / LAST), "step": self.step, "best": self.best,
                          "nonfinite_steps": self.nonfinite})
            self.writer.close()
        distributed.barrier(self.context)
        return {"step": self.step, "metrics": self.metrics, "best": self.best, "nonfinite": self.nonfinite,
                "model": self.bare}

    def train_one_step(self, batches) -> None:
        """One optimiser step over ``accumulate`` micro-batches. Its figures stay on the device; at log steps
        they are read back in one copy (with the non-finite counters), logged, and the in-a-row stop checked."""
        train_cfg = self.config.train
        micro_batches = [next(batches) for _ in range(train_cfg.accumulate)]
        logging = self.step + 1 == train_cfg.steps or (self.step + 1) % train_cfg.log_every == 0
        result = train_step(self.model, self.criterion, micro_batches, self.optimizer, self.scaler,
                            self.config.optim.grad_clip, self.context, self.amp, step=self.step,
                            measure_features=logging and train_cfg.log_feature_gradients)
        with warnings.catch_warnings():  # after a skipped first step torch warns of step order; intended
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()  # a skipped step still uses its slot of the schedule: the run ends on time
        self.step += 1
        self.counters.add(result.skipped)
        self.progress.update(1)
        if logging:
            self.read_and_log(result, micro_batches)
        if self.writer is not None and train_cfg.image_every > 0 and self.step % train_cfg.image_every == 0:
            for tag, picture in pictures(self.bare, micro_batches[0], self.context, self.config.model.max_depth).items():
                self.writer.add_image(f"pictures/{tag}", picture, self.step)

    def read_and_log(self, result, micro_batches) -> None:
        """The one host sync of a logging interval: this step's figures and the interval's non-finite counts."""
        names = list(result.terms)
        features = list(result.feature_grad_norms)
        values = to_host([*result.terms.values(), result.loss, result.grad_norm,
                          *result.feature_grad_norms.values(), *self.counters.tensors()])
        terms = dict(zip(names, values))
        loss, grad_norm = values[len(names)], values[len(names) + 1]
        feature_norms = dict(zip(features, values[len(names) + 2 : len(names) + 2 + len(features)]))
        self.check_nonfinite(*values[-3:], terms)
        now, train_cfg = time.perf_counter(), self.config.train
        images = (self.step - self.last_read[1]) * train_cfg.batch_size * train_cfg.accumulate * self.context.world_size
        images_per_second, self.last_read = images / (now - self.last_read[0]), (now, self.step)
        progress_terms = {k.removeprefix("loss_"): f"{v:.3f}" for k, v in terms.items()}
        self.progress.set_postfix({**progress_terms, "img/s": f"{images_per_second:.1f}"}, refresh=False)
        if self.writer is not None:
            self.log_step(terms, loss, grad_norm, feature_norms, result.weights, micro_batches, images_per_second)

    def check_nonfinite(self, skipped: float, in_a_row: float, most_in_a_row: float, terms: dict) -> None:
        """Count the interval's skipped steps; stop when ``train.max_nonfinite`` of them came in a row.

        Read at log steps only, so a run of bad steps is seen up to ``train.log_every - 1`` steps after it
        reached the limit (those steps were skipped too: no weight changed)."""
        skipped, most_in_a_row = int(skipped), int(most_in_a_row)
        self.counters.reset()
        if skipped == 0:
            return
        self.nonfinite += skipped
        print(f"step {self.step}: {skipped} step(s) since the last log had a non-finite loss or gradient and were "
              f"skipped (last terms {terms}; up to {most_in_a_row} in a row, {self.nonfinite} in total)", file=sys.stderr)
        limit = self.config.train.max_nonfinite
        if most_in_a_row >= limit:
            raise NonFiniteLossError(
                f"{most_in_a_row} steps in a row had a non-finite loss or gradient (seen at step {self.step}, terms "
                f"{terms}); stopping. Check the data for NaN/Inf, lower optim.lr, or raise "
                f"train.max_nonfinite (now {limit}).")

    def log_step(self, terms: dict, loss: float, grad_norm: float, feature_norms: dict, weights: dict, micro_batches,
                 images_per_second: float) -> None:
        """TensorBoard scalars and the same as one log.jsonl record."""
        last_lr = self.scheduler.get_last_lr()
        scalars = {**{f"train/{k}": v for k, v in terms.items()}, "train/loss": loss,
                   "train/grad_norm": grad_norm, "train/lr": last_lr[-1], "train/backbone_lr": last_lr[0],
                   "train/images_per_second": images_per_second, "train/nonfinite_steps": self.nonfinite,
                   **{f"weight/{k}": v for k, v in weights.items() if k in terms},
                   **{f"feature_grad/{k}": v for k, v in feature_norms.items()}}
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, self.step)
        # The first image's pixel sum identifies the data drawn: equal across methods of one seed (host data).
        checksum = float(micro_batches[0]["image"][0].double().sum())
        self.log.write({"step": self.step, **{k.removeprefix("train/"): v for k, v in scalars.items()},
                        "data_checksum": checksum})

    def evaluate(self, eval_loader) -> None:
        """Validation metrics (logged), best.pt when abs_rel improved."""
        distributed.broadcast_buffers(self.bare, self.context)  # rank 0's BatchNorm statistics everywhere
        eval_cfg = self.config.eval
        full_size = tuple(eval_cfg.full_size) if eval_cfg.full_size else None
        self.metrics = evaluate(self.bare, eval_loader, self.context, eval_cfg.min_depth, eval_cfg.max_depth,
                                eval_cfg.crop, full_size, self.amp)
        if self.context.is_main:
            tqdm.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items()))
        if self.writer is not None:
            for name, value in self.metrics.items():
                self.writer.add_scalar(f"val/{name}", value, self.step)
        self.log.write({"step": self.step, "val": self.metrics})
        if self.metrics.get("abs_rel", math.inf) < self.best["abs_rel"]:
            self.best = {"abs_rel": self.metrics["abs_rel"], "step": self.step}
            self.save(BEST)

    def save(self, name: str) -> None:
        if self.context.is_main:
            state = training_state(self.model, self.optimizer, self.scheduler, self.step, self.config.to_dict(),
                                   self.metrics, self.best, self.nonfinite, self.scaler, self.context.device)
            save_checkpoint(self.output / name, state)


def train(config: Config, resume: bool = False, datasets=None) -> dict:
    """Run (or continue) one training run; returns {"step", "metrics", "best", "nonfinite", "model"}
    ("model": the trained network, outside DistributedDataParallel). ``config`` itself is not changed.

    ``datasets``: (train, val) to use instead of ``build_datasets(config)`` (tests).
    """
    context = distributed.setup()
    check_output(config, resume)
    return TrainingRun(config, resume, datasets, context).run()


def check_output(config: Config, resume: bool) -> None:
    """Before any work: --resume needs last.pt, and a new run must not overwrite one."""
    last = config.output_dir / LAST
    if resume and not last.is_file():
        raise FileNotFoundError(f"--resume: {last} not found (the run's train.output_dir is {config.output_dir})")
    if not resume and last.exists():
        raise FileExistsError(f"{last} exists: pass --resume to continue it, or set train.output_dir")


class LogFile:
    """One JSON object per line (training curves for docs/ and tests); rank 0 only."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def records(self) -> list[dict]:
        """The records; a last line cut short (a crash mid-write) is dropped and said, any other bad line is
        an error naming the file and the line."""
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):
                    print(f"{self.path}: line {number} is cut short (the run stopped mid-write); dropped", flush=True)
                    break
                raise ValueError(f"{self.path}: line {number} is not a JSON record: {line[:80]!r}") from None
        return records

    def truncate_after(self, step: int) -> None:
        if self.enabled and self.path.exists():
            kept = [record for record in self.records() if record.get("step", 0) <= step]
            self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))

    def move_aside(self) -> Path | None:
        """Rename an existing log to log.jsonl.N (the first free N); the new path, or None when there was none."""
        if not (self.enabled and self.path.exists()):
            return None
        number = 1
        while self.path.with_name(f"{self.path.name}.{number}").exists():
            number += 1
        target = self.path.with_name(f"{self.path.name}.{number}")
        self.path.rename(target)
        return target

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as stream:
                stream.write(json.dumps(record) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training/configs/NAME.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/last.pt")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=200 model.update=parallel")
    return parser.parse_args(argv)


# Errors that are the user's input, worded by the code that found them: one line, exit code 2.
INPUT_ERRORS = (ConfigError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        return train(config, resume=args.resume)
    except NonFiniteLossError as error:
        if args.debug:
            raise
        raise SystemExit(f"error: {error}") from None
    except INPUT_ERRORS as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main()
