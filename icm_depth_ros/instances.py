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

    All instances at once (no per-instance mask over the image): one stable sort of the pixels by
    instance groups each instance's pixels in raster order, then every sum is a segment reduction.
    """
    if depth.shape != labels.shape:
        raise ValueError(f"depth {depth.shape} and instance labels {labels.shape} differ in size")
    width = labels.shape[1]
    compact, ids, counts = _compact_labels(labels.ravel())  # [H*W] 0..n; ids [n]: compact i is label ids[i - 1]
    keep = np.flatnonzero(counts[1:] >= max(min_pixels, 1)) + 1  # compact ids reported
    if keep.size == 0:
        return []
    order = np.argsort(compact, kind="stable")[counts[0]:]  # [P] instance pixels grouped by id, raster order
    # Every id 1..n has pixels, so these segment starts rise strictly: reduceat sums exactly one id each.
    ends = np.cumsum(counts[1:])  # [n]
    starts = ends - counts[1:]
    rows, cols = np.divmod(order, width)  # [P] each
    z = depth.ravel()[order]  # [P] float32
    valid = np.isfinite(z)
    z_valid = np.where(valid, z, 0.0).astype(np.float64)
    valid_counts = np.add.reduceat(valid, starts, dtype=np.int64)  # [n]
    z_sums = np.add.reduceat(z_valid, starts)
    u_z_sums = np.add.reduceat(cols * z_valid, starts)
    v_z_sums = np.add.reduceat(rows * z_valid, starts)
    u0, u1 = np.minimum.reduceat(cols, starts), np.maximum.reduceat(cols, starts) + 1
    v0, v1 = rows[starts], rows[ends - 1] + 1  # raster order: the first and last pixel hold the rows
    firm_sums = np.add.reduceat(firmness.ravel()[order], starts, dtype=np.float64) if firmness is not None else None
    z_finite = z[valid]  # [P'] the depths with an estimate, still grouped by id
    finite_ends = np.cumsum(valid_counts)
    instances = []
    for label in keep:
        index = label - 1
        count, n_valid = int(counts[label]), int(valid_counts[index])
        if n_valid:
            values = np.sort(z_finite[finite_ends[index] - n_valid:finite_ends[index]])
            median, near = (_sorted_percentile(values, p) for p in (50.0, NEAR_PERCENTILE))
            mean_z = z_sums[index] / n_valid
            centroid = _centroid_from_means(u_z_sums[index] / n_valid, v_z_sums[index] / n_valid, mean_z, K)
        else:
            median = near = np.nan
            centroid = (np.nan, np.nan, np.nan)
        firm = float(firm_sums[index] / count) if firm_sums is not None else 1.0
        instance_id = int(ids[index])
        instances.append(Instance(
            id=instance_id,
            class_id=instance_id // class_divisor if class_divisor > 0 else -1,
            bbox=(int(u0[index]), int(v0[index]), int(u1[index]), int(v1[index])),
            median_depth=float(median),
            near_depth=float(near),
            centroid=centroid,
            pixel_count=count,
            confidence=firm * (n_valid / count),
        ))
    return instances


def _compact_labels(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels [P] (any integers, 0 = none) -> (compact [P] 0..n in the smallest unsigned type, ids [n]
    ascending, counts [n + 1] pixels per compact id, background first)."""
    low, high = int(flat.min()), int(flat.max())
    if low >= 0 and high <= 4 * flat.size:  # dense ids: one histogram finds the ones present
        if flat.dtype in (np.uint8, np.uint16):  # OpenCV's histogram skips the int64 copy np.bincount makes
            histogram = cv2.calcHist([flat.reshape(1, -1)], [0], None, [high + 1], [0, high + 1]).ravel()
            histogram = histogram.astype(np.int64)  # float32 counts are exact below 2**24 pixels
        else:
            histogram = np.bincount(flat, minlength=high + 1)
        ids = np.flatnonzero(histogram[1:]) + 1
        counts = np.concatenate([histogram[:1], histogram[ids]])
        if ids.size == high:  # ids 1..high all present: the labels are already compact
            return flat.astype(_index_type(high), copy=False), ids, counts
        lookup = np.zeros(high + 1, dtype=_index_type(ids.size))
        lookup[ids] = np.arange(1, ids.size + 1)
        return lookup[flat], ids, counts
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)  # sparse huge or negative ids
    zero = np.searchsorted(ids, 0)
    has_zero = zero < ids.size and ids[zero] == 0
    compact = inverse.astype(np.int64) + 1
    if has_zero:  # background -> 0, the ids above it move down by one
        compact[inverse == zero] = 0
        compact[inverse > zero] -= 1
        ids, background = np.delete(ids, zero), counts[zero]
        counts = np.delete(counts, zero)
    else:
        background = 0
    return compact.astype(_index_type(ids.size)), ids, np.concatenate([[background], counts])


def _index_type(largest: int) -> np.dtype:
    """uint8/uint16 where they hold ``largest``: numpy sorts those with a radix sort."""
    return np.dtype(np.uint8 if largest < 256 else np.uint16 if largest < 65536 else np.int64)


def _sorted_percentile(values: np.ndarray, percent: float) -> float:
    """np.percentile(values, percent) (its default linear method, float64) of ascending ``values``."""
    position = percent / 100.0 * (values.size - 1)
    low = int(np.floor(position))
    a, b, t = float(values[low]), float(values[min(low + 1, values.size - 1)]), position - low
    return b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t  # numpy's lerp, the same rounding


def _centroid_from_means(mean_uz: float, mean_vz: float, mean_z: float, K: np.ndarray | None) -> tuple[float, float, float]:
    """Mean of the back-projected points X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = z, from mean(u z), mean(v z), mean(z)."""
    if K is None:
        return (np.nan, np.nan, float(mean_z))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    return (float((mean_uz - cx * mean_z) / fx), float((mean_vz - cy * mean_z) / fy), float(mean_z))
