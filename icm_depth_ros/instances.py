"""Per-instance depth statistics: instance regions (from the network's clusters or a label image) -> numbers.

Plain NumPy/SciPy; the node and replay evaluation both use it. All maps share one geometry, the
depth image's: depth [H, W] float32 metres (NaN = no estimate), labels [H, W] int (0 = no instance).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

NEAR_PERCENTILE = 10.0  # "near depth": the 10th percentile, robust to a few stray pixels in front


@dataclass(frozen=True)
class Instance:
    """One instance in one frame. bbox is (u0, v0, u1, v1) in depth-image pixels, u1/v1 exclusive."""

    id: int
    class_id: int  # -1 where unknown (network clusters have no semantic class)
    bbox: tuple[int, int, int, int]
    median_depth: float  # metres; NaN when no pixel of the instance has a depth estimate
    near_depth: float  # metres, NEAR_PERCENTILE-th percentile
    centroid: tuple[float, float, float]  # metres in the camera optical frame; x, y NaN without K
    pixel_count: int
    confidence: float  # in [0, 1], see instance_statistics


def cluster_regions(membership: np.ndarray, min_pixels: int, max_regions: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Membership [N, h, w] (softmax over N) -> (regions [h, w] int32, 0 = none; firmness [h, w] float32).

    Each pixel goes to its most likely cluster; each cluster is split into 8-connected regions, since
    one depth cluster often covers several separate objects at similar depth. Regions smaller than
    ``min_pixels`` (at membership resolution) are dropped; ``max_regions`` > 0 keeps only the largest.
    Region ids run 1, 2, ... from the largest region down. ``firmness`` is the winning probability.
    """
    assignment = membership.argmax(axis=0).astype(np.uint8 if membership.shape[0] < 256 else np.int32)
    firmness = membership.max(axis=0).astype(np.float32)
    components = np.zeros(assignment.shape, dtype=np.int32)  # ids unique over all clusters
    areas = [np.zeros(1, dtype=np.int64)]  # global component 0 = nothing
    offset = 0
    for cluster, box in enumerate(ndimage.find_objects(assignment.astype(np.int32) + 1)):
        if box is None:  # no pixel chose this cluster
            continue
        inside = assignment[box] == cluster  # labelling only the cluster's bounding box
        count, local, stats, _ = cv2.connectedComponentsWithStats(inside.astype(np.uint8), connectivity=8)
        components[box][inside] = local[inside] + offset  # local ids 1..count-1 inside the cluster
        areas.append(stats[1:, cv2.CC_STAT_AREA])
        offset += count - 1
    areas = np.concatenate(areas)  # [1 + total components]
    order = np.argsort(-areas[1:], kind="stable") + 1  # largest first
    order = order[areas[order] >= min_pixels]
    if max_regions > 0:
        order = order[:max_regions]
    new_ids = np.zeros(areas.size, dtype=np.int32)
    new_ids[order] = np.arange(1, order.size + 1)
    return new_ids[components], firmness


def instance_statistics(
    depth: np.ndarray,
    labels: np.ndarray,
    K: np.ndarray | None,
    firmness: np.ndarray | None = None,
    min_pixels: int = 1,
    class_divisor: int = 0,
) -> list[Instance]:
    """Statistics of every labelled region of ``depth``.

    depth [H, W] float32 (NaN invalid), labels [H, W] int (0 = background), K [3, 3] of this geometry.
    firmness [H, W] in [0, 1]: per-pixel confidence (the winning cluster probability); None counts as 1.
    confidence = mean firmness over the instance x the fraction of its pixels with a depth estimate.
    class_divisor > 0 reads panoptic labels (label = class * divisor + instance); else class is -1.
    Instances come sorted by id; those under ``min_pixels`` pixels are left out.
    """
    if depth.shape != labels.shape:
        raise ValueError(f"depth {depth.shape} and instance labels {labels.shape} differ in size")
    low, high = int(labels.min()), int(labels.max())
    if low == high == 0:
        return []
    if low < 0 or high > 4 * labels.size:  # sparse huge ids (e.g. panoptic 32SC1): compact for find_objects
        ids = np.unique(labels)
        ids = ids[ids != 0]
        compact = (np.searchsorted(ids, labels) + 1).astype(np.int32)
        compact[labels == 0] = 0
        lookup = ids
    else:
        compact, lookup = labels, None
    objects = ndimage.find_objects(compact)
    instances = []
    for index, box in enumerate(objects):
        if box is None:
            continue
        label = index + 1
        instance_id = int(lookup[index]) if lookup is not None else label
        mask = compact[box] == label
        count = int(mask.sum())
        if count < min_pixels:
            continue
        rows, cols = np.nonzero(mask)
        values = depth[box][mask]
        valid = np.isfinite(values)
        if valid.any():
            z = values[valid].astype(np.float64)
            median, near = np.percentile(z, [50.0, NEAR_PERCENTILE])
            centroid = _centroid(cols[valid] + box[1].start, rows[valid] + box[0].start, z, K)
        else:
            median = near = np.nan
            centroid = (np.nan, np.nan, np.nan)
        firm = float(firmness[box][mask].mean()) if firmness is not None else 1.0
        instances.append(Instance(
            id=instance_id,
            class_id=instance_id // class_divisor if class_divisor > 0 else -1,
            bbox=(box[1].start, box[0].start, box[1].stop, box[0].stop),
            median_depth=float(median),
            near_depth=float(near),
            centroid=centroid,
            pixel_count=count,
            confidence=firm * float(valid.mean()),
        ))
    return instances


def _centroid(u: np.ndarray, v: np.ndarray, z: np.ndarray, K: np.ndarray | None) -> tuple[float, float, float]:
    """Mean of the back-projected points X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = z."""
    mean_z = float(z.mean())
    if K is None:
        return (np.nan, np.nan, mean_z)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (float((u * z).mean()) - cx * mean_z) / fx
    y = (float((v * z).mean()) - cy * mean_z) / fy
    return (x, y, mean_z)
