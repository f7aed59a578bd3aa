"""Depth metrics (the KITTI convention of Eigen et al. 2014 as BTS, AdaBins and iDisc evaluate it; docs/training.md, "Metrics"): the one definition, in NumPy.

Used by training/metrics.py (training-time evaluation) and by the ROS-side replay evaluation alike;
imports neither PyTorch nor ROS. Every figure is computed per image over its valid pixels; dataset
figures are means over images (``MetricMeans``).
"""
from __future__ import annotations

import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "log10", "d1", "d2", "d3")
# Table IV of the paper splits d1 into instance and background pixels; the alignment measures Fig. 4.
EXTRA_NAMES = ("d1_instance", "d1_background", "cluster_alignment")
LOWER_IS_BETTER = {"abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "log10"}
# Garg et al.'s evaluation crop, as fractions of the full KITTI image (rows, then columns).
GARG_ROWS = (0.40810811, 0.99189189)
GARG_COLS = (0.03594771, 0.96405229)


def depth_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """pred, gt [H, W] metres (any matching shape), valid bool, same shape -> the nine METRIC_NAMES.

    pred must be > 0 where valid (clamp it first, ``clamp_prediction``); gt > 0 where valid.
    Raises ValueError when no pixel is valid (an image without GT has no metrics; skip it knowingly).
    """
    pred, gt, valid = np.asarray(pred, np.float64), np.asarray(gt, np.float64), np.asarray(valid, bool)
    if not (pred.shape == gt.shape == valid.shape):
        raise ValueError(f"pred {pred.shape}, gt {gt.shape} and valid {valid.shape} must have one shape")
    p, g = pred[valid], gt[valid]
    if p.size == 0:
        raise ValueError("no valid pixel: depth metrics are undefined for this image")
    if np.any(p <= 0) or np.any(g <= 0):
        raise ValueError("pred and gt must be > 0 on valid pixels (clamp predictions to the depth range)")
    ratio = np.maximum(p / g, g / p)
    log_error = np.log(p) - np.log(g)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "sq_rel": float(np.mean((p - g) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "rmse_log": float(np.sqrt(np.mean(log_error**2))),
        # max(0, .) guards against a tiny negative from rounding when all errors are equal
        "silog": float(100.0 * np.sqrt(max(np.mean(log_error**2) - np.mean(log_error) ** 2, 0.0))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "d1": float(np.mean(ratio < 1.25)),
        "d2": float(np.mean(ratio < 1.25**2)),
        "d3": float(np.mean(ratio < 1.25**3)),
    }


def delta1(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float | None:
    """d1 over ``mask`` only (e.g. instance or background pixels); None when the mask is empty."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    p, g = np.asarray(pred, np.float64)[mask], np.asarray(gt, np.float64)[mask]
    return float(np.mean(np.maximum(p / g, g / p) < 1.25))


def clamp_prediction(pred: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """BTS convention: predictions clamped to the evaluated depth range; NaN becomes max_depth."""
    pred = np.nan_to_num(np.asarray(pred, np.float64), nan=max_depth, posinf=max_depth, neginf=min_depth)
    return np.clip(pred, min_depth, max_depth)


def garg_crop_mask(height: int, width: int, full_size: tuple[int, int] | None = None) -> np.ndarray:
    """bool [height, width]: True inside Garg's crop.

    ``full_size`` (H0, W0): the evaluated image is a bottom-centre crop (KITTI's KB crop) of an H0 x W0
    image and the crop fractions refer to that full image; None = they refer to this image.
    """
    full_height, full_width = full_size if full_size is not None else (height, width)
    top, left = full_height - height, (full_width - width) // 2  # where this image sits in the full one
    if top < 0 or left < 0:
        raise ValueError(f"full_size {full_size} is smaller than the evaluated image {height}x{width}")
    rows = (int(GARG_ROWS[0] * full_height) - top, int(GARG_ROWS[1] * full_height) - top)
    cols = (int(GARG_COLS[0] * full_width) - left, int(GARG_COLS[1] * full_width) - left)
    mask = np.zeros((height, width), bool)
    mask[max(rows[0], 0) : max(rows[1], 0), max(cols[0], 0) : max(cols[1], 0)] = True
    return mask


def evaluation_mask(
    gt: np.ndarray,
    valid: np.ndarray | None,
    min_depth: float,
    max_depth: float,
    crop: str = "none",
    full_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pixels that count: valid GT strictly inside (min_depth, max_depth), inside the crop."""
    gt = np.asarray(gt)
    mask = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if valid is not None:
        mask &= np.asarray(valid, bool)
    if crop == "garg":
        mask &= garg_crop_mask(*gt.shape[-2:], full_size=full_size)
    elif crop != "none":
        raise ValueError(f"unknown evaluation crop {crop!r}; allowed: 'none', 'garg'")
    return mask


def cluster_instance_alignment(cluster_labels: np.ndarray, instances: np.ndarray) -> float | None:
    """Mean over GT instances of the best IoU of any cluster region with that instance.

    cluster_labels [H, W] int: each pixel's cluster (argmax over clusters of the finest-scale attention,
    brought to the instance map's size); instances [H, W] int, 0 = background, k > 0 = instance k.
    None when the image has no instance.
    """
    cluster_labels, instances = np.asarray(cluster_labels), np.asarray(instances)
    if cluster_labels.shape != instances.shape:
        raise ValueError(f"cluster labels {cluster_labels.shape} and instances {instances.shape} differ in shape")
    ids = [i for i in np.unique(instances) if i > 0]
    if not ids:
        return None
    labels = np.unique(cluster_labels, return_inverse=True)[1].reshape(cluster_labels.shape)  # 0..K-1
    num_labels = int(labels.max()) + 1
    region_sizes = np.bincount(labels.ravel(), minlength=num_labels)  # [K]
    best = []
    for instance in ids:
        inside = instances == instance
        overlap = np.bincount(labels[inside], minlength=num_labels)  # [K] pixels of each region inside
        union = region_sizes + inside.sum() - overlap
        best.append(float(np.max(overlap / union)))
    return float(np.mean(best))


class MetricMeans:
    """Running means over images; a figure an image does not have (None) is left out of its mean."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, figures: dict[str, float | None]) -> None:
        for name, value in figures.items():
            if value is None:
                continue
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
            self.counts[name] = self.counts.get(name, 0) + 1

    def merge(self, sums: dict[str, float], counts: dict[str, int]) -> None:
        for name in sums:
            self.sums[name] = self.sums.get(name, 0.0) + sums[name]
            self.counts[name] = self.counts.get(name, 0) + counts[name]

    def means(self) -> dict[str, float]:
        return {name: self.sums[name] / self.counts[name] for name in self.sums if self.counts[name]}


def image_figures(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    instances: np.ndarray | None = None,
    cluster_labels: np.ndarray | None = None,
) -> dict[str, float | None]:
    """All figures of one image: METRIC_NAMES (+ EXTRA_NAMES where instances/clusters are given).

    pred must already be clamped; mask from ``evaluation_mask``. Returns {} when no pixel counts.
    """
    if not np.any(mask):
        return {}
    figures: dict[str, float | None] = dict(depth_metrics(pred, gt, mask))
    if instances is not None:
        instances = np.asarray(instances)
        figures["d1_instance"] = delta1(pred, gt, mask & (instances > 0))
        figures["d1_background"] = delta1(pred, gt, mask & (instances == 0))
        if cluster_labels is not None:
            figures["cluster_alignment"] = cluster_instance_alignment(cluster_labels, instances)
    return figures
