"""Score predicted depth against ground truth, frame by frame, with the project's one metric definition.

Per frame: the KITTI figures of icm_depth_ros/processing/metrics.py (``image_figures``: depth_metrics plus d1 over
instance and background pixels when labels are present), after the BTS evaluation convention
(valid 'min_depth < gt < max_depth' inside the crop, predictions clamped to that range).
Over the drive: means over frames, pixel error against ground-truth distance, and per-instance depth
error by distance band, where an instance's depth is the median over its pixels as computed by the
node's own instance code (instances.instance_statistics) on both maps.

Every drive figure is computed from ``ScoreTotals`` (sums and counts). The sums are exact (fractions of the
float64 terms), so totals merged in any grouping give the same figures to the last bit: replay_fleet's
drives merged equal one replay_eval run over all their frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from icm_depth_ros.instances.statistics import Instance, instance_statistics
from icm_depth_ros.processing.metrics import clamp_prediction, evaluation_mask, image_figures

DISTANCE_BANDS = ((0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 80.0))  # metres, [low, high)
DISTANCE_BIN_WIDTH = 2.0  # metres: resolution of the error-against-distance curve


def band_name(low: float, high: float) -> str:
    return f"{low:g}-{high:g}m"


@dataclass
class FrameScore:
    """Figures of one frame (empty when no pixel counts) and its per-instance errors."""

    figures: dict[str, float | None]
    valid_pixels: int
    covered_fraction: float  # share of counted pixels where the network gave an estimate (not NaN)
    instance_errors: list[dict] = field(default_factory=list)  # {"id", "gt", "pred", "error", "band"}


@dataclass
class ScoreTotals:
    """What the figures of a run are computed from; ``merge`` adds another run's (in frame order).

    metric_sums[name] / metric_counts[name]: mean over scored frames of each figure (a frame without the
    figure, e.g. d1_instance without labels, is not counted). bin_*: per 2 m bin of true distance [B], sums
    over scored pixels of |p - g| / g and |p - g|, and the pixel counts. instance_errors: one row per scored
    instance, in frame order ({"id", "class", "gt", "pred", "error", "band"}).
    """

    metric_sums: dict[str, Fraction] = field(default_factory=dict)
    metric_counts: dict[str, int] = field(default_factory=dict)
    bin_abs_rel: list[Fraction] = field(default_factory=list)
    bin_abs_error: list[Fraction] = field(default_factory=list)
    bin_count: list[int] = field(default_factory=list)
    instance_errors: list[dict] = field(default_factory=list)

    def add_figures(self, figures: dict[str, float | None]) -> None:
        for name, value in figures.items():
            if value is not None:
                self.metric_sums[name] = self.metric_sums.get(name, Fraction(0)) + Fraction(value)
                self.metric_counts[name] = self.metric_counts.get(name, 0) + 1

    def add_bins(self, abs_rel: np.ndarray, abs_error: np.ndarray, count: np.ndarray) -> None:
        """abs_rel, abs_error float64 [B], count int [B]: one frame's sums per distance bin."""
        if not self.bin_count:
            self.bin_abs_rel, self.bin_abs_error = [Fraction(0)] * len(count), [Fraction(0)] * len(count)
            self.bin_count = [0] * len(count)
        for b in np.flatnonzero(count):
            self.bin_abs_rel[b] += Fraction(float(abs_rel[b]))
            self.bin_abs_error[b] += Fraction(float(abs_error[b]))
            self.bin_count[b] += int(count[b])

    def merge(self, other: "ScoreTotals") -> None:
        for name, value in other.metric_sums.items():
            self.metric_sums[name] = self.metric_sums.get(name, Fraction(0)) + value
            self.metric_counts[name] = self.metric_counts.get(name, 0) + other.metric_counts[name]
        if other.bin_count:
            if not self.bin_count:
                self.bin_abs_rel, self.bin_abs_error = [Fraction(0)] * len(other.bin_count), [Fraction(0)] * len(other.bin_count)
                self.bin_count = [0] * len(other.bin_count)
            if len(other.bin_count) != len(self.bin_count):
                raise ValueError(f"distance bins differ ({len(other.bin_count)} against {len(self.bin_count)}): "
                                 "runs with different --max-depth cannot be merged")
            self.bin_abs_rel = [a + b for a, b in zip(self.bin_abs_rel, other.bin_abs_rel)]
            self.bin_abs_error = [a + b for a, b in zip(self.bin_abs_error, other.bin_abs_error)]
            self.bin_count = [a + b for a, b in zip(self.bin_count, other.bin_count)]
        self.instance_errors.extend(other.instance_errors)

    def means(self) -> dict[str, float]:
        """Mean over frames of each figure, correctly rounded from the exact sums."""
        return {name: float(self.metric_sums[name] / self.metric_counts[name]) for name in self.metric_sums}

    @property
    def valid_pixels(self) -> int:
        """Scored pixels: every one falls into exactly one distance bin."""
        return sum(self.bin_count)


class ReplayScorer:
    """Accumulates frame scores over a drive. ``max_depth`` also caps the ground truth (the KITTI evaluation's 80 m; docs/training.md, "Metrics")."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 80.0, crop: str = "none"):
        if not 0 < min_depth < max_depth:
            raise ValueError(f"depth range min {min_depth}, max {max_depth}: need 0 < min < max")
        self.min_depth, self.max_depth, self.crop = min_depth, max_depth, crop
        evaluation_mask(np.ones((2, 2)), None, min_depth, max_depth, crop)  # rejects an unknown crop now
        edges = np.arange(0.0, max_depth + DISTANCE_BIN_WIDTH, DISTANCE_BIN_WIDTH)
        self.bin_edges = edges[edges <= max_depth + 1e-9]  # [B + 1]
        self.totals = ScoreTotals()

    def score(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        labels: np.ndarray | None = None,
        pred_instances: list[Instance] | None = None,
        K: np.ndarray | None = None,
    ) -> FrameScore:
        """pred, gt float32 [H, W] metres (NaN = none); labels [H, W] int (0 = background) or None.

        pred_instances: the pipeline's instances computed from ``labels`` (ids = label values).
        """
        if pred.shape != gt.shape:
            raise ValueError(f"predicted depth {pred.shape} and ground truth {gt.shape} differ in size")
        mask = evaluation_mask(gt, None, self.min_depth, self.max_depth, self.crop)  # [H, W] bool
        valid_pixels = int(mask.sum())
        covered = float(np.isfinite(pred[mask]).mean()) if valid_pixels else 0.0
        clamped = clamp_prediction(pred, self.min_depth, self.max_depth)
        figures = image_figures(clamped, gt, mask, instances=labels)
        score = FrameScore(figures, valid_pixels, covered)
        if not figures:
            return score
        self.totals.add_figures(figures)
        self._add_distance_bins(clamped[mask], gt[mask].astype(np.float64))
        if labels is not None and pred_instances is not None:
            score.instance_errors = self._instance_errors(gt, mask, labels, pred_instances, K)
            self.totals.instance_errors.extend(score.instance_errors)
        return score

    def _add_distance_bins(self, p: np.ndarray, g: np.ndarray) -> None:
        count = len(self.bin_edges) - 1
        bins = np.clip(np.digitize(g, self.bin_edges) - 1, 0, count - 1)
        self.totals.add_bins(np.bincount(bins, np.abs(p - g) / g, minlength=count),
                             np.bincount(bins, np.abs(p - g), minlength=count), np.bincount(bins, minlength=count))

    def _instance_errors(self, gt, mask, labels, pred_instances, K) -> list[dict]:
        """Median GT depth of each labelled instance (counted pixels only) against the pipeline's median."""
        gt_counted = np.where(mask, gt, np.nan).astype(np.float32)
        predicted = {instance.id: instance for instance in pred_instances}
        errors = []
        for truth in instance_statistics(gt_counted, labels, K):
            guess = predicted.get(truth.id)
            if not np.isfinite(truth.median_depth) or guess is None or not np.isfinite(guess.median_depth):
                continue
            band = next((band_name(*b) for b in DISTANCE_BANDS if b[0] <= truth.median_depth < b[1]), None)
            if band is None:
                continue
            errors.append({
                "id": truth.id, "class": int(guess.class_id), "gt": truth.median_depth, "pred": guess.median_depth,
                "error": guess.median_depth - truth.median_depth, "band": band,
            })
        return errors

    def summary(self) -> dict:
        """Means over scored frames, per-band instance errors and the error-against-distance curve."""
        return summarize_totals(self.totals, self.bin_edges)


def summarize_totals(totals: ScoreTotals, bin_edges: np.ndarray) -> dict:
    """metrics, instance_error_by_distance (and _by_class where instances have a class), error_by_distance."""
    bands = {band_name(low, high): _instance_figures([e for e in totals.instance_errors if e["band"] == band_name(low, high)])
             for low, high in DISTANCE_BANDS}
    classes = sorted({e.get("class", -1) for e in totals.instance_errors} - {-1})
    filled = [b for b, count in enumerate(totals.bin_count) if count]
    curve = {
        "bin_low_m": [float(bin_edges[b]) for b in filled],
        "bin_high_m": [float(bin_edges[b + 1]) for b in filled],
        "pixels": [totals.bin_count[b] for b in filled],
        "abs_rel": [float(totals.bin_abs_rel[b] / totals.bin_count[b]) for b in filled],
        "abs_error_m": [float(totals.bin_abs_error[b] / totals.bin_count[b]) for b in filled],
    }
    summary = {"metrics": totals.means(), "instance_error_by_distance": bands, "error_by_distance": curve}
    if classes:
        summary["instance_error_by_class"] = {
            str(c): _instance_figures([e for e in totals.instance_errors if e.get("class") == c]) for c in classes}
    return summary


def _instance_figures(rows: list[dict]) -> dict:
    errors = np.array([e["error"] for e in rows])
    truths = np.array([e["gt"] for e in rows])
    return {
        "instances": len(rows),
        "mean_abs_error_m": float(np.mean(np.abs(errors))) if rows else None,
        "mean_error_m": float(np.mean(errors)) if rows else None,  # > 0: the network places them too far
        "abs_rel": float(np.mean(np.abs(errors) / truths)) if rows else None,
    }
