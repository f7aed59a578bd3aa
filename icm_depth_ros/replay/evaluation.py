"""What one evaluation run collects, offline or live: frame rows, skip reasons, latencies, sample frames.

Both modes feed frames into ``Evaluation`` and hand ``Evaluation.summary()`` plus its rows and samples
to report.py, so metrics.json / frames.csv / report.md read the same whichever mode made them.
"""
from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from icm_depth_ros.replay.scoring import ReplayScorer

SAMPLE_WIDTH = 320  # pixels: sample frames are kept this wide for the report's panels
MAX_SKIP_EXAMPLES = 5  # first messages kept per skip reason, so a user sees why
INSTANCE_COLUMNS = ("frame", "stamp_ns", "id", "class", "x", "y", "z", "median", "near", "pixel_count", "confidence")


def percentiles(values_s: list[float]) -> dict[str, float] | None:
    """Seconds -> {"mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "count"}; None when empty."""
    if not values_s:
        return None
    ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"mean_ms": float(ms.mean()), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "max_ms": float(ms.max()), "count": int(ms.size)}


class Evaluation:
    """Accumulates one run. ``sample_indices``: frame indices whose images go into the report."""

    def __init__(self, scorer: ReplayScorer, sample_indices: set[int] = frozenset()):
        self.scorer = scorer
        self.sample_indices = set(sample_indices)
        self.rows: list[dict] = []
        self.skipped: Counter = Counter()
        self.skip_examples: dict[str, list[str]] = {}
        self.latencies: dict[str, list[float]] = {}  # name -> seconds per scored frame
        self.samples: list[dict] = []
        self.instance_rows: list[dict] = []  # one per reported instance per frame (instances.csv)
        self.frames_without_instances = 0

    def add_frame(self, index: int, stamp_ns: int, rgb, pred, gt, labels=None, instances=None, K=None,
                  latencies: dict[str, float] | None = None) -> None:
        """One predicted frame: score it (``gt`` None: a drive without ground truth, not scored), keep its
        row, its latencies, its instances' distances and (maybe) its images."""
        if gt is None:
            self._add_unscored(index, stamp_ns, rgb, pred, instances, latencies or {})
            return
        score = self.scorer.score(pred, gt, labels, instances, K)
        if not score.figures:
            self.skip("no_valid_ground_truth", f"frame {index}: no ground-truth pixel inside the depth range/crop",
                      index, stamp_ns)
            return
        for name, seconds in (latencies or {}).items():
            self.latencies.setdefault(name, []).append(seconds)
        row = {"frame": index, "stamp_ns": stamp_ns, "status": "scored", "valid_pixels": score.valid_pixels,
               "covered_fraction": round(score.covered_fraction, 6)}
        row.update({name: value for name, value in score.figures.items()})
        row["instances"] = len(instances) if instances is not None else ""
        row.update({f"{name}_ms": round(seconds * 1000.0, 3) for name, seconds in (latencies or {}).items()})
        self.rows.append(row)
        self._add_instances(index, stamp_ns, instances)
        if index in self.sample_indices and rgb is not None:
            self.samples.append(_sample(index, rgb, pred, gt, score.figures.get("abs_rel"), instances))

    def _add_unscored(self, index, stamp_ns, rgb, pred, instances, latencies: dict[str, float]) -> None:
        for name, seconds in latencies.items():
            self.latencies.setdefault(name, []).append(seconds)
        row = {"frame": index, "stamp_ns": stamp_ns, "status": "predicted",
               "covered_fraction": round(float(np.isfinite(pred).mean()), 6),
               "instances": len(instances) if instances is not None else ""}
        row.update({f"{name}_ms": round(seconds * 1000.0, 3) for name, seconds in latencies.items()})
        self.rows.append(row)
        self._add_instances(index, stamp_ns, instances)
        if index in self.sample_indices and rgb is not None:
            self.samples.append(_sample(index, rgb, pred, None, None, instances))

    def _add_instances(self, index: int, stamp_ns: int, instances) -> None:
        for instance in instances or []:
            x, y, z = (float(c) for c in instance.centroid)
            self.instance_rows.append({
                "frame": index, "stamp_ns": stamp_ns, "id": int(instance.id), "class": int(instance.class_id),
                "x": x, "y": y, "z": z, "median": float(instance.median_depth), "near": float(instance.near_depth),
                "pixel_count": int(instance.pixel_count), "confidence": float(instance.confidence)})

    def skip(self, reason: str, detail: str = "", index: int | None = None, stamp_ns: int | None = None) -> None:
        """A frame that is not scored; every one is counted under its reason (never silent)."""
        self.skipped[reason] += 1
        if detail and len(self.skip_examples.setdefault(reason, [])) < MAX_SKIP_EXAMPLES:
            self.skip_examples[reason].append(detail)
        if index is not None:
            self.rows.append({"frame": index, "stamp_ns": stamp_ns if stamp_ns is not None else "", "status": reason})

    def summary(self, frames_read: int) -> dict:
        """metrics.json contents except run information (added by the caller)."""
        scored = sum(1 for row in self.rows if row["status"] == "scored")
        result = {
            "frames": {
                "read": frames_read,
                "scored": scored,
                "predicted_without_ground_truth": sum(1 for row in self.rows if row["status"] == "predicted"),
                "skipped": int(sum(self.skipped.values())),
                "skipped_by_reason": dict(sorted(self.skipped.items())),
                "skip_examples": self.skip_examples,
                "without_instance_labels": self.frames_without_instances,
            },
            "latency": {name: percentiles(values) for name, values in self.latencies.items()},
        }
        result.update(self.scorer.summary())
        return result


def _sample(index: int, rgb, pred, gt, abs_rel, instances=None) -> dict:
    """Downscaled copies (SAMPLE_WIDTH wide) of one frame's image, prediction and ground truth (None
    without), and its instances as (bbox scaled to that width, median depth in metres) for the contact sheet."""
    height, width = pred.shape
    size = (SAMPLE_WIDTH, max(1, round(height * SAMPLE_WIDTH / width)))
    scale = SAMPLE_WIDTH / width
    boxes = [(tuple(int(round(c * scale)) for c in instance.bbox), float(instance.median_depth))
             for instance in instances or []]

    def shrink(array, interpolation):
        return cv2.resize(np.ascontiguousarray(array), size, interpolation=interpolation)

    return {"frame": index, "abs_rel": abs_rel, "rgb": shrink(rgb, cv2.INTER_AREA),
            "pred": shrink(pred.astype(np.float32), cv2.INTER_NEAREST),
            "gt": None if gt is None else shrink(gt.astype(np.float32), cv2.INTER_NEAREST), "instances": boxes}


def evenly_spaced(count: int, samples: int) -> set[int]:
    """``samples`` indices spread over range(count) (first, last and between)."""
    if count <= 0 or samples <= 0:
        return set()
    return {int(round(i)) for i in np.linspace(0, count - 1, min(samples, count))}
