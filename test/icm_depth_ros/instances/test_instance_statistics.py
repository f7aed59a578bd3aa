"""Per-instance statistics: instances.instance_statistics against the implementation it replaced.

``reference_instance_statistics`` below is a verbatim copy of the per-instance loop the node published
with before issue 13 (commit 794d4b4); the new code must give the same depth, bbox, centroid, median,
near, confidence, counts, ids and classes on fixed inputs, to float tolerance. Every comparison runs twice:
through the compiled kernel (icm_depth_ros/instances/_instance_kernel.cpp, built by the setup step) and through the
NumPy path that serves where the kernel is not built.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from icm_depth_ros.instances import statistics as instances
from icm_depth_ros.instances.statistics import NEAR_PERCENTILE, Instance, cluster_regions, instance_statistics


@pytest.fixture(params=["kernel", "numpy"])
def implementation(request, monkeypatch):
    """A comparison once with the compiled kernel, once with the NumPy path."""
    if request.param == "kernel":
        assert instances._kernel is not None, (
            "icm_depth_ros/instances/_instance_kernel is not built: run scripts/setup_env.sh (pip install -e .) or colcon build")
    else:
        monkeypatch.setattr(instances, "_kernel", None)
    return request.param


def reference_instance_statistics(
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
            centroid = _reference_centroid(cols[valid] + box[1].start, rows[valid] + box[0].start, z, K)
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


def _reference_centroid(u: np.ndarray, v: np.ndarray, z: np.ndarray, K: np.ndarray | None) -> tuple[float, float, float]:
    """Mean of the back-projected points X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = z."""
    mean_z = float(z.mean())
    if K is None:
        return (np.nan, np.nan, mean_z)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (float((u * z).mean()) - cx * mean_z) / fx
    y = (float((v * z).mean()) - cy * mean_z) / fy
    return (x, y, mean_z)


# ---- fixed inputs ---------------------------------------------------------------------------------------------
SIZE = (375, 1242)
K = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])


def depth_map(seed: int) -> np.ndarray:
    """A smooth road-like depth with noise, NaN rows (a crop) and scattered NaN pixels."""
    rng = np.random.default_rng(seed)
    rows = np.arange(SIZE[0], dtype=np.float32)[:, None]
    depth = (80.0 / (1.0 + 0.03 * rows)) + rng.normal(0, 0.5, SIZE).astype(np.float32)
    depth = np.clip(depth, 1e-3, 80.0).astype(np.float32)
    depth[:12] = np.nan
    depth[rng.random(SIZE) < 0.02] = np.nan
    return depth


def cluster_labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """64 regions from a random membership map upsampled 16x (as the node maps clusters), and a firmness map."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((32, 12, 39)).astype(np.float32) ** 4  # 2x2 blocks: regions of a few cells
    membership = np.kron(coarse, np.ones((1, 2, 2), np.float32)) + rng.random((32, 24, 78)).astype(np.float32) * 1e-3
    membership /= membership.sum(axis=0, keepdims=True)
    regions, firmness = cluster_regions(membership, 3, 64)
    up = np.kron(regions, np.ones((16, 16), np.int32))[:SIZE[0], :SIZE[1]]
    labels = np.zeros(SIZE, np.uint16)
    labels[: up.shape[0], : up.shape[1]] = up
    firm = np.kron(firmness, np.ones((16, 16), np.float32))[:SIZE[0], :SIZE[1]]
    firm_full = np.ones(SIZE, np.float32)
    firm_full[: firm.shape[0], : firm.shape[1]] = firm
    return labels, firm_full


def panoptic_labels(seed: int, instances: int = 64) -> np.ndarray:
    """Boxes of class * 1000 + instance ids (32SC1-style, sparse large ids) on a background of 0."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SIZE, np.int32)
    for index in range(instances):
        v0, u0 = rng.integers(0, SIZE[0] - 20), rng.integers(0, SIZE[1] - 40)
        h, w = rng.integers(5, 120), rng.integers(5, 200)
        labels[v0:v0 + h, u0:u0 + w] = int(rng.integers(11, 19)) * 1000 + index
    return labels


def assert_same(new: list[Instance], old: list[Instance]) -> None:
    assert [i.id for i in new] == [i.id for i in old]
    assert [i.class_id for i in new] == [i.class_id for i in old]
    assert [i.bbox for i in new] == [i.bbox for i in old]
    assert [i.pixel_count for i in new] == [i.pixel_count for i in old]
    for name in ("median_depth", "near_depth", "confidence"):
        np.testing.assert_allclose([getattr(i, name) for i in new], [getattr(i, name) for i in old],
                                   rtol=1e-6, atol=1e-9, err_msg=name)
    np.testing.assert_allclose([i.centroid for i in new], [i.centroid for i in old], rtol=1e-6, atol=1e-7,
                               err_msg="centroid")


@pytest.mark.usefixtures("implementation")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_k", [True, False])
def test_cluster_instances_match_the_reference(seed, with_k):
    depth = depth_map(seed)
    labels, firmness = cluster_labels(seed)
    new = instance_statistics(depth, labels, K if with_k else None, firmness, 50)
    old = reference_instance_statistics(depth, labels, K if with_k else None, firmness, 50)
    assert len(old) == 64  # the case the goal is about
    assert_same(new, old)


@pytest.mark.usefixtures("implementation")
@pytest.mark.parametrize("seed", [3, 4])
def test_panoptic_topic_instances_match_the_reference(seed):
    depth = depth_map(seed)
    labels = panoptic_labels(seed)
    new = instance_statistics(depth, labels, K, None, 50, class_divisor=1000)
    old = reference_instance_statistics(depth, labels, K, None, 50, class_divisor=1000)
    assert len(old) > 40 and {i.class_id for i in old} <= set(range(11, 19))
    assert_same(new, old)


@pytest.mark.usefixtures("implementation")
def test_edge_cases_match_the_reference():
    depth = depth_map(5)
    cases = {
        "background only": np.zeros(SIZE, np.int32),
        "negative and gaps": np.where(panoptic_labels(5, 10) > 0, (panoptic_labels(5, 10) % 7) - 3, 0),
        "dense ids with a gap (mono16)": (panoptic_labels(6, 20) % 1000).astype(np.uint16) * 2,
        "one pixel instances": np.pad(np.arange(1, 11, dtype=np.int32)[None, :], ((0, SIZE[0] - 1), (0, SIZE[1] - 10))),
    }
    all_nan = np.full(SIZE, np.nan, np.float32)
    for name, labels in cases.items():
        for d in (depth, all_nan):
            new = instance_statistics(d, labels, K, None, 1)
            old = reference_instance_statistics(d, labels, K, None, 1)
            assert_same(new, old)
    assert instance_statistics(depth, cases["background only"], K) == []
    with pytest.raises(ValueError, match="differ in size"):
        instance_statistics(depth, np.zeros((10, 10), np.int32), K)


@pytest.mark.usefixtures("implementation")
def test_full_coverage_and_huge_ids_match_the_reference():
    """The node's case (every pixel in some region, runs crossing nothing but row ends) and ids too sparse
    for a lookup table (> 4 x the pixel count), with min_pixels dropping instances between kept ones."""
    depth = depth_map(7)
    rng = np.random.default_rng(7)
    blocks = rng.integers(1, 40, size=(24, 78)).astype(np.int64)  # [24, 78] every cell labelled
    full = np.kron(blocks, np.ones((16, 16), np.int64))[:SIZE[0], :SIZE[1]]
    median_size = int(np.median(np.bincount(full.ravel())[1:]))  # about half the instances are dropped
    for labels in (full, full * 10_000_000 + 7):
        new = instance_statistics(depth, labels, K, None, median_size)
        old = reference_instance_statistics(depth, labels, K, None, median_size)
        assert 10 < len(old) < 30
        assert_same(new, old)


@pytest.mark.usefixtures("implementation")
def test_label_types_and_depth_values_match_the_reference():
    """Every integer width and bools, non-contiguous and float64 inputs, inf and negative depths."""
    depth = depth_map(8)
    depth[100:110, 300:500] = np.inf
    depth[200:210, 600:700] = -depth[200:210, 600:700]  # negative depths order before the positive ones
    labels = panoptic_labels(8, 30) % 1000 % 100  # 0..29
    cases = {dtype: labels.astype(dtype) for dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                                      np.uint32, np.int64, np.uint64)}
    for dtype, case in cases.items():
        assert_same(instance_statistics(depth, case, K, None, 1), reference_instance_statistics(depth, case, K, None, 1))
    mask = labels > 0  # a bool mask is one instance, id 1 (scipy's find_objects, in the reference, takes no bools)
    assert_same(instance_statistics(depth, mask, K, None, 1),
                reference_instance_statistics(depth, mask.astype(np.uint8), K, None, 1))
    strided = np.zeros((SIZE[0], 2 * SIZE[1]), np.int32)
    strided[:, ::2] = labels
    firmness = np.random.default_rng(8).random(SIZE)  # float64
    assert_same(instance_statistics(depth.astype(np.float64), strided[:, ::2], K, firmness, 20),
                reference_instance_statistics(depth.astype(np.float64), labels, K, firmness, 20))


def test_kernel_refuses_bad_buffers_by_name():
    kernel = instances._kernel
    assert kernel is not None, "icm_depth_ros/instances/_instance_kernel is not built"
    depth, labels = np.zeros((4, 6), np.float32), np.ones((4, 6), np.int32)
    with pytest.raises(TypeError, match="float32"):
        kernel.statistics(depth.astype(np.float64), labels, None, 6, 1, 10.0)
    with pytest.raises(ValueError, match="same number of pixels"):
        kernel.statistics(depth, labels[:2], None, 6, 1, 10.0)
    with pytest.raises(ValueError, match="width 5"):
        kernel.statistics(depth, labels, None, 5, 1, 10.0)
    with pytest.raises(TypeError, match="struct format 'f'"):
        kernel.statistics(depth, depth, None, 6, 1, 10.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernel.statistics(depth, np.ones((4, 12), np.int32)[:, ::2], None, 6, 1, 10.0)
    assert kernel.statistics(depth, -labels, None, 6, 1, 10.0) is None  # negative ids: the caller compacts
    assert kernel.statistics(depth, np.zeros((4, 6), np.uint8), None, 6, 1, 10.0) == b""
