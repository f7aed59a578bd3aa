#!/usr/bin/env python
"""Training throughput (images per second) of ICMDepthNet on this machine, with and without the ICM terms.

    python bench/train_throughput.py [--encoder resnet18] [--size 192 640] [--batch 4] [--steps 6] [--threads 2]

Times full optimiser steps (forward, criterion, backward, AdamW) on synthetic road scenes generated
beforehand, so data generation is not in the figure. Prints one line per variant; docs/training.md
records the figures measured here. Add --json to print one JSON object instead.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from json_output import peak_rss_mb, print_json, stdout_to_stderr
from training.data import SyntheticRoadScenes
from training.engine import build_optimizer
from training.losses import ICMCriterion
from training.model import ICMDepthNet

VARIANT_KEYS = {"SIlog only (methods I/II)": "silog_only", "SIlog + ICM_1..3 (method III, the paper)": "silog_icm"}
VARIANTS = {
    "SIlog only (methods I/II)": {"loss_silog": 1.0, "loss_icm_1": 0.0, "loss_icm_2": 0.0, "loss_icm_3": 0.0},
    "SIlog + ICM_1..3 (method III, the paper)": {"loss_silog": 1.0, "loss_icm_1": 1.0, "loss_icm_2": 1.0,
                                                 "loss_icm_3": 1.0},
}


def measure(encoder: str, size: tuple[int, int], batch_size: int, steps: int, weights: dict) -> list[float]:
    """Seconds per optimiser step for ``steps`` steps after two warm-up steps."""
    torch.manual_seed(0)
    model = ICMDepthNet(encoder, size).train()
    criterion = ICMCriterion(weights)
    optimizer = build_optimizer(model, 2e-4, 2e-5, 0.05, (0.9, 0.999))
    scenes = SyntheticRoadScenes(batch_size * 2, size=size, seed=0)
    batches = [torch.utils.data.default_collate([scenes[i + b * batch_size] for i in range(batch_size)])
               for b in range(2)]
    times = []
    for step in range(steps + 2):
        batch = batches[step % 2]
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outputs = model(batch["image"])
        loss = criterion.total(criterion(outputs, batch))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step >= 2:  # the first steps allocate memory and pick kernels
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--size", type=int, nargs=2, default=[192, 640], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(args.size)
    if args.json:
        report = {"encoder": args.encoder, "size": f"{size[0]}x{size[1]}", "batch": args.batch, "steps": args.steps,
                  "threads": args.threads, "torch": torch.__version__, "variants": {}}
        with stdout_to_stderr():
            for name, weights in VARIANTS.items():
                times = measure(args.encoder, size, args.batch, args.steps, weights)
                median = statistics.median(times)
                report["variants"][VARIANT_KEYS[name]] = {
                    "description": name, "images_per_s": round(args.batch / median, 3), "step_s": round(median, 3),
                    "min_step_s": round(min(times), 3), "max_step_s": round(max(times), 3)}
        report["peak_rss_mb"] = peak_rss_mb()
        print_json(report)
        return
    print(f"{args.encoder} at {size[0]}x{size[1]}, batch {args.batch}, {args.threads} threads, "
          f"torch {torch.__version__}, median of {args.steps} steps")
    for name, weights in VARIANTS.items():
        times = measure(args.encoder, size, args.batch, args.steps, weights)
        median = statistics.median(times)
        print(f"  {name:45s} {args.batch / median:6.2f} images/s  ({median:.2f} s per step, "
              f"min {min(times):.2f}, max {max(times):.2f})", flush=True)


if __name__ == "__main__":
    main()
