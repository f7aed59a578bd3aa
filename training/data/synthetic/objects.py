"""Parts lists for the scene's objects: vehicles, pedestrians, cyclists, poles, trees, buildings.

Every builder appends `Part`s to a list. A part is one primitive (box or ellipsoid) with a material,
a base colour, a Cityscapes trainId (`semantic`) and a thing instance id (0 for stuff). All parts of
one object share the object's world velocity (and, for scripted drives, one acceleration phase) so
sequences can move it rigidly.
Object-local frame: x lateral, y up from the ground, z along the object's heading.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import KIND_BOX, KIND_ELLIPSOID, rotate_yaw

# Cityscapes trainIds (cityscapesscripts' labels.py; docs/data.md); things are 11-18.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)

# Materials select the texture function in shading.py.
(M_FACADE, M_BODY, M_CABIN, M_TYRE, M_METAL, M_SIGN, M_FOLIAGE, M_BARK, M_SKIN, M_CLOTH, M_PAVING,
 M_BUS, M_CARGO, M_ROOF) = range(14)


@dataclass
class Part:
    kind: int
    center: tuple
    half: tuple
    yaw: float
    material: int
    color: tuple
    semantic: int
    instance: int = 0
    velocity: tuple = (0.0, 0.0, 0.0)
    shadow: bool = True  # casts a sun shadow
    acceleration: tuple = (0.0, 0.0, 0.0)  # m/s^2, applied from accelerate_from_s for accelerate_for_s seconds
    accelerate_from_s: float = 0.0
    accelerate_for_s: float = 0.0  # 0: the part moves at its velocity throughout


@dataclass
class Placer:
    """Places an object's parts: local offsets are rotated by the object's yaw about its ground point."""

    parts: list
    x: float
    z: float
    yaw: float
    velocity: tuple = (0.0, 0.0, 0.0)
    instance: int = 0
    semantic: int = 0
    base_y: float = 0.0  # height of the surface the object stands on (e.g. the sidewalk's top)

    def add(self, kind, offset, half, material, color, semantic=None, instance=None, shadow=True):
        ox, oz = rotate_yaw(offset[0], offset[2], self.yaw)
        self.parts.append(Part(
            kind, (self.x + ox, self.base_y + offset[1], self.z + oz), tuple(half), self.yaw, material, tuple(color),
            self.semantic if semantic is None else semantic, self.instance if instance is None else instance,
            self.velocity, shadow))


CAR_COLORS = [(0.75, 0.75, 0.77), (0.12, 0.12, 0.13), (0.45, 0.46, 0.5), (0.6, 0.08, 0.07), (0.1, 0.2, 0.45),
              (0.85, 0.85, 0.82), (0.25, 0.3, 0.28), (0.55, 0.5, 0.42), (0.9, 0.75, 0.2), (0.3, 0.12, 0.1)]
CLOTH_COLORS = [(0.1, 0.1, 0.12), (0.15, 0.2, 0.4), (0.5, 0.1, 0.1), (0.8, 0.8, 0.78), (0.3, 0.35, 0.2),
                (0.6, 0.45, 0.3), (0.85, 0.55, 0.15), (0.35, 0.35, 0.38)]
SKIN_COLORS = [(0.85, 0.67, 0.55), (0.62, 0.45, 0.33), (0.4, 0.28, 0.2), (0.9, 0.75, 0.65)]


def add_vehicle(p: Placer, rng: np.random.Generator, kind: str) -> dict:
    """Car, van, truck or bus; returns its size {"length","width","height"} in metres."""
    color = CAR_COLORS[rng.integers(len(CAR_COLORS))]
    if kind == "car":
        L, W, H = rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.6)
        body_top, cabin_len, cabin_shift = 0.62 * H, 0.52 * L, -0.06 * L
    elif kind == "van":
        L, W, H = rng.uniform(4.8, 5.6), rng.uniform(1.9, 2.05), rng.uniform(1.9, 2.4)
        body_top, cabin_len, cabin_shift = 0.5 * H, 0.8 * L, -0.08 * L
    elif kind == "truck":
        L, W, H = rng.uniform(6.5, 10.0), rng.uniform(2.4, 2.55), rng.uniform(3.0, 3.8)
    else:  # bus
        L, W, H = rng.uniform(11.0, 13.0), 2.55, rng.uniform(3.0, 3.3)
    wheel_r = 0.33 if kind in ("car", "van") else 0.5
    axle = L / 2 - max(0.8, 0.15 * L)
    for z in (-axle, axle):
        p.add(KIND_BOX, (0, wheel_r, z), (W / 2 - 0.03, wheel_r, wheel_r), M_TYRE, (0.04, 0.04, 0.04))
    if kind in ("car", "van"):
        clearance = 0.25
        p.add(KIND_BOX, (0, (clearance + body_top) / 2, 0), (W / 2, (body_top - clearance) / 2, L / 2), M_BODY, color)
        p.add(KIND_BOX, (0, (body_top + H) / 2, cabin_shift), (0.45 * W, (H - body_top) / 2, cabin_len / 2),
              M_CABIN, color)
    elif kind == "truck":
        cab_len, cab_h = 2.2, 2.9
        p.add(KIND_BOX, (0, (0.45 + cab_h) / 2, L / 2 - cab_len / 2), (W / 2, (cab_h - 0.45) / 2, cab_len / 2),
              M_CABIN, color)
        cargo = (0.92, 0.92, 0.9) if rng.random() < 0.6 else CAR_COLORS[rng.integers(len(CAR_COLORS))]
        p.add(KIND_BOX, (0, (0.9 + H) / 2, -cab_len / 2 - 0.1), (W / 2, (H - 0.9) / 2, (L - cab_len - 0.2) / 2),
              M_CARGO, cargo)
    else:
        p.add(KIND_BOX, (0, (0.35 + H) / 2, 0), (W / 2, (H - 0.35) / 2, L / 2), M_BUS, color)
    return {"length": L, "width": W, "height": H}


def add_pedestrian(p: Placer, rng: np.random.Generator, height: float | None = None) -> float:
    """A standing or walking person (legs, torso, head); returns the height in metres."""
    H = height if height is not None else rng.uniform(1.55, 1.95)
    legs, torso = 0.47 * H, 0.33 * H
    trousers = CLOTH_COLORS[rng.integers(3)]
    top = CLOTH_COLORS[rng.integers(len(CLOTH_COLORS))]
    p.add(KIND_BOX, (0, legs / 2, 0), (0.16, legs / 2, 0.11), M_CLOTH, trousers)
    p.add(KIND_BOX, (0, legs + torso / 2, 0), (0.22, torso / 2, 0.13), M_CLOTH, top)
    head = H - legs - torso
    p.add(KIND_ELLIPSOID, (0, legs + torso + head / 2, 0), (0.095, head / 2, 0.11), M_SKIN,
          SKIN_COLORS[rng.integers(len(SKIN_COLORS))])
    return H


def add_cyclist(p: Placer, rng: np.random.Generator, bicycle_instance: int) -> None:
    """A bicycle (its own instance, trainId 18) with a rider (trainId 12) on top."""
    frame = CAR_COLORS[rng.integers(len(CAR_COLORS))]
    for z in (-0.52, 0.52):
        p.add(KIND_ELLIPSOID, (0, 0.34, z), (0.025, 0.34, 0.34), M_TYRE, (0.05, 0.05, 0.05),
              semantic=BICYCLE, instance=bicycle_instance)
    p.add(KIND_BOX, (0, 0.62, 0.0), (0.03, 0.2, 0.5), M_METAL, frame, semantic=BICYCLE, instance=bicycle_instance)
    H = rng.uniform(1.65, 1.9)
    p.add(KIND_BOX, (0, 0.82, -0.1), (0.15, 0.27, 0.12), M_CLOTH, CLOTH_COLORS[rng.integers(3)])
    p.add(KIND_BOX, (0, 1.33, 0.05), (0.21, 0.25, 0.15), M_CLOTH, CLOTH_COLORS[rng.integers(len(CLOTH_COLORS))])
    p.add(KIND_ELLIPSOID, (0, 1.58 + (H - 1.75) * 0.5 + 0.1, 0.12), (0.1, 0.12, 0.11), M_SKIN,
          SKIN_COLORS[rng.integers(len(SKIN_COLORS))])


def add_pole(parts: list, rng: np.random.Generator, x: float, z: float, facing: float, base_y: float = 0.0) -> None:
    """A street pole, sometimes carrying a traffic sign plate that faces oncoming traffic."""
    height = rng.uniform(4.0, 8.0)
    p = Placer(parts, x, z, 0.0, semantic=POLE, base_y=base_y)
    p.add(KIND_BOX, (0, height / 2, 0), (0.07, height / 2, 0.07), M_METAL, (0.5, 0.5, 0.52))
    if rng.random() < 0.4:
        sign = [(0.1, 0.25, 0.7), (0.8, 0.1, 0.1), (0.9, 0.9, 0.9), (0.95, 0.8, 0.1)][rng.integers(4)]
        p.add(KIND_BOX, (facing * 0.1, rng.uniform(2.0, 2.8), -0.09), (0.32, 0.32, 0.02), M_SIGN, sign, semantic=SIGN)


def add_tree(parts: list, rng: np.random.Generator, x: float, z: float, scale: float = 1.0,
             base_y: float = 0.0) -> None:
    """Trunk (box) and canopy (ellipsoid); scale 1 is a street tree about 6-9 m tall."""
    trunk = rng.uniform(1.8, 3.0) * scale
    radius = rng.uniform(1.5, 2.8) * scale
    p = Placer(parts, x, z, rng.uniform(0, np.pi), semantic=VEGETATION, base_y=base_y)
    p.add(KIND_BOX, (0, trunk / 2 + 0.3, 0), (0.14 * scale, trunk / 2 + 0.3, 0.14 * scale), M_BARK,
          (0.3, 0.22, 0.15))
    green = (rng.uniform(0.12, 0.25), rng.uniform(0.3, 0.45), rng.uniform(0.08, 0.16))
    p.add(KIND_ELLIPSOID, (0, trunk + 0.8 * radius, 0), (radius, radius * rng.uniform(0.9, 1.3), radius),
          M_FOLIAGE, green)


FACADE_COLORS = [(0.82, 0.78, 0.7), (0.9, 0.88, 0.84), (0.62, 0.6, 0.58), (0.62, 0.33, 0.25), (0.75, 0.65, 0.5),
                 (0.7, 0.72, 0.66), (0.55, 0.5, 0.46), (0.86, 0.8, 0.6)]


def add_building(parts: list, rng: np.random.Generator, x_face: float, side: int, z0: float, z1: float,
                 height: float) -> None:
    """A block whose street facade lies on the plane X = x_face, spanning Z in [z0, z1]."""
    depth = rng.uniform(10.0, 16.0)
    color = FACADE_COLORS[rng.integers(len(FACADE_COLORS))]
    x = x_face + side * depth / 2
    parts.append(Part(KIND_BOX, (x, height / 2, (z0 + z1) / 2), (depth / 2, height / 2, (z1 - z0) / 2), 0.0,
                      M_FACADE, color, BUILDING))
    if rng.random() < 0.5:  # a roof slab overhang gives the skyline some shape
        parts.append(Part(KIND_BOX, (x - side * 0.3, height + 0.3, (z0 + z1) / 2),
                          (depth / 2, 0.3, (z1 - z0) / 2 + 0.2), 0.0, M_ROOF, (0.35, 0.3, 0.3), BUILDING))
