"""Depth metrics for tensors: a thin layer over icm_depth_ros/processing/metrics.py, the one definition.

``depth_metrics(pred, gt, valid)`` takes one image (tensors or arrays) and returns the nine figures of
the KITTI convention (docs/training.md, "Metrics"); ``batch_figures`` evaluates a network output batch, adding instance / background d1
and the cluster-instance alignment.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from icm_depth_ros.processing.metrics import (
    EXTRA_NAMES,
    LOWER_IS_BETTER,
    METRIC_NAMES,
    MetricMeans,
    clamp_prediction,
    evaluation_mask,
    image_figures,
)
from icm_depth_ros.processing.metrics import depth_metrics as _depth_metrics

__all__ = ["EXTRA_NAMES", "LOWER_IS_BETTER", "METRIC_NAMES", "MetricMeans", "batch_figures", "depth_metrics"]


def to_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().float().cpu().numpy() if array.is_floating_point() else array.detach().cpu().numpy()
    return np.asarray(array)


def depth_metrics(pred, gt, valid) -> dict[str, float]:
    """One image: pred, gt [H, W] or [1, H, W] metres, valid bool of the same shape -> METRIC_NAMES."""
    return _depth_metrics(to_numpy(pred).squeeze(), to_numpy(gt).squeeze(), to_numpy(valid).squeeze())


def cluster_labels(attn: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Finest-scale attention [B, N, h, w] -> each pixel's cluster [B, H, W] (nearest upsampling)."""
    labels = attn.argmax(dim=1, keepdim=True).float()  # [B, 1, h, w]
    return F.interpolate(labels, size=size, mode="nearest")[:, 0].long()


@torch.no_grad()
def batch_figures(
    outputs: dict,
    batch: dict,
    min_depth: float,
    max_depth: float,
    crop: str = "none",
    full_size: tuple[int, int] | None = None,
) -> list[dict[str, float | None]]:
    """Per-image figures of a batch. outputs: {"depth": [B,1,H,W], "attn": [..., [B,N,h,w]]};
    batch: {"depth", "valid" [B,1,H,W], optional "instances" [B,1,H,W] (0 = background)}.
    Predictions are clamped to [min_depth, max_depth]; images without a valid pixel give {}."""
    pred = clamp_prediction(to_numpy(outputs["depth"][:, 0]), min_depth, max_depth)  # [B, H, W]
    gt = to_numpy(batch["depth"][:, 0])
    valid = to_numpy(batch["valid"][:, 0]) if "valid" in batch else None
    instances = to_numpy(batch["instances"][:, 0]) if "instances" in batch else None
    labels = None
    if instances is not None and outputs.get("attn"):
        labels = to_numpy(cluster_labels(outputs["attn"][-1], tuple(gt.shape[-2:])))
    figures = []
    for b in range(gt.shape[0]):
        mask = evaluation_mask(gt[b], None if valid is None else valid[b], min_depth, max_depth, crop, full_size)
        figures.append(
            image_figures(
                pred[b],
                gt[b],
                mask,
                None if instances is None else instances[b],
                None if labels is None else labels[b],
            )
        )
    return figures
