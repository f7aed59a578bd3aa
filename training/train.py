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
from training.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint, training_state, unwrap
from training.config import (
    Config,
    ConfigError,
    build_criterion,
    build_datasets,
    build_model,
    format_config,
    load_config,
)
from training.engine import (
    amp_dtype,
    build_optimizer,
    build_scheduler,
    endless_batches,
    evaluate,
    evaluation_loader,
    pictures,
    train_step,
)
from training.evaluate import write_report


class NonFiniteLossError(RuntimeError):
    """Too many optimiser steps in a row had a non-finite loss or gradient."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(config: Config, resume: bool = False, datasets=None) -> dict:
    """Run (or continue) one training run; returns {"step", "metrics", "best", "nonfinite", "model"}
    ("model": the trained network, outside DistributedDataParallel).

    ``datasets``: (train, val) to use instead of ``build_datasets(config)`` (tests).
    """
    context = distributed.setup()
    output = config.output_dir
    seed_everything(config.train.seed)  # the same initial weights on every rank
    model = build_model(config, pretrained=not resume).to(context.device)
    criterion = build_criterion(config)
    train_set, val_set = datasets if datasets is not None else build_datasets(config)
    if not getattr(train_set, "has_instances", True):  # KITTI without pseudo masks (docs/data.md)
        config.loss.icm_1 = config.loss.icm_2 = config.loss.icm_3 = 0.0
        criterion = build_criterion(config)
        if context.is_main:
            print(f"{type(train_set).__name__}: no instance masks, ICM terms off (loss.icm_1/2/3 = 0): "
                  "this run is method II", flush=True)
    optim = config.optim
    optimizer = build_optimizer(model, optim.lr, optim.backbone_lr, optim.weight_decay, optim.betas)
    scheduler = build_scheduler(optimizer, config.train.steps, optim.pct_start, optim.div_factor,
                                optim.final_div_factor)
    step, metrics, best, nonfinite = 0, {}, {"abs_rel": math.inf, "step": -1}, 0
    if resume:
        state = load_checkpoint(output / LAST, map_location=context.device)
        saved = state["config"]
        if saved["model"] != config.to_dict()["model"]:
            raise ConfigError(f"{output / LAST} was trained with model {saved['model']}, "
                              f"the config asks for {config.to_dict()['model']}")
        if saved["train"]["steps"] != config.train.steps:  # the OneCycle schedule is fixed at the start
            raise ConfigError(f"{output / LAST} runs a {saved['train']['steps']}-step schedule; resume it with "
                              f"train.steps={saved['train']['steps']} (got {config.train.steps})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, metrics, best, nonfinite = state["step"], state["metrics"], state["best"], state["nonfinite"]
        torch.set_rng_state(state["rng"]["torch"])
    elif (output / LAST).exists():
        raise FileExistsError(f"{output / LAST} exists: pass --resume to continue it, or set train.output_dir")
    train_cfg, eval_cfg = config.train, config.eval
    full_size = tuple(eval_cfg.full_size) if eval_cfg.full_size else None
    eval_loader = evaluation_loader(val_set, eval_cfg.batch_size, config.data.num_workers, context,
                                    train_cfg.eval_max_images)
    amp = train_cfg.amp and context.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp and amp_dtype() == torch.float16 else None
    if context.distributed:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    bare = unwrap(model)

    writer = None
    if context.is_main:
        print(f"resolved config ({config.name}):\n{format_config(config)}", flush=True)
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.yaml").write_text(format_config(config) + "\n")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(output / "tensorboard"), purge_step=step if resume else None)
    log = LogFile(output / "log.jsonl", context.is_main)
    if resume:
        log.truncate_after(step)  # records of steps after last.pt are re-made by this run

    def save(name: str) -> None:
        if context.is_main:
            state = training_state(model, optimizer, scheduler, step, config.to_dict(), metrics, best, nonfinite)
            save_checkpoint(output / name, state)

    batches = endless_batches(train_set, train_cfg.batch_size, config.data.num_workers,
                              train_cfg.seed, context, step * train_cfg.accumulate)
    images_per_step = train_cfg.batch_size * train_cfg.accumulate * context.world_size
    in_a_row = 0
    progress = tqdm(total=train_cfg.steps, initial=step, disable=not context.is_main, dynamic_ncols=True)
    model.train()
    while step < train_cfg.steps:
        started = time.perf_counter()
        micro_batches = [next(batches) for _ in range(train_cfg.accumulate)]
        logging = step + 1 == train_cfg.steps or (step + 1) % train_cfg.log_every == 0
        result = train_step(model, criterion, micro_batches, optimizer, scaler, optim.grad_clip, context, amp,
                            step=step, measure_features=logging and train_cfg.log_feature_gradients)
        with warnings.catch_warnings():  # after a skipped first step torch warns of step order; intended
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
            scheduler.step()  # a skipped step still uses its slot of the schedule: the run ends on time
        step += 1
        if result.skipped:
            nonfinite, in_a_row = nonfinite + 1, in_a_row + 1
            print(f"step {step}: non-finite loss or gradient {result.terms}, step skipped "
                       f"({in_a_row} in a row, {nonfinite} in total)", file=sys.stderr)
            if in_a_row >= train_cfg.max_nonfinite:
                raise NonFiniteLossError(
                    f"{in_a_row} steps in a row had a non-finite loss or gradient (last at step {step}, terms "
                    f"{result.terms}); stopping. Check the data for NaN/Inf, lower optim.lr, or raise "
                    f"train.max_nonfinite (now {train_cfg.max_nonfinite}).")
        else:
            in_a_row = 0
        images_per_second = images_per_step / (time.perf_counter() - started)
        progress.update(1)
        progress.set_postfix({**{k.removeprefix("loss_"): f"{v:.3f}" for k, v in result.terms.items()},
                              "img/s": f"{images_per_second:.1f}"}, refresh=False)

        if writer is not None and logging:
            scalars = {**{f"train/{k}": v for k, v in result.terms.items()}, "train/loss": result.loss,
                       "train/grad_norm": result.grad_norm, "train/lr": scheduler.get_last_lr()[-1],
                       "train/backbone_lr": scheduler.get_last_lr()[0], "train/images_per_second": images_per_second,
                       "train/nonfinite_steps": nonfinite,
                       **{f"weight/{k}": v for k, v in result.weights.items() if k in result.terms},
                       **{f"feature_grad/{k}": v for k, v in result.feature_grad_norms.items()}}
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
            # The first image's pixel sum identifies the data drawn: equal across methods of one seed.
            checksum = float(micro_batches[0]["image"][0].double().sum())
            log.write({"step": step, **{k.removeprefix("train/"): v for k, v in scalars.items()},
                       "data_checksum": checksum})
        if writer is not None and train_cfg.image_every > 0 and step % train_cfg.image_every == 0:
            for tag, picture in pictures(bare, micro_batches[0], context, config.model.max_depth).items():
                writer.add_image(f"pictures/{tag}", picture, step)

        evaluating = step % train_cfg.eval_every == 0 or step == train_cfg.steps
        if evaluating or step == train_cfg.steps:
            distributed.broadcast_buffers(bare, context)  # rank 0's BatchNorm statistics everywhere
        if evaluating:
            metrics = evaluate(bare, eval_loader, context, eval_cfg.min_depth, eval_cfg.max_depth, eval_cfg.crop,
                               full_size, amp)
            if context.is_main:
                tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if writer is not None:
                for name, value in metrics.items():
                    writer.add_scalar(f"val/{name}", value, step)
            log.write({"step": step, "val": metrics})
            if metrics.get("abs_rel", math.inf) < best["abs_rel"]:
                best = {"abs_rel": metrics["abs_rel"], "step": step}
                save(BEST)
        if evaluating or step % train_cfg.save_every == 0:
            save(LAST)
    progress.close()
    if context.is_main:
        write_report(output / "report", config, metrics, {"checkpoint": str(output / LAST), "step": step,
                                                           "best": best, "nonfinite_steps": nonfinite})
        writer.close()
    distributed.barrier(context)
    return {"step": step, "metrics": metrics, "best": best, "nonfinite": nonfinite, "model": bare}


class LogFile:
    """One JSON object per line (training curves for docs/ and tests); rank 0 only."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if self.enabled and self.path.exists():
            records = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in records))

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as stream:
                stream.write(json.dumps(record) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training/configs/NAME.yaml")
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/last.pt")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. train.steps=200 model.update=parallel")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        return train(config, resume=args.resume)
    except (ConfigError, FileExistsError, FileNotFoundError, NonFiniteLossError) as error:
        raise SystemExit(f"error: {error}") from None
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main()
