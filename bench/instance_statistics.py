"""instance_statistics at 1242x375 for 64 instances, against the per-instance loop it replaced (goal <= 2 ms).

The inputs and the previous implementation are the ones test/icm_depth_ros/instances/test_instance_statistics.py compares
(64 cluster regions with firmness; 64 panoptic boxes). Median and minimum of --repeats calls each.

    python bench/instance_statistics.py [--repeats 30] [--json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "test" / "icm_depth_ros" / "instances")]
from json_output import repeats_main  # noqa: E402

GOAL_MS = 2.0


def main(argv=None) -> dict:
    return repeats_main(__doc__, measure, 30, argv)


def measure(args: argparse.Namespace) -> dict:
    from test_instance_statistics import (
        K, cluster_labels, depth_map, panoptic_labels, reference_instance_statistics,
    )

    from icm_depth_ros.instances.statistics import instance_statistics

    depth = depth_map(0)
    labels, firmness = cluster_labels(0)
    cases = {"clusters": (labels, firmness, 0), "panoptic topic": (panoptic_labels(3), None, 1000)}
    report = {"image": "1242x375", "repeats": args.repeats, "goal_ms": GOAL_MS, "cases": {}}
    for name, (case_labels, case_firmness, divisor) in cases.items():
        figures = {"instances": len(instance_statistics(depth, case_labels, K, case_firmness, 50, divisor))}
        for label, function in (("new", instance_statistics), ("previous", reference_instance_statistics)):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                function(depth, case_labels, K, case_firmness, 50, divisor)
                times.append(time.perf_counter() - start)
            figures[f"{label}_median_ms"] = round(float(np.median(times)) * 1e3, 2)
            figures[f"{label}_min_ms"] = round(float(np.min(times)) * 1e3, 2)
        figures["goal_met"] = figures["new_median_ms"] <= GOAL_MS
        report["cases"][name] = figures
    return report


if __name__ == "__main__":
    main()
