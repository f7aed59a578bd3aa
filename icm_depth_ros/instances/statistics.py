"""Per-instance depth statistics: instance regions (from the network's clusters or a label image) -> numbers.

Plain NumPy/SciPy; the node and replay evaluation both use it. All maps share one geometry, the
depth image's: depth [H, W] float32 metres (NaN = no estimate), labels [H, W] int (0 = no instance).
"""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from scipy import ndimage

try:
    from icm_depth_ros.instances import _instance_kernel as _kernel  # built by setup.py (colcon build, pip install)
except ImportError:  # a source tree that was never built: the NumPy path gives the same numbers
    _kernel = None

NEAR_PERCENTILE = 10.0  # "near depth": the 10th percentile, robust to a few stray pixels in front


class Instance(NamedTuple):
    """One instance in one frame. bbox is (u0, v0, u1, v1) in depth-image pixels, u1/v1 exclusive.

    A NamedTuple (immutable, compared field by field): a frame makes up to max_instances of them, and a
    tuple is built several times faster than a frozen dataclass.
    """

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

    Each pixel goes to its most likely cluster (``assignment_regions`` does the rest); ``firmness`` is the
    winning probability. Models exported with the reduction in the graph return both maps themselves
    (inference/contract.py), and the pipeline calls ``assignment_regions`` directly.
    """
    assignment = membership.argmax(axis=0)
    firmness = membership.max(axis=0).astype(np.float32)
    return assignment_regions(assignment, min_pixels, max_regions), firmness


def assignment_regions(assignment: np.ndarray, min_pixels: int, max_regions: int = 0) -> np.ndarray:
    """Cluster assignment [h, w] (each cell's arg-max cluster, integers >= 0) -> regions [h, w] int32, 0 = none.

    Each cluster is split into 8-connected regions, since one depth cluster often covers several separate
    objects at similar depth. Regions smaller than ``min_pixels`` (at membership resolution) are dropped;
    ``max_regions`` > 0 keeps only the largest. Region ids run 1, 2, ... from the largest region down; among
    regions of equal size, the one of the lower cluster comes first, and within a cluster the order of
    OpenCV's 8-connected labelling of the cluster's bounding box: by the first 2x2 block (blocks counted
    from the box's top-left cell, in raster order) that holds a cell of the region.

    The compiled kernel labels the whole map in one pass; where it is not built, OpenCV labels each cluster's
    bounding box (_opencv_regions). Both give the same regions.
    """
    assignment = np.asarray(assignment)
    if assignment.ndim != 2 or assignment.dtype.kind not in "iu":
        raise ValueError(f"cluster assignment must be a 2-D integer map, got {assignment.dtype} {assignment.shape}")
    if assignment.size == 0:
        return np.zeros(assignment.shape, dtype=np.int32)
    if assignment.dtype.kind == "i" and assignment.min() < 0:
        raise ValueError(f"cluster assignment has negative cluster {int(assignment.min())}")
    if _kernel is None:
        return _opencv_regions(assignment, min_pixels, max_regions)
    regions = np.empty(assignment.shape, dtype=np.int32)
    assignment = np.ascontiguousarray(assignment)
    if _kernel.regions(assignment, assignment.shape[1], min_pixels, max_regions, regions) is None:
        # clusters too sparse for the kernel's table: their ranks instead (the same order, so the same regions)
        clusters = np.unique(assignment, return_inverse=True)[1].reshape(assignment.shape).astype(np.int32)
        _kernel.regions(clusters, assignment.shape[1], min_pixels, max_regions, regions)
    return regions


def _opencv_regions(assignment: np.ndarray, min_pixels: int, max_regions: int) -> np.ndarray:
    """assignment_regions with OpenCV's labelling, cluster by cluster: where the kernel is not built, and the
    reference the kernel is tested against."""
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
    return new_ids[components]


def compiled_kernel_available() -> bool:
    """Whether assignment_regions and instance_statistics run the compiled kernel (else OpenCV and NumPy: the same
    results, slower)."""
    return _kernel is not None


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
    median_depth and near_depth are np.percentile's (linear method) of the instance's finite depths.

    The compiled kernel (_instance_kernel.cpp, built with the package) does it in one pass over the image;
    where it is not built, the same numbers come from NumPy segment reductions (_numpy_columns), slower.
    """
    if depth.shape != labels.shape:
        raise ValueError(f"depth {depth.shape} and instance labels {labels.shape} differ in size")
    use_kernel = _kernel is not None and labels.dtype.kind in "iub"
    columns = (_kernel_columns if use_kernel else _numpy_columns)(depth, labels, firmness, max(min_pixels, 1))
    if columns is None:
        return []
    ids, counts, valid_counts, u0, v0, u1, v1, z_sums, u_z_sums, v_z_sums, firm_sums, median, near = columns
    with np.errstate(invalid="ignore", divide="ignore"):  # no valid pixel: NaN centroid, as the reference
        n_valid = valid_counts.astype(np.float64)
        mean_z, mean_uz, mean_vz = z_sums / n_valid, u_z_sums / n_valid, v_z_sums / n_valid
        if K is None:
            x = y = np.full(ids.size, np.nan)
        else:
            fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
            x, y = (mean_uz - cx * mean_z) / fx, (mean_vz - cy * mean_z) / fy
    mean_z[valid_counts == 0] = np.nan
    confidence = firm_sums / counts * (valid_counts / counts)
    classes = ids // class_divisor if class_divisor > 0 else np.full(ids.size, -1)
    columns = [np.asarray(a).tolist() for a in (ids, classes, u0, v0, u1, v1, median, near, x, y, mean_z, counts,
                                                 confidence)]
    return [Instance(id=i, class_id=c, bbox=(a, b, e, f), median_depth=m, near_depth=q, centroid=(cx_, cy_, cz),
                     pixel_count=n, confidence=w)
            for i, c, a, b, e, f, m, q, cx_, cy_, cz, n, w in zip(*columns)]


def _kernel_columns(depth: np.ndarray, labels: np.ndarray, firmness: np.ndarray | None, min_pixels: int):
    """instance_statistics' per-instance columns (kept instances only) from the compiled kernel, or None."""
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    firmness = None if firmness is None else np.ascontiguousarray(firmness, dtype=np.float32)
    rows = _kernel.statistics(depth, np.ascontiguousarray(labels), firmness, depth.shape[1], min_pixels, NEAR_PERCENTILE)
    ids = None
    if rows is None:  # negative or huge sparse ids: compact them to 1..n for the kernel's table
        ids = np.unique(labels)
        ids = ids[ids != 0]
        compact = (np.searchsorted(ids, labels) + 1).astype(np.int32)
        compact[labels == 0] = 0
        rows = _kernel.statistics(depth, compact, firmness, depth.shape[1], min_pixels, NEAR_PERCENTILE)
    if not rows:
        return None
    rows = np.frombuffer(rows, dtype=np.float64).reshape(-1, _kernel.FIELDS)
    label = rows[:, 0].astype(np.int64)
    label = label if ids is None else ids[label - 1].astype(np.int64)
    counts, valid_counts, u0, v0, u1, v1 = (rows[:, k].astype(np.int64) for k in range(1, 7))
    return (label, counts, valid_counts, u0, v0, u1, v1, *(rows[:, k] for k in range(7, 13)))


def _numpy_columns(depth: np.ndarray, labels: np.ndarray, firmness: np.ndarray | None, min_pixels: int):
    """The same columns as _kernel_columns with NumPy only, or None when no pixel is labelled.

    All instances at once, touching each pixel of the label image once: the label image becomes runs
    (row pieces of one label), the runs are grouped by instance, and only the labelled pixels are then
    gathered, instance after instance in raster order; every sum is a segment reduction over them and the
    two order statistics come from one in-place sort per instance.
    """
    runs = _label_runs(labels)
    if runs is None:
        return None
    ids, run_instance, run_starts, run_lengths = runs  # ids [n] ascending; per run [R]: compact id, start, length
    width = labels.shape[1]
    # Runs of one instance together, each instance's runs in raster order (a radix sort of small ints).
    order = np.argsort(run_instance, kind="stable")
    run_instance, run_starts, run_lengths = run_instance[order], run_starts[order], run_lengths[order]
    counts = np.bincount(run_instance, weights=run_lengths, minlength=ids.size).astype(np.int64)  # [n] pixels
    run_rows, run_cols = np.divmod(run_starts, width)  # [R]
    first_run = np.searchsorted(run_instance, np.arange(ids.size))  # [n] every instance has >= 1 run

    # The labelled pixels, grouped: pixel k of run r is flat index run_starts[r] + k.
    run_offsets = np.cumsum(run_lengths) - run_lengths  # [R] where each run begins among the gathered pixels
    pixels = np.repeat(run_starts - run_offsets, run_lengths)  # [P] flat index - position
    positions = np.arange(pixels.size, dtype=np.int64)
    pixels += positions
    z = depth.ravel()[pixels]  # [P] float32, NaN = no estimate
    valid = np.isfinite(z)
    # float32 with float64 sums (reduceat casts chunk by chunk): no 8-byte copy of every pixel to allocate
    z_valid = np.where(valid, z, np.float32(0.0))  # [P] float32, 0 where no estimate
    instance_starts = run_offsets[first_run]  # [n] strictly rising
    invalid = np.flatnonzero(~valid)  # usually few: count them per instance instead of summing P booleans
    valid_counts = counts - np.bincount(np.searchsorted(instance_starts, invalid, side="right") - 1,
                                        minlength=ids.size)  # [n]
    run_z = np.add.reduceat(z_valid, run_offsets, dtype=np.float64)  # [R] sum of z per run
    z_sums = np.add.reduceat(run_z, first_run)  # [n]
    # sum of u z over a run = sum of (position - run offset + run column) z
    run_uz = np.add.reduceat(positions * z_valid, run_offsets) + (run_cols - run_offsets) * run_z
    u_z_sums = np.add.reduceat(run_uz, first_run)
    v_z_sums = np.add.reduceat(run_rows * run_z, first_run)  # a run lies in one row
    u0 = np.minimum.reduceat(run_cols, first_run)
    u1 = np.maximum.reduceat(run_cols + run_lengths, first_run)
    v0 = run_rows[first_run]  # raster order: an instance's first run holds its top row, its last the bottom
    v1 = run_rows[np.append(first_run[1:], run_rows.size) - 1] + 1
    firm_sums = (np.add.reduceat(firmness.ravel()[pixels], instance_starts, dtype=np.float64)
                 if firmness is not None else counts.astype(np.float64))

    keep = np.flatnonzero(counts >= min_pixels)
    for start, end in zip(instance_starts[keep].tolist(), (instance_starts[keep] + counts[keep]).tolist()):
        z[start:end].sort()  # z is our gathered copy: each instance's depths ascending, NaN last
    median, near = (_sorted_percentile(z, instance_starts, valid_counts, p) for p in (50.0, NEAR_PERCENTILE))
    return tuple(a[keep] for a in (ids, counts, valid_counts, u0, v0, u1, v1, z_sums, u_z_sums, v_z_sums, firm_sums,
                                   median, near))


def _label_runs(labels: np.ndarray):
    """labels [H, W] -> (ids [n] ascending, and per run of one nonzero label within a row [R]: compact id
    0..n-1, flat start, length), or None when no pixel is labelled."""
    flat = labels.ravel().view(np.uint8) if labels.dtype == bool else labels.ravel()
    breaks = np.empty(flat.size, dtype=bool)  # [H*W] a run begins here
    breaks[0] = True
    np.not_equal(flat[1:], flat[:-1], out=breaks[1:])
    breaks[::labels.shape[1]] = True  # runs never wrap to the next row
    starts = np.flatnonzero(breaks)  # [R0]
    lengths = np.diff(starts, append=flat.size)
    run_labels = flat[starts]
    labelled = run_labels != 0
    if not labelled.any():
        return None
    run_labels = run_labels[labelled]
    low, high = int(run_labels.min()), int(run_labels.max())
    if low > 0 and high <= 4 * flat.size:  # dense enough for a lookup table (no sort of the runs)
        present = np.zeros(high + 1, dtype=bool)
        present[run_labels] = True
        ids = np.flatnonzero(present)
        lookup = np.zeros(high + 1, dtype=_index_type(ids.size))
        lookup[ids] = np.arange(ids.size)
        run_instance = lookup[run_labels]
    else:  # negative or huge sparse ids
        ids, run_instance = np.unique(run_labels, return_inverse=True)
        run_instance = run_instance.astype(_index_type(ids.size))
    return ids, run_instance, starts[labelled], lengths[labelled]


def _index_type(largest: int) -> np.dtype:
    """uint8/uint16 where they hold ``largest``: numpy sorts those with a radix sort."""
    return np.dtype(np.uint8 if largest < 256 else np.uint16 if largest < 65536 else np.int64)


def _sorted_percentile(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray, percent: float) -> np.ndarray:
    """np.percentile(segment, percent) (its default linear method, float64) of every ascending segment
    values[starts[i]:starts[i] + sizes[i]]; NaN where a segment is empty."""
    position = percent / 100.0 * np.maximum(sizes - 1, 0)  # [n]
    low = np.floor(position).astype(np.int64)
    a = values[starts + low].astype(np.float64)
    b = values[starts + np.minimum(low + 1, np.maximum(sizes - 1, 0))].astype(np.float64)
    t = position - low
    result = np.where(t >= 0.5, b - (b - a) * (1.0 - t), a + (b - a) * t)  # numpy's lerp, the same rounding
    return np.where(sizes > 0, result, np.nan)
