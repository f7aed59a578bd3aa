"""Render frames of a synthetic road scene: RGB, exact z-depth, instance ids, semantics.

`render_scene(seed, size)` renders the first frame of scene `seed`; `render_sequence(n, size, seed)`
renders an ego camera driving through one scene at 10 Hz. Both are deterministic per seed.

A frame is a dict:
    image             uint8 [H, W, 3] RGB
    depth             float32 [H, W] z-depth in metres along the optical axis; 0 where invalid (sky).
                      With sparse=True only LiDAR-like samples are kept (others 0).
    dense_depth       float32 [H, W] the full depth even when sparse=True
    instances         uint16 [H, W] thing instance id, 0 = no thing; ids are stable across a sequence
    semantic          uint8 [H, W] Cityscapes trainId (0 road ... 10 sky, 11-18 things)
    instance_classes  dict {instance id: Cityscapes trainId} for the ids present in this frame
    K                 float64 [3, 3] intrinsics
    stamp_ns          int, nanoseconds since the sequence start (100 ms apart)
    camera            dict height, pitch, yaw, x, z of the camera (metres, radians)
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .geometry import (CameraPose, intersect, inverse_directions, kitti_like_intrinsics, primitive_corners, ray_directions,
                       rotate_yaw, screen_rects)
from .layout import Scene, build_scene
from .lidar import lidar_mask
from .objects import ROAD, SKY, TERRAIN
from .shading import box_normals, facade_parameters, ground_colors, part_colors, sky_colors, to_world_normals

FRAME_PERIOD_NS = 100_000_000  # 10 Hz
MAX_GROUND_DEPTH = 1000.0
SHADOW_CASTER_RANGE = 90.0  # metres  # metres; the ground plane beyond this reads as horizon (sky, invalid)


@lru_cache(maxsize=4)
def sensor_noise(count: int) -> np.ndarray:
    """float32 [2 * count] Gaussian pixel noise (sigma 0.012); frames use a seeded window into it."""
    noise = np.random.default_rng(0).standard_normal(2 * count, dtype=np.float32) * np.float32(0.012)
    noise.flags.writeable = False
    return noise


class PartTable:
    """The scene's parts as arrays: centre [N, 3], half [N, 3], yaw, kind, material, colour [N, 3], ids."""

    def __init__(self, parts):
        self.center = np.array([p.center for p in parts], dtype=np.float64).reshape(-1, 3)
        self.half = np.array([p.half for p in parts], dtype=np.float64).reshape(-1, 3)
        self.velocity = np.array([p.velocity for p in parts], dtype=np.float64).reshape(-1, 3)
        self.acceleration = np.array([p.acceleration for p in parts], dtype=np.float64).reshape(-1, 3)
        self.accelerate_from = np.array([p.accelerate_from_s for p in parts], dtype=np.float64)
        self.accelerate_for = np.array([p.accelerate_for_s for p in parts], dtype=np.float64)
        self.yaw = np.array([p.yaw for p in parts], dtype=np.float64)
        self.kind = np.array([p.kind for p in parts], dtype=np.int64)
        self.material = np.array([p.material for p in parts], dtype=np.int64)
        self.color = np.array([p.color for p in parts], dtype=np.float32).reshape(-1, 3)
        self.semantic = np.array([p.semantic for p in parts], dtype=np.uint8)
        self.instance = np.array([p.instance for p in parts], dtype=np.uint16)
        self.shadow = np.array([p.shadow for p in parts], dtype=bool)
        self.facade = facade_parameters(len(parts))


def part_centers(table: PartTable, time_s: float) -> np.ndarray:
    """Part centres [N, 3] at ``time_s``: velocity, plus the acceleration over its phase [from, from + for]
    (before: nothing; after: the speed it reached is kept)."""
    tau = np.clip(time_s - table.accelerate_from, 0.0, table.accelerate_for)  # [N] seconds accelerated so far
    after = time_s - table.accelerate_from - tau  # [N] seconds since the phase ended (0 before its end)
    shift = 0.5 * tau * tau + tau * np.maximum(after, 0.0)
    return table.center + table.velocity * time_s + table.acceleration * shift[:, None]


def _cast_shadows(scene, table, centers, K, pose, size):
    """Per part: usable as a shadow caster [N] bool, screen rectangle of its shadow volume [N, 4] and the
    volume's optical depth range [N, 2]. Skips casters whose shadow volume reaches behind the camera
    (their shadow would need near-plane clipping of the swept volume)."""
    H, W = size
    sun = scene.sun
    corners = primitive_corners(centers, table.half, table.yaw)  # [N, 8, 3]
    ground = corners - sun[None, None] * (corners[..., 1:2] / sun[1])
    volume = np.concatenate([corners, ground], axis=1)  # [N, 16, 3]
    right, down, forward = pose.axes()
    depth = (volume - pose.origin) @ forward
    # far casters' shadows are a few pixels: skip them; near ones must lie wholly in front of the camera
    usable = table.shadow & (depth.min(axis=1) > 0.5) & (depth.min(axis=1) < SHADOW_CASTER_RANGE)
    rect_a = screen_rects(corners, K, pose, H, W)
    rect_b = screen_rects(ground, K, pose, H, W)
    rects = np.stack([np.minimum(rect_a[:, 0], rect_b[:, 0]), np.maximum(rect_a[:, 1], rect_b[:, 1]),
                      np.minimum(rect_a[:, 2], rect_b[:, 2]), np.maximum(rect_a[:, 3], rect_b[:, 3])], axis=1)
    return usable, rects, np.stack([depth.min(axis=1) - 0.1, depth.max(axis=1) + 0.1], axis=1)


def render_frame(scene: Scene, size, time_s: float = 0.0, sparse: bool = False, K: np.ndarray | None = None,
                 table: PartTable | None = None) -> dict:
    """Render scene at time_s seconds (camera and traffic moved by their velocities); see module doc."""
    H, W = size
    K = kitti_like_intrinsics(H, W) if K is None else K
    table = PartTable(scene.parts) if table is None else table
    start = scene.start_pose
    pose = CameraPose(start.x, start.height, start.z + scene.ego_speed * time_s, start.yaw, start.pitch)
    centers = part_centers(table, time_s)
    dirs = ray_directions(K, H, W, pose)
    dx, dy, dz = dirs[0], dirs[1], dirs[2]
    o = pose.origin

    with np.errstate(divide="ignore"):
        zbuf = np.where(dy < -1e-6, -o[1] / dy, np.inf).astype(np.float32)
    zbuf[zbuf > MAX_GROUND_DEPTH] = np.inf
    ids = np.full((H, W), -1, dtype=np.int32)
    rects = screen_rects(primitive_corners(centers, table.half, table.yaw), K, pose, H, W)
    visible = np.nonzero((rects[:, 1] > rects[:, 0]) & (rects[:, 3] > rects[:, 2]))[0]
    inv = inverse_directions(dx, dy, dz)
    for n in visible:
        r0, r1, c0, c1 = rects[n]
        t = intersect(table.kind[n], centers[n], table.half[n], table.yaw[n], o[0], o[1], o[2],
                      dx[r0:r1, c0:c1], dy[r0:r1, c0:c1], dz[r0:r1, c0:c1],
                      tuple(i[r0:r1, c0:c1] for i in inv))
        closer = t < zbuf[r0:r1, c0:c1]
        np.copyto(zbuf[r0:r1, c0:c1], t, where=closer)
        np.copyto(ids[r0:r1, c0:c1], n, where=closer)

    hit = np.isfinite(zbuf)
    flat_hit = np.flatnonzero(hit)
    t = zbuf.ravel()[flat_hit]
    d = dirs.reshape(3, -1)[:, flat_hit].T  # [P, 3]
    world = o.astype(np.float32)[None] + t[:, None] * d
    pid = ids.ravel()[flat_hit]
    on_part = pid >= 0
    P = len(flat_hit)
    rgb = np.zeros((P, 3), dtype=np.float32)
    normal = np.zeros((P, 3), dtype=np.float32)
    semantic = np.full(P, TERRAIN, dtype=np.uint8)
    instance = np.zeros(P, dtype=np.uint16)

    g = ~on_part
    rgb[g], on_road = ground_colors(scene, world[g, 0], world[g, 2], t[g])
    normal[g] = (0.0, 1.0, 0.0)
    semantic[g] = np.where(on_road, ROAD, TERRAIN)
    k = pid[on_part]
    rel = world[on_part] - centers.astype(np.float32)[k]  # [P_parts, 3]
    lx, lz = rotate_yaw(rel[:, 0], rel[:, 2], -table.yaw.astype(np.float32)[k])
    local = np.stack([lx, rel[:, 1], lz], axis=-1)
    half = table.half.astype(np.float32)[k]
    n_local = box_normals(local, half, table.kind[k])
    rgb[on_part] = part_colors(table.material[k], table.color[k], local, half, n_local, world[on_part], t[on_part],
                               table.facade[:, k].T)
    normal[on_part] = to_world_normals(n_local, table.yaw.astype(np.float32)[k])
    semantic[on_part] = table.semantic[k]
    instance[on_part] = table.instance[k]

    # lighting: sky ambient (less on vertical faces) + sun, blocked by cast shadows
    lambert = np.clip(normal @ scene.sun, 0.0, 1.0)
    ambient, diffuse = (0.8, 0.25) if scene.overcast else (0.45, 0.75)
    if not scene.overcast:
        usable, srects, depth_range = _cast_shadows(scene, table, centers, K, pose, size)
        shadow = np.zeros((H, W), dtype=bool)
        lit = np.zeros((H, W), dtype=bool)
        lit.ravel()[flat_hit] = lambert > 0
        start_pts = np.zeros((3, H, W), dtype=np.float32)
        start_pts.reshape(3, -1)[:, flat_hit] = (world + 0.03 * normal).T
        sun_inverse = tuple(np.float32(1.0 / (v if abs(v) > 1e-9 else 1e-9)) for v in scene.sun)
        for n in np.nonzero(usable & (srects[:, 1] > srects[:, 0]) & (srects[:, 3] > srects[:, 2]))[0]:
            r0, r1, c0, c1 = srects[n]
            z = zbuf[r0:r1, c0:c1]
            # only lit points of other parts inside the shadow volume's depth range can be shadowed
            sel = lit[r0:r1, c0:c1] & (ids[r0:r1, c0:c1] != n) & (z >= depth_range[n, 0]) & (z <= depth_range[n, 1])
            count = int(np.count_nonzero(sel))
            if count == 0:
                continue
            pts = start_pts[:, r0:r1, c0:c1]
            if count < 0.3 * sel.size:  # few candidates: gather them instead of testing the whole rectangle
                pts = pts[:, sel]
            t_sun = intersect(table.kind[n], centers[n], table.half[n], table.yaw[n], pts[0], pts[1], pts[2],
                              scene.sun[0], scene.sun[1], scene.sun[2], sun_inverse)
            if count < 0.3 * sel.size:
                sel[sel] = np.isfinite(t_sun)
                shadow[r0:r1, c0:c1] |= sel
            else:
                shadow[r0:r1, c0:c1] |= sel & np.isfinite(t_sun)
        lambert = lambert * ~shadow.ravel()[flat_hit]
    light = ambient * (0.8 + 0.2 * normal[:, 1]) + diffuse * lambert
    haze = np.exp(t * np.float32(-1.0 / scene.haze_distance))
    rgb *= (light * haze * np.float32(scene.exposure))[:, None] * np.array([1.0, 0.98, 0.93], dtype=np.float32)
    rgb += scene.sky_horizon.astype(np.float32)[None] * (1 - haze)[:, None]

    image = np.empty((H * W, 3), dtype=np.float32)
    image[flat_hit] = rgb
    sky = np.flatnonzero(~hit)
    image[sky] = sky_colors(scene, dirs.reshape(3, -1)[:, sky].T) * min(scene.exposure, 1.05)
    offset = int(np.random.default_rng(scene.seed * 7919 + int(round(time_s * 10))).integers(image.size))
    image = image.reshape(-1)
    image += sensor_noise(image.size)[offset: offset + image.size]
    image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(H, W, 3)

    depth = np.where(hit, zbuf, 0.0).astype(np.float32)
    sem_map = np.full(H * W, SKY, dtype=np.uint8)
    sem_map[flat_hit] = semantic
    inst_map = np.zeros(H * W, dtype=np.uint16)
    inst_map[flat_hit] = instance
    inst_map = inst_map.reshape(H, W)
    present = [int(i) for i in np.unique(inst_map) if i != 0]
    sparse_depth = depth * lidar_mask(K, H, W, scene.seed * 31 + int(round(time_s * 10))) if sparse else depth
    return {
        "image": image, "depth": sparse_depth, "dense_depth": depth, "instances": inst_map,
        "semantic": sem_map.reshape(H, W), "instance_classes": {i: scene.classes[i] for i in present},
        "K": K, "stamp_ns": int(round(time_s * 1e9)),
        "camera": {"x": pose.x, "height": pose.height, "z": pose.z, "yaw": pose.yaw, "pitch": pose.pitch},
    }


def render_scene(seed: int, size=(192, 640), sparse: bool = False) -> dict:
    """Frame 0 of scene `seed` at size (H, W); see the module docstring for the keys."""
    return render_frame(build_scene(seed), tuple(size), 0.0, sparse)


def render_sequence(num_frames: int, size=(192, 640), seed: int = 0, sparse: bool = False) -> list[dict]:
    """num_frames frames at 10 Hz of the ego camera driving through scene `seed` (traffic moves too)."""
    if num_frames < 1:
        raise ValueError(f"render_sequence: num_frames must be >= 1, got {num_frames}")
    probe = build_scene(seed)
    scene = build_scene(seed, z_far=140.0 + probe.ego_speed * num_frames * FRAME_PERIOD_NS * 1e-9)
    table = PartTable(scene.parts)
    return [render_frame(scene, tuple(size), i * FRAME_PERIOD_NS * 1e-9, sparse, table=table)
            for i in range(num_frames)]
