"""Score predicted depth against ground truth, frame by frame, with the project's one metric definition.

Per frame: the KITTI figures of icm_depth_ros/processing/metrics.py (``image_figures``: depth_metrics plus d1 over
instance and background pixels when labels are present), after the BTS evaluation convention
(valid 'min_depth < gt < max_depth' inside the crop, predictions clamped to that range).
Over the drive: means over frames (``MetricMeans``), pixel error against ground-truth distance, and
per-instance depth error by distance band, where an instance's depth is the median over its pixels
as computed by the node's own instance code (instances.instance_statistics) on both maps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icm_depth_ros.instances.statistics import Instance, instance_statistics
from icm_depth_ros.processing.metrics import MetricMeans, clamp_prediction, evaluation_mask, image_figures

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


class ReplayScorer:
    """Accumulates frame scores over a drive. ``max_depth`` also caps the ground truth (FACTS section 4)."""

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 80.0, crop: str = "none"):
        if not 0 < min_depth < max_depth:
            raise ValueError(f"depth range min {min_depth}, max {max_depth}: need 0 < min < max")
        self.min_depth, self.max_depth, self.crop = min_depth, max_depth, crop
        evaluation_mask(np.ones((2, 2)), None, min_depth, max_depth, crop)  # rejects an unknown crop now
        self.means = MetricMeans()
        edges = np.arange(0.0, max_depth + DISTANCE_BIN_WIDTH, DISTANCE_BIN_WIDTH)
        self.bin_edges = edges[edges <= max_depth + 1e-9]  # [B + 1]
        self.bin_abs_rel = np.zeros(len(self.bin_edges) - 1)  # sums over pixels
        self.bin_abs_error = np.zeros(len(self.bin_edges) - 1)
        self.bin_count = np.zeros(len(self.bin_edges) - 1, dtype=np.int64)
        self.instance_errors: list[dict] = []

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
        self.means.add(figures)
        self._add_distance_bins(clamped[mask], gt[mask].astype(np.float64))
        if labels is not None and pred_instances is not None:
            score.instance_errors = self._instance_errors(gt, mask, labels, pred_instances, K)
            self.instance_errors.extend(score.instance_errors)
        return score

    def _add_distance_bins(self, p: np.ndarray, g: np.ndarray) -> None:
        bins = np.clip(np.digitize(g, self.bin_edges) - 1, 0, len(self.bin_count) - 1)
        self.bin_abs_rel += np.bincount(bins, np.abs(p - g) / g, minlength=len(self.bin_count))
        self.bin_abs_error += np.bincount(bins, np.abs(p - g), minlength=len(self.bin_count))
        self.bin_count += np.bincount(bins, minlength=len(self.bin_count))

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
                "id": truth.id, "gt": truth.median_depth, "pred": guess.median_depth,
                "error": guess.median_depth - truth.median_depth, "band": band,
            })
        return errors

    def summary(self) -> dict:
        """Means over scored frames, per-band instance errors and the error-against-distance curve."""
        means = self.means.means()
        bands = {}
        for low, high in DISTANCE_BANDS:
            rows = [e for e in self.instance_errors if e["band"] == band_name(low, high)]
            errors = np.array([e["error"] for e in rows])
            truths = np.array([e["gt"] for e in rows])
            bands[band_name(low, high)] = {
                "instances": len(rows),
                "mean_abs_error_m": float(np.mean(np.abs(errors))) if rows else None,
                "mean_error_m": float(np.mean(errors)) if rows else None,  # > 0: the network places them too far
                "abs_rel": float(np.mean(np.abs(errors) / truths)) if rows else None,
            }
        filled = self.bin_count > 0
        curve = {
            "bin_low_m": self.bin_edges[:-1][filled].tolist(),
            "bin_high_m": self.bin_edges[1:][filled].tolist(),
            "pixels": self.bin_count[filled].tolist(),
            "abs_rel": (self.bin_abs_rel[filled] / self.bin_count[filled]).tolist(),
            "abs_error_m": (self.bin_abs_error[filled] / self.bin_count[filled]).tolist(),
        }
        return {"metrics": means, "instance_error_by_distance": bands, "error_by_distance": curve}
