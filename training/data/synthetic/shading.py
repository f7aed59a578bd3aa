"""Colours for the rendered hits: procedural textures, sun + sky lighting, cast shadows, sky and haze.

All functions work on flat arrays of the hit pixels (length P) to keep the work proportional to
what is visible. Colours are linear-ish RGB in [0, 1].
"""
from __future__ import annotations

import numpy as np

from .geometry import KIND_BOX, rotate_yaw
from .objects import (M_BODY, M_BUS, M_CABIN, M_CARGO, M_FACADE, M_FOLIAGE, M_BARK, M_PAVING, M_METAL)

GLASS = np.array([0.07, 0.09, 0.12], dtype=np.float32)
PAINT = np.array([0.86, 0.86, 0.83], dtype=np.float32)


def hash01(ix, iy, seed: int = 0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point (integer arrays)."""
    h = (np.asarray(ix).astype(np.uint32) * np.uint32(374761393) + np.asarray(iy).astype(np.uint32)
         * np.uint32(668265263) + np.uint32((seed * 2246822519) & 0xFFFFFFFF))
    h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    h ^= h >> np.uint32(16)
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def value_noise(x, y, seed: int = 0) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1) with unit lattice spacing."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int32), y0.astype(np.int32)
    a, b = hash01(ix, iy, seed), hash01(ix + 1, iy, seed)
    c, d = hash01(ix, iy + 1, seed), hash01(ix + 1, iy + 1, seed)
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy


def _fade(depth, near, far):
    """1 up close, 0 far away: high-frequency texture would alias into speckle at a distance."""
    return np.clip((far - depth) / (far - near), 0.0, 1.0)


def ground_colors(scene, X, Z, depth) -> tuple[np.ndarray, np.ndarray]:
    """Asphalt with lane markings on the carriageway, terrain beyond it; returns (rgb [P, 3], is_road [P])."""
    road = scene.road
    on_road = (X > road.left_edge) & (X < road.right_edge)
    rgb = np.empty((len(X), 3), dtype=np.float32)
    x, z, d = X[on_road], Z[on_road], depth[on_road]
    coarse = value_noise(x * 0.4, z * 0.4, 1)
    fine = hash01(np.floor(x * 12.0).astype(np.int32), np.floor(z * 12.0).astype(np.int32), 2) * _fade(d, 8, 40)
    base = 0.30 + 0.08 * coarse + 0.10 * (fine - 0.5)
    # darker wheel tracks in the middle of each driving lane
    lane_pos = np.mod(x, road.lane_width) / road.lane_width
    base = base - 0.03 * (np.abs(np.abs(lane_pos - 0.5) - 0.27) < 0.08)
    asphalt = np.stack([base, base, base * 1.04], axis=-1)
    half = 0.07
    dashed = np.mod(z + scene.seed % 9, 9.0) < 3.0  # 3 m dash, 6 m gap (German urban roads)
    paint = np.zeros(len(x), dtype=bool)
    lines = [(0.0, scene.road.centre_solid)]
    lines += [(k * road.lane_width, False) for k in range(1, road.lanes_right)]
    lines += [(-k * road.lane_width, False) for k in range(1, road.lanes_left)]
    lines += [(road.lanes_right * road.lane_width - (0.3 if road.parking_right == 0 else 0.0), True),
              (-road.lanes_left * road.lane_width + (0.3 if road.parking_left == 0 else 0.0), True)]
    for x_line, solid in lines:
        paint |= (np.abs(x - x_line) < half) & (dashed | solid)
    wear = 0.75 + 0.25 * value_noise(x[paint] * 3, z[paint] * 3, 3)
    asphalt[paint] = PAINT[None] * wear[:, None]
    rgb[on_road] = asphalt
    off = ~on_road
    x, z, d = X[off], Z[off], depth[off]
    grain = hash01(np.floor(x * 8).astype(np.int32), np.floor(z * 8).astype(np.int32), 5)
    rgb[off] = scene.terrain_color[None] * (0.7 + 0.6 * value_noise(x * 0.8, z * 0.8, 4)
                                            + 0.3 * (grain - 0.5) * _fade(d, 5, 30))[:, None]
    return rgb, on_road


def facade_parameters(count: int) -> np.ndarray:
    """Per part [3, N] float32: floor height (m), window spacing (m), shop-front flag, hashed from the index."""
    ids = np.arange(count)
    return np.stack([3.0 + 0.4 * hash01(ids, 7), 2.4 + 0.8 * hash01(ids, 8), hash01(ids, 9) > 0.5]).astype(np.float32)


def part_colors(material, color, local, half, normal_local, world, depth, facade) -> np.ndarray:
    """Textured base colour [P, 3] of hits on parts, from each hit's local coordinates [P, 3];
    facade [P, 3] holds facade_parameters of each hit's part."""
    rgb = color.copy()
    qx, qy, qz = local[:, 0], local[:, 1], local[:, 2]
    hx, hy, hz = half[:, 0], half[:, 1], half[:, 2]
    vertical = np.abs(normal_local[:, 1]) < 0.5
    along = np.where(np.abs(normal_local[:, 0]) > 0.5, qz, qx)  # horizontal coordinate on a vertical face
    along_half = np.where(np.abs(normal_local[:, 0]) > 0.5, hz, hx)
    height = world[:, 1]

    m = material == M_FACADE
    if m.any():
        a, y = along[m] + 1000.0, height[m]
        floor_h, spacing, shop_front = facade[m, 0], facade[m, 1], facade[m, 2] > 0
        fy, fa = np.mod(y, floor_h), np.mod(a, spacing)
        window = (fy > 0.9) & (fy < 2.3) & (fa > 0.5) & (fa < spacing - 0.6) & (y > floor_h)
        shop = shop_front & (y < 2.6) & (y > 0.3) & (fa > 0.3) & (fa < spacing - 0.2)
        window = (window | shop) & vertical[m] & (np.abs(along[m]) < along_half[m] - 0.4)
        glass = GLASS[None] + 0.18 * hash01(np.floor(a / spacing), np.floor(y / floor_h), 11)[:, None]
        cell = hash01(np.floor(a * 1.5).astype(np.int32), np.floor(y * 4.0).astype(np.int32), 12)  # brick-ish
        tone = (0.93 + 0.07 * cell * _fade(depth[m], 10, 60))[:, None]
        roof = ~vertical[m]
        facade = np.where(window[:, None], glass, rgb[m] * tone)
        rgb[m] = np.where(roof[:, None], np.float32(0.35), facade)
    m = material == M_BODY
    if m.any():
        ends = np.abs(normal_local[m, 2]) > 0.5
        lamp = ends & (np.abs(qx[m]) > hx[m] - 0.4) & (qy[m] > hy[m] - 0.22)
        lamp_rgb = np.where((normal_local[m, 2] > 0)[:, None], np.array([0.95, 0.95, 0.85], np.float32),
                            np.array([0.7, 0.05, 0.04], np.float32))
        bumper = qy[m] < -hy[m] + 0.12
        shade = np.where(bumper, 0.5, 1.0)[:, None] * rgb[m]
        rgb[m] = np.where(lamp[:, None], lamp_rgb, shade)
    m = material == M_CABIN
    if m.any():
        # windows at most ~1 m tall: a car's whole cabin side, the upper part of a truck cab
        pane = (vertical[m] & (qy[m] > np.maximum(-hy[m] + 0.06, hy[m] - 1.0)) & (qy[m] < hy[m] - 0.08)
                & (np.abs(along[m]) < along_half[m] - 0.12))
        reflect = 0.12 * np.clip(qy[m] / np.maximum(hy[m], 1e-3) + 0.5, 0, 1)[:, None]
        rgb[m] = np.where(pane[:, None], GLASS[None] + reflect, rgb[m])
    m = material == M_BUS
    if m.any():
        band = vertical[m] & (height[m] > 1.2) & (height[m] < 2.6) & (np.mod(along[m] + 50, 1.6) > 0.15)
        rgb[m] = np.where(band[:, None], GLASS[None] + 0.08, rgb[m])
    m = material == M_CARGO
    if m.any():
        rgb[m] = rgb[m] * (0.92 + 0.08 * (np.mod(along[m] * 3.0, 1.0) > 0.5))[:, None]
    m = (material == M_FOLIAGE) | (material == M_BARK)
    if m.any():
        w = world[m]
        u = w[:, 0] + w[:, 2]
        leaf = hash01(np.floor(u * 6.0).astype(np.int32), np.floor(w[:, 1] * 6.0).astype(np.int32), 13)
        leaf = leaf * _fade(depth[m], 5, 60) * np.clip((depth[m] - 2.0) / 6.0, 0, 1)  # no blocky cells up close
        blotch = value_noise(u * 0.9, w[:, 1] * 0.9, 14)
        rgb[m] = rgb[m] * (0.55 + 0.5 * leaf + 0.35 * blotch)[:, None]
    m = material == M_PAVING
    if m.any():
        w = world[m]
        top = ~vertical[m]
        tile = (np.mod(w[:, 0], 0.5) < 0.04) | (np.mod(w[:, 2], 0.5) < 0.04)
        tile &= _fade(depth[m], 5, 25) > 0.5
        tone = 0.9 + 0.2 * hash01(np.floor(w[:, 0] * 2).astype(np.int32), np.floor(w[:, 2] * 2).astype(np.int32), 15)
        top_rgb = rgb[m] * (tone * np.where(tile, 0.8, 1.0))[:, None]
        rgb[m] = np.where(top[:, None], top_rgb, np.float32(0.72))
    m = material == M_METAL
    if m.any():
        rgb[m] = rgb[m] * (0.85 + 0.3 * np.clip(normal_local[m, 0], 0, 1))[:, None]
    return rgb


def box_normals(local, half, kind):
    """Local-frame normals [P, 3] of hits on boxes (the face the point lies on) or ellipsoids."""
    ratio = np.abs(local) / np.maximum(half, 1e-6)
    axis = np.argmax(ratio, axis=1)
    normal = np.zeros_like(local)
    normal[np.arange(len(local)), axis] = np.sign(local[np.arange(len(local)), axis])
    ell = kind != KIND_BOX
    if ell.any():
        g = local[ell] / np.maximum(half[ell], 1e-6) ** 2
        normal[ell] = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
    return normal


def to_world_normals(normal_local, yaw):
    nx, nz = rotate_yaw(normal_local[:, 0], normal_local[:, 2], yaw)
    return np.stack([nx, normal_local[:, 1], nz], axis=-1)


def sky_colors(scene, dirs) -> np.ndarray:
    """Sky gradient with clouds for world ray directions [P, 3]."""
    up = dirs[:, 1] / np.linalg.norm(dirs, axis=1)
    blend = np.clip(up * 3.0, 0.0, 1.0)[:, None] ** 0.7
    rgb = scene.sky_horizon[None] * (1 - blend) + scene.sky_top[None] * blend
    lift = np.maximum(dirs[:, 1], 0.03)
    cx, cz = dirs[:, 0] / lift * 1.5, dirs[:, 2] / lift * 1.5
    clouds = value_noise(cx, cz, 21)
    amount = np.clip((clouds - (0.45 if scene.overcast else 0.6)) * 3.0, 0, 1)
    amount = (amount * np.clip((up - 0.03) * 10.0, 0, 1))[:, None]  # clouds thin out towards the horizon
    return (rgb * (1 - amount) + np.float32(0.93) * amount).astype(np.float32)
