"""Share of the ICM loss (three scales, memberships and Hungarian matching included) in a training step.

    python bench/icm_loss_share.py [--batch 4] [--size 192x640] [--encoder resnet18] [--steps 5]

Prints, for ResNet-18 at batch 4, 192 x 640 on synthetic road scenes:
  * the time of a whole step (forward + all loss terms + backward),
  * the time spent computing the three ICM terms inside that step (membership, pooling, cost, matching),
  * the step time with the ICM terms switched off, and the difference as a second estimate,
and the ICM share in percent (goal: at most 10 %). Add --json to print one JSON object instead.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from json_output import peak_rss_mb  # noqa: E402

from training.data import SyntheticRoadScenes  # noqa: E402
from training.losses import ICMCriterion, silog_loss  # noqa: E402
from training.model import ICMDepthNet  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def load_batch(size, batch):
    scenes = SyntheticRoadScenes(batch, size=size, seed=2024)
    items = [scenes[i] for i in range(batch)]
    return {key: torch.stack([item[key] for item in items]) for key in ("image", "depth", "valid", "instances")}


def timed_step(net, criterion, batch, icm_timer: list[float]):
    """One forward + loss + backward; the ICM terms are timed on their own inside the step."""
    start = time.perf_counter()
    outputs = net(batch["image"])
    terms = {"loss_silog": silog_loss(outputs["depth"], batch["depth"], batch["valid"])}
    if criterion is not None:
        icm_start = time.perf_counter()
        icm_terms = criterion(outputs, batch)
        icm_timer.append(time.perf_counter() - icm_start)
        terms.update(icm_terms)
    total = sum(terms.values())
    net.zero_grad(set_to_none=True)
    total.backward()
    return time.perf_counter() - start, {k: round(v.item(), 4) for k, v in terms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=parse_size, default=(192, 640))
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    net = ICMDepthNet(args.encoder, img_size=args.size).train()
    batch = load_batch(args.size, args.batch)
    icm_only = ICMCriterion({"loss_icm_1": 1.0, "loss_icm_2": 1.0, "loss_icm_3": 1.0})
    instances = [int(torch.unique(batch["instances"][b]).gt(0).sum()) for b in range(args.batch)]

    timed_step(net, icm_only, batch, [])  # warm-up (allocator, thread pools)
    with_icm, without_icm, icm_times = [], [], []
    for _ in range(args.steps):  # interleaved so that machine load affects both alike
        with_icm.append(timed_step(net, icm_only, batch, icm_times)[0])
        without_icm.append(timed_step(net, None, batch, [])[0])

    step = statistics.median(with_icm)
    icm = statistics.median(icm_times)
    plain = statistics.median(without_icm)
    report = {
        "encoder": args.encoder,
        "batch": args.batch,
        "size": f"{args.size[0]}x{args.size[1]}",
        "instances_per_image": instances,
        "threads": torch.get_num_threads(),
        "step_s": round(step, 4),
        "icm_terms_s": round(icm, 4),
        "step_without_icm_s": round(plain, 4),
        "icm_share_pct": round(100 * icm / step, 2),
        "icm_share_by_difference_pct": round(100 * (step - plain) / step, 2),
        "peak_rss_mb": peak_rss_mb(),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"ICM loss share of a training step: {args.encoder}, batch {args.batch}, {report['size']}, "
          f"{torch.get_num_threads()} threads, instances per image {instances}")
    print(f"  whole step (fwd + losses + bwd), median of {args.steps}: {step * 1000:8.1f} ms")
    print(f"  ICM terms inside the step (3 scales, matching):  {icm * 1000:8.1f} ms  -> {report['icm_share_pct']:.2f} %")
    print(f"  step without ICM terms:                          {plain * 1000:8.1f} ms  -> difference "
          f"{report['icm_share_by_difference_pct']:.2f} %")
    print(f"  goal: at most 10 %: {'met' if report['icm_share_pct'] <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
