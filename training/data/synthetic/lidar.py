"""A KITTI-like (Velodyne HDL-64E) sampling pattern for sparse ground truth.

64 beams: 32 from +2 deg down to -8.33 deg (1/3 deg apart) and 32 from -8.83 deg to -24.33 deg
(1/2 deg apart), 0.09 deg azimuth steps. The pattern keeps KITTI's spacing in pixels at any image
size: below KITTI's 375 x 1242 the beams are subsampled in proportion to H / 375 (always including the
top and bottom beam) and the azimuth step grows with 1242 / W, so density matches KITTI's (a few percent
of the pixels). The sensor is taken to sit at the camera centre, so a return projects exactly onto the
pixel whose ray it follows and its depth is that pixel's depth; KITTI's 0.27 m camera-LiDAR offset is
left out. About 8% of returns drop out at random.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

ELEVATIONS_DEG = np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.33, 32)])
AZIMUTH_STEP_DEG = 0.09
DROPOUT = 0.08
KITTI_SIZE = (375, 1242)


@lru_cache(maxsize=16)
def _beam_pixels(fx: float, fy: float, cx: float, cy: float, height: int, width: int) -> np.ndarray:
    """Boolean [H, W]: pixels hit by at least one beam of a full sweep."""
    half_fov = np.arctan(max(cx, width - cx) / fx)
    step = AZIMUTH_STEP_DEG * max(1.0, KITTI_SIZE[1] / width)
    azimuth = np.deg2rad(np.arange(-np.rad2deg(half_fov), np.rad2deg(half_fov), step))
    beams = int(np.clip(round(len(ELEVATIONS_DEG) * height / KITTI_SIZE[0]), 2, len(ELEVATIONS_DEG)))
    elevation = np.deg2rad(ELEVATIONS_DEG[np.round(np.linspace(0, len(ELEVATIONS_DEG) - 1, beams)).astype(int)])
    az, el = np.meshgrid(azimuth, elevation)
    # direction (sin az cos el, -sin el, cos az cos el) in the optical frame (y down)
    u = np.round(cx + fx * np.tan(az)).astype(np.int64)
    v = np.round(cy - fy * np.tan(el) / np.cos(az)).astype(np.int64)
    keep = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    mask = np.zeros((height, width), dtype=bool)
    mask[v[keep], u[keep]] = True
    return mask


def lidar_mask(K: np.ndarray, height: int, width: int, seed: int) -> np.ndarray:
    """float32 [H, W] of 1 where a return lands (after random dropout), else 0."""
    beams = _beam_pixels(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), height, width)
    keep = np.random.default_rng(seed).random((height, width)) >= DROPOUT
    return (beams & keep).astype(np.float32)
