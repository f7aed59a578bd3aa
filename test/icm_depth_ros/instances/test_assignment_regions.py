"""assignment_regions: the compiled kernel (one union-find pass over the map) against OpenCV's per-cluster labelling
(_opencv_regions, the path where the kernel is not built), which must agree region id for region id, ties included."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from icm_depth_ros.instances import statistics as instances
from icm_depth_ros.instances.statistics import assignment_regions


@pytest.fixture
def kernel():
    assert instances._kernel is not None, (
        "icm_depth_ros/instances/_instance_kernel is not built: run scripts/setup_env.sh (pip install -e .) or colcon build")
    return instances._kernel


def smooth_assignment(seed: int, clusters: int = 32, shape: tuple[int, int] = (88, 304)) -> np.ndarray:
    """[h, w] int64 arg-max of smooth random cluster scores: blobs with ragged borders, as a membership map gives
    (88x304 cells: the 352x1216 model's quarter-resolution membership for a 1242x375 camera)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((clusters, 6, 19)).astype(np.float32)  # about one blob per cluster
    scores = np.stack([cv2.resize(c, shape[::-1], interpolation=cv2.INTER_CUBIC) for c in coarse])  # [N, h, w]
    return scores.argmax(axis=0)


def random_assignment(rng: np.random.Generator, trial: int) -> np.ndarray:
    """A random map of one of three kinds: independent cells (many tiny regions), square blocks of equal
    size (many equal-area ties), or a few clusters scattered over a background cluster (sparse)."""
    h, w = int(rng.integers(1, 70)), int(rng.integers(1, 110))
    clusters = int(rng.integers(1, 301))
    kind = trial % 3
    if kind == 0:
        return rng.integers(0, clusters, (h, w))
    if kind == 1:
        size = int(rng.integers(1, 5))
        blocks = rng.integers(0, clusters, (-(-h // size), -(-w // size)))
        return np.kron(blocks, np.ones((size, size), np.int64))[:h, :w]
    return np.where(rng.random((h, w)) < rng.uniform(0.05, 0.5), rng.integers(0, clusters, (h, w)), 0)


def both_paths(assignment: np.ndarray, min_pixels: int, max_regions: int, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """(kernel regions, OpenCV regions) of one map, both through assignment_regions."""
    compiled = assignment_regions(assignment, min_pixels, max_regions)
    with monkeypatch.context() as patch:
        patch.setattr(instances, "_kernel", None)
        reference = assignment_regions(assignment, min_pixels, max_regions)
    return compiled, reference


def test_documented_order_by_hand(kernel, monkeypatch):
    """Area first, then cluster, then the first 2x2 block of the cluster's box (not the first cell's raster order:
    the singleton at (2, 3) is in block (0, 1) of cluster 1's box, which starts at (1, 1); the one at (1, 5) in (0, 2))."""
    assignment = np.zeros((6, 6), np.int64)  # cluster 0 around everything else
    assignment[1, 1] = assignment[2, 3] = assignment[1, 5] = 1  # three singletons of cluster 1
    assignment[4, 0] = 2  # a singleton of cluster 2
    assignment[5, 4:] = 2  # and a pair
    expected = np.ones((6, 6), np.int32)  # the 30 cells of cluster 0
    expected[5, 4:] = 2
    expected[1, 1], expected[2, 3], expected[1, 5] = 3, 4, 5  # blocks (0, 0), (0, 1), (0, 2) of cluster 1's box
    expected[4, 0] = 6
    for regions in both_paths(assignment, 1, 0, monkeypatch):
        assert regions.dtype == np.int32
        np.testing.assert_array_equal(regions, expected)
    for regions in both_paths(assignment, 2, 0, monkeypatch):  # the singletons are dropped
        np.testing.assert_array_equal(regions, np.where(expected <= 2, expected, 0))
    for regions in both_paths(assignment, 0, 3, monkeypatch):  # the three largest
        np.testing.assert_array_equal(regions, np.where(expected <= 3, expected, 0))


@pytest.mark.parametrize("seed", range(4))
def test_kernel_matches_opencv_on_random_maps(kernel, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    for trial in range(150):
        assignment = random_assignment(rng, trial)
        if trial % 4 == 1 and assignment.max() < 256:
            assignment = assignment.astype(np.uint8)
        elif trial % 4 == 2:
            assignment = assignment.astype(np.int32)
        elif trial % 4 == 3:
            assignment = assignment.astype(np.uint16)
        min_pixels = int(rng.integers(0, 5))
        max_regions = int(rng.integers(1, 40)) if trial % 2 else 0
        compiled, reference = both_paths(assignment, min_pixels, max_regions, monkeypatch)
        np.testing.assert_array_equal(compiled, reference, err_msg=f"seed {seed} trial {trial} {assignment.dtype} "
                                      f"{assignment.shape} min_pixels {min_pixels} max_regions {max_regions}")


@pytest.mark.parametrize("seed", range(3))
def test_kernel_matches_opencv_on_smooth_maps(kernel, monkeypatch, seed):
    """The node's case: 32 clusters over 88x304 cells, each cluster split into a few regions."""
    assignment = smooth_assignment(seed)
    for min_pixels, max_regions in ((1, 0), (3, 64), (50, 0)):
        compiled, reference = both_paths(assignment, min_pixels, max_regions, monkeypatch)
        np.testing.assert_array_equal(compiled, reference)
    compiled, _ = both_paths(assignment, 1, 0, monkeypatch)
    assert compiled.min() == 1 and compiled.max() > 32  # every cell kept, clusters split into several regions


def test_sparse_cluster_ids_and_layouts_match_opencv(kernel, monkeypatch):
    """Cluster numbers >= 4 x the cell count (the kernel ranks them first), a non-contiguous view, a single
    row and column, and an empty map."""
    rng = np.random.default_rng(11)
    blocks = np.kron(rng.integers(0, 6, (8, 10)), np.ones((2, 2), np.int64))  # [16, 20]
    strided = np.zeros((16, 40), np.int64)
    strided[:, ::2] = blocks
    cases = {"sparse": blocks * 5_000 + 3, "strided": strided[:, ::2], "row": blocks[:1], "column": blocks[:, :1]}
    for name, assignment in cases.items():
        compiled, reference = both_paths(assignment, 1, 0, monkeypatch)
        np.testing.assert_array_equal(compiled, reference, err_msg=name)
        assert compiled.max() > 0
    np.testing.assert_array_equal(both_paths(blocks * 5_000 + 3, 1, 0, monkeypatch)[0],
                                  both_paths(blocks, 1, 0, monkeypatch)[0])  # same order of clusters: same ids
    for regions in both_paths(np.zeros((0, 7), np.int32), 1, 0, monkeypatch):
        assert regions.shape == (0, 7) and regions.dtype == np.int32


def test_bad_assignments_are_refused_by_value(kernel):
    with pytest.raises(ValueError, match=r"2-D integer map, got float32 \(4, 4\)"):
        assignment_regions(np.zeros((4, 4), np.float32), 1)
    with pytest.raises(ValueError, match=r"2-D integer map, got int64 \(2, 4, 4\)"):
        assignment_regions(np.zeros((2, 4, 4), np.int64), 1)
    with pytest.raises(ValueError, match="negative cluster -2"):
        assignment_regions(np.array([[0, 1], [-2, 1]]), 1)
    assignment, out = np.zeros((4, 6), np.int32), np.empty((4, 6), np.int32)
    with pytest.raises(ValueError, match="out must be int32 with the assignment's 24 cells"):
        kernel.regions(assignment, 6, 1, 0, out.astype(np.int64))
    with pytest.raises(ValueError, match="out must be int32 with the assignment's 24 cells"):
        kernel.regions(assignment, 6, 1, 0, out[:2])
    with pytest.raises(ValueError, match="width 5 does not divide 24 cells"):
        kernel.regions(assignment, 5, 1, 0, out)
    with pytest.raises(TypeError, match="struct format 'f'"):
        kernel.regions(assignment.astype(np.float32), 6, 1, 0, out)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernel.regions(np.zeros((4, 12), np.int32)[:, ::2], 6, 1, 0, out)
    with pytest.raises(ValueError, match="not writable|read-only"):
        out.flags.writeable = False
        kernel.regions(assignment, 6, 1, 0, out)
    out = np.empty((4, 6), np.int32)
    assert kernel.regions(assignment - 1, 6, 1, 0, out) is None  # negative: the caller's to refuse
    assert kernel.regions(assignment + 96, 6, 1, 0, out) is None  # >= 4 x 24 cells: the caller ranks them
    assert kernel.regions(assignment, 6, 1, 0, out) == 1 and (out == 1).all()
