"""instance_statistics at 1242x375 for 64 instances, against the per-instance loop it replaced (goal <= 2 ms), and
assignment_regions on the 88x304 cells of a 32-cluster membership map, against OpenCV's per-cluster labelling
(goal <= 0.3 ms).

The inputs and the previous implementations are the ones the tests compare (test/icm_depth_ros/instances/:
test_instance_statistics.py: 64 cluster regions with firmness, 64 panoptic boxes; test_assignment_regions.py: a
smooth 32-cluster assignment). Median and minimum of --repeats calls each.

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
REGIONS_GOAL_MS = 0.3


def main(argv=None) -> dict:
    return repeats_main(__doc__, measure, 30, argv)


def measure(args: argparse.Namespace) -> dict:
    from test_assignment_regions import smooth_assignment
    from test_instance_statistics import (
        K, cluster_labels, depth_map, panoptic_labels, reference_instance_statistics,
    )

    from icm_depth_ros.instances.statistics import _opencv_regions, assignment_regions, instance_statistics

    depth = depth_map(0)
    labels, firmness = cluster_labels(0)
    cases = {"clusters": (labels, firmness, 0), "panoptic topic": (panoptic_labels(3), None, 1000)}
    report = {"image": "1242x375", "repeats": args.repeats, "goal_ms": GOAL_MS, "cases": {}}
    for name, (case_labels, case_firmness, divisor) in cases.items():
        arguments = (depth, case_labels, K, case_firmness, 50, divisor)
        report["cases"][name] = {"instances": len(instance_statistics(*arguments)),
                                 **compare(instance_statistics, reference_instance_statistics, arguments, args.repeats,
                                           GOAL_MS)}
    assignment = smooth_assignment(0)  # [88, 304] int64, 32 clusters
    arguments = (assignment, 3, 64)  # as the node calls it: min 3 cells, at most 64 instances
    report["cases"]["assignment regions 88x304"] = {
        "clusters": int(assignment.max()) + 1, "regions": int(assignment_regions(*arguments).max()),
        "goal_ms": REGIONS_GOAL_MS, **compare(assignment_regions, _opencv_regions, arguments, args.repeats,
                                              REGIONS_GOAL_MS)}
    return report


def compare(new, previous, arguments: tuple, repeats: int, goal_ms: float) -> dict:
    """Median and minimum milliseconds of ``repeats`` calls of each function on the same arguments."""
    figures = {}
    for label, function in (("new", new), ("previous", previous)):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function(*arguments)
            times.append(time.perf_counter() - start)
        figures[f"{label}_median_ms"] = round(float(np.median(times)) * 1e3, 3)
        figures[f"{label}_min_ms"] = round(float(np.min(times)) * 1e3, 3)
    figures["goal_met"] = figures["new_median_ms"] <= goal_ms
    return figures


if __name__ == "__main__":
    main()
