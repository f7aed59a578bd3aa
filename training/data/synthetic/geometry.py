"""Camera model and vectorised ray casting against the synthetic scene's primitives.

World frame: X right, Y up, Z forward along the road; the road surface is the plane Y = 0.
Camera optical frame (ROS / OpenCV): x right, y down, z forward. A pixel (u, v) has its centre at
integer coordinates, so its ray is d_cam = ((u - cx) / fx, (v - cy) / fy, 1). Because d_cam has a
unit z component, the ray parameter t of a hit point o + t * d_world IS its z-depth in metres.

Primitives are yaw-rotated boxes and axis-aligned ellipsoids, both described by a centre [3] and
half extents [3] (radii for ellipsoids) in world metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# KITTI's rectified left colour camera (image_02): fx = 721.5377 px at 1242 x 375, cy = 172.854 px.
KITTI_FOCAL_PER_WIDTH = 721.5377 / 1242.0
KITTI_CY_PER_HEIGHT = 172.854 / 375.0
KITTI_CAMERA_HEIGHT = 1.65  # metres above the road (KITTI setup page)
NEAR = 0.05  # metres; rays start hitting geometry beyond this depth

KIND_BOX = 0
KIND_ELLIPSOID = 1


def kitti_like_intrinsics(height: int, width: int) -> np.ndarray:
    """K [3, 3] float64 with KITTI's focal length per image width and its principal point ratios."""
    focal = KITTI_FOCAL_PER_WIDTH * width
    return np.array(
        [[focal, 0.0, (width - 1) / 2.0], [0.0, focal, KITTI_CY_PER_HEIGHT * height], [0.0, 0.0, 1.0]]
    )


@dataclass
class CameraPose:
    """Camera position (x, height above road, z) in world metres and its yaw/pitch in radians.

    Positive yaw turns the camera towards +X (right); positive pitch tilts it down. No roll.
    """

    x: float
    height: float
    z: float
    yaw: float = 0.0
    pitch: float = 0.0

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World directions of the optical x (right), y (down) and z (forward) axes, each [3]."""
        cy, sy, cp, sp = np.cos(self.yaw), np.sin(self.yaw), np.cos(self.pitch), np.sin(self.pitch)
        forward = np.array([sy * cp, -sp, cy * cp])
        right = np.array([cy, 0.0, -sy])
        down = np.cross(right, forward)
        return right, down, forward

    @property
    def origin(self) -> np.ndarray:
        return np.array([self.x, self.height, self.z])


def ray_directions(K: np.ndarray, height: int, width: int, pose: CameraPose) -> np.ndarray:
    """World-frame ray directions [3, H, W] float32 whose optical-z component is 1 (t = depth)."""
    u = (np.arange(width, dtype=np.float64) - K[0, 2]) / K[0, 0]
    v = (np.arange(height, dtype=np.float64) - K[1, 2]) / K[1, 1]
    right, down, forward = pose.axes()
    dirs = (
        right[:, None, None] * u[None, None, :]
        + down[:, None, None] * v[None, :, None]
        + forward[:, None, None]
    )
    return dirs.astype(np.float32)


def rotate_yaw(x, z, yaw):
    """Rotate (x, z) about the vertical axis by yaw (object local -> world); inverse is rotate_yaw(-yaw)."""
    if np.isscalar(yaw):  # Python floats keep float32 arrays float32 (NumPy 2 promotion rules)
        c, s = float(np.cos(yaw)), float(np.sin(yaw))
    else:
        c, s = np.cos(yaw), np.sin(yaw)
    return c * x + s * z, -s * x + c * z


def primitive_corners(centers: np.ndarray, halves: np.ndarray, yaws: np.ndarray) -> np.ndarray:
    """World corners [N, 8, 3] of each primitive's (yawed) bounding box."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    local = signs[None] * halves[:, None, :]  # [N, 8, 3]
    wx, wz = rotate_yaw(local[..., 0], local[..., 2], yaws[:, None])
    return np.stack([wx, local[..., 1], wz], axis=-1) + centers[:, None, :]


_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def screen_rects(corners: np.ndarray, K: np.ndarray, pose: CameraPose, height: int, width: int) -> np.ndarray:
    """Pixel rectangles [N, 4] int (row0, row1, col0, col1), half-open, that contain each projected box.

    Boxes crossing the camera plane are clipped against the near plane edge by edge; an empty
    rectangle (row0 >= row1 or col0 >= col1) means the box is out of view.
    """
    right, down, forward = pose.axes()
    rel = corners - pose.origin  # [N, 8, 3]
    cam = np.stack([rel @ right, rel @ down, rel @ forward], axis=-1)  # [N, 8, 3] optical frame
    rects = np.zeros((len(corners), 4), dtype=np.int64)
    in_front = cam[..., 2] > NEAR
    all_front = in_front.all(axis=1)
    u_lo = np.full(len(corners), np.inf)
    u_hi = np.full(len(corners), -np.inf)
    v_lo, v_hi = u_lo.copy(), u_hi.copy()
    if all_front.any():
        c = cam[all_front]
        u = K[0, 0] * c[..., 0] / c[..., 2] + K[0, 2]
        v = K[1, 1] * c[..., 1] / c[..., 2] + K[1, 2]
        u_lo[all_front], u_hi[all_front] = u.min(1), u.max(1)
        v_lo[all_front], v_hi[all_front] = v.min(1), v.max(1)
    for n in np.nonzero(~all_front & in_front.any(axis=1))[0]:
        points = [p for p in cam[n] if p[2] > NEAR]
        for a, b in _EDGES:
            pa, pb = cam[n, a], cam[n, b]
            if (pa[2] > NEAR) != (pb[2] > NEAR):
                s = (NEAR - pa[2]) / (pb[2] - pa[2])
                points.append(pa + s * (pb - pa))
        p = np.array(points)
        u = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
        v = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
        u_lo[n], u_hi[n], v_lo[n], v_hi[n] = u.min(), u.max(), v.min(), v.max()
    with np.errstate(invalid="ignore"):
        rects[:, 0] = np.clip(np.floor(np.nan_to_num(v_lo, posinf=height, neginf=0)), 0, height)
        rects[:, 1] = np.clip(np.ceil(np.nan_to_num(v_hi, posinf=height, neginf=0)) + 1, 0, height)
        rects[:, 2] = np.clip(np.floor(np.nan_to_num(u_lo, posinf=width, neginf=0)), 0, width)
        rects[:, 3] = np.clip(np.ceil(np.nan_to_num(u_hi, posinf=width, neginf=0)) + 1, 0, width)
    return rects


def inverse_directions(dx, dy, dz):
    """Per-axis 1 / d with zeros nudged to 1e-9, precomputed once per frame for unrotated boxes."""
    with np.errstate(divide="ignore"):
        return tuple((1.0 / np.where(np.abs(q) < 1e-9, np.float32(1e-9), q)).astype(np.float32) for q in (dx, dy, dz))


def intersect(kind: int, center, half, yaw: float, ox, oy, oz, dx, dy, dz, inverse=None) -> np.ndarray:
    """Ray parameter t of the first hit (np.inf on a miss) for rays o + t d against one primitive.

    Origins and directions broadcast against each other (scalars or arrays of one shape). `inverse`
    may carry inverse_directions(dx, dy, dz) to speed up boxes with yaw 0.
    """
    # Python floats are "weak" scalars under NumPy 2: float32 ray arrays stay float32
    center, half, yaw = [float(v) for v in center], [float(v) for v in half], float(yaw)
    ox, oy, oz = (v if isinstance(v, np.ndarray) else float(v) for v in (ox, oy, oz))
    dx, dy, dz = (v if isinstance(v, np.ndarray) else float(v) for v in (dx, dy, dz))
    if kind == KIND_BOX and yaw == 0.0:
        px, py, pz = ox - center[0], oy - center[1], oz - center[2]
        if inverse is None:
            inverse = inverse_directions(dx, dy, dz)
        inv = inverse
    else:
        px, pz = rotate_yaw(ox - center[0], oz - center[2], -yaw)
        py = oy - center[1]
        qx, qz = rotate_yaw(dx, dz, -yaw)
        qy = dy
        if kind == KIND_ELLIPSOID:
            px, py, pz = px / half[0], py / half[1], pz / half[2]
            qx, qy, qz = qx / half[0], qy / half[1], qz / half[2]
            a = qx * qx + qy * qy + qz * qz
            b = px * qx + py * qy + pz * qz
            c = px * px + py * py + pz * pz - 1.0
            disc = b * b - a * c
            with np.errstate(invalid="ignore"):
                t = (-b - np.sqrt(disc)) / a
            return np.where((disc >= 0) & (t > NEAR), t, np.inf)
        inv = inverse_directions(qx, qy, qz)
    tmin = tmax = None
    for p, i, h in ((px, inv[0], half[0]), (py, inv[1], half[1]), (pz, inv[2], half[2])):
        t1 = (-h - p) * i
        t2 = (h - p) * i
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        if tmin is None:
            tmin, tmax = near, far
        else:
            np.maximum(tmin, near, out=tmin)
            np.minimum(tmax, far, out=tmax)
    return np.where((tmax >= tmin) & (tmin > NEAR), tmin, np.inf)
