"""Random road-scene layouts: a straight street along +Z with lanes, sidewalks, roadside and traffic.

`build_scene(seed, z_far)` draws everything from one seed, so a scene (and every frame rendered
from it) is a pure function of that seed. Sizes are real-world metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import KITTI_CAMERA_HEIGHT, KIND_BOX, CameraPose
from .objects import (BICYCLE, BUS, CAR, M_FOLIAGE, M_PAVING, PERSON, RIDER, SIDEWALK, TRUCK, VEGETATION, Part,
                      Placer, add_building, add_cyclist, add_pedestrian, add_pole, add_tree, add_vehicle)

VEHICLE_CLASS = {"car": CAR, "van": CAR, "truck": TRUCK, "bus": BUS}  # Cityscapes counts vans as cars


@dataclass
class Road:
    """Cross-section of the street, X positions in metres (X = 0 divides the two directions)."""

    lane_width: float
    lanes_right: int  # lanes driving towards +Z (ego direction), right-hand traffic
    lanes_left: int  # oncoming lanes
    parking_right: float  # width of a parking strip beside the outer lane, 0 if none
    parking_left: float
    sidewalk_width: float
    curb_height: float
    centre_solid: bool

    @property
    def right_edge(self) -> float:
        return self.lanes_right * self.lane_width + self.parking_right

    @property
    def left_edge(self) -> float:
        return -(self.lanes_left * self.lane_width + self.parking_left)


@dataclass
class Scene:
    """Everything needed to render any frame: parts, road, lighting, camera start and ego speed.

    `classes` maps each thing instance id (1..) to its Cityscapes trainId.
    """

    seed: int
    kind: str
    road: Road
    parts: list
    classes: dict
    sun: np.ndarray  # [3] unit vector towards the sun (world)
    overcast: bool
    sky_top: np.ndarray
    sky_horizon: np.ndarray
    exposure: float
    haze_distance: float
    terrain_color: np.ndarray
    start_pose: CameraPose
    ego_speed: float  # m/s along +Z


def build_scene(seed: int, z_far: float = 140.0) -> Scene:
    """Draw a scene covering Z in [-15, z_far] metres ahead of the camera's start."""
    def stream(*key: int) -> np.random.Generator:
        # one random stream per loop: a longer street (larger z_far) only appends objects to each loop,
        # so a sequence's scene starts like the single-frame scene of the same seed
        return np.random.default_rng([seed, *key])

    rng = stream(0)
    kind = rng.choice(["city", "residential", "rural"], p=[0.4, 0.4, 0.2])
    road = Road(
        lane_width=rng.uniform(3.0, 3.6), lanes_right=int(rng.integers(1, 3)), lanes_left=int(rng.integers(1, 3)),
        parking_right=2.2 if (kind != "rural" and rng.random() < 0.6) else 0.0,
        parking_left=2.2 if (kind != "rural" and rng.random() < 0.4) else 0.0,
        sidewalk_width=rng.uniform(1.8, 4.0) if kind != "rural" else rng.uniform(0.8, 1.5),
        curb_height=rng.uniform(0.1, 0.16), centre_solid=bool(rng.random() < 0.5))
    parts: list[Part] = []
    classes: dict[int, int] = {}
    ego_lane = int(rng.integers(road.lanes_right))
    pose = CameraPose(x=(ego_lane + 0.5) * road.lane_width + rng.normal(0, 0.25), height=KITTI_CAMERA_HEIGHT
                      + rng.normal(0, 0.03), z=0.0, yaw=np.deg2rad(rng.normal(0, 2.0)),
                      pitch=np.deg2rad(rng.normal(0, 0.8)))
    ego_speed = rng.uniform(6.0, 14.0)

    for side, edge in ((1, road.right_edge), (-1, road.left_edge)):
        w = road.sidewalk_width
        k = 1 if side > 0 else 2
        parts.append(Part(KIND_BOX, (edge + side * w / 2, road.curb_height / 2, (z_far - 40) / 2 + 60),
                          (w / 2, road.curb_height / 2, (z_far + 40) / 2 + 60), 0.0, M_PAVING,
                          (0.62, 0.6, 0.58), SIDEWALK, shadow=False))
        _roadside(parts, stream(k, 1), kind, side, edge + side * w, z_far)
        poles = stream(k, 2)
        z = poles.uniform(-10, 10)
        while z < z_far:  # poles at the curb
            add_pole(parts, poles, edge + side * 0.45, z, -side, road.curb_height)
            z += poles.uniform(18, 45)
        trees = stream(k, 3)
        if kind != "rural" or trees.random() < 0.3:  # street trees, in runs
            z = trees.uniform(-10, 15)
            while z < z_far:
                if trees.random() < 0.75:
                    add_tree(parts, trees, edge + side * min(1.2, w * 0.6), z, base_y=road.curb_height)
                z += trees.uniform(8, 20)

    def new_instance(semantic: int) -> int:
        classes[len(classes) + 1] = semantic
        return len(classes)

    def vehicle(rng, x, z, yaw, speed, kind_name):
        inst = new_instance(VEHICLE_CLASS[kind_name])
        velocity = (np.sin(yaw) * speed, 0.0, np.cos(yaw) * speed)
        return add_vehicle(Placer(parts, x, z, yaw, velocity, inst, VEHICLE_CLASS[kind_name]), rng, kind_name)

    def vehicle_kind(rng, parked):
        return rng.choice(["car", "van", "truck", "bus"], p=[0.85, 0.1, 0.05, 0.0] if parked else [0.72, 0.12, 0.1, 0.06])

    for side, strip in ((1, road.parking_right), (-1, road.parking_left)):  # parked rows, bumper to bumper
        if strip == 0.0:
            continue
        rng = stream(3 if side > 0 else 4)
        x = (road.right_edge if side > 0 else road.left_edge) - side * strip / 2
        z = rng.uniform(-5, 6)
        while z < z_far - 50:
            if rng.random() < 0.75:
                size = vehicle(rng, x + rng.normal(0, 0.1), z + 2.5, np.deg2rad(rng.normal(0, 2)) + (0 if side > 0 or
                               rng.random() < 0.5 else np.pi), 0.0, vehicle_kind(rng, True))
                z += size["length"] + rng.uniform(0.6, 3.0)
            else:
                gap = rng.uniform(5, 12)
                if kind != "rural" and rng.random() < 0.3:  # someone about to cross between parked cars
                    inst = new_instance(PERSON)
                    add_pedestrian(Placer(parts, x, z + gap / 2, -side * np.pi / 2, (0.0, 0.0, 0.0), inst, PERSON), rng)
                z += gap
    for lane in range(-road.lanes_left, road.lanes_right):  # moving traffic; one speed per lane, so no collisions
        forward = lane >= 0
        rng = stream(5, lane + 10)
        x = (lane + 0.5) * road.lane_width
        outer = lane == road.lanes_right - 1
        cyclists = outer and rng.random() < 0.35
        speed = (ego_speed + rng.normal(0, 1.5) if forward else rng.uniform(8, 14))
        speed = float(np.clip(speed, 3.0, 6.5) if cyclists else max(speed, 0.0))
        z = rng.uniform(7, 25) if lane == ego_lane else rng.uniform(-6, 20)
        while z < z_far - 45:
            yaw = np.deg2rad(rng.normal(0, 1.0)) + (0.0 if forward else np.pi)
            if cyclists and rng.random() < 0.4:  # a cyclist keeps to the right of the lane
                rider, bike = new_instance(RIDER), new_instance(BICYCLE)
                add_cyclist(Placer(parts, x + road.lane_width / 2 - 0.8, z, rng.normal(0, 0.05), (0.0, 0.0, speed),
                                   rider, RIDER), rng, bike)
                z += rng.uniform(5, 25)
                continue
            size = vehicle(rng, x + rng.normal(0, 0.2), z, yaw, speed, vehicle_kind(rng, False))
            z += size["length"] + rng.uniform(6, 40)

    rng = stream(6)
    for _ in range(int(rng.integers(0, 9 if kind != "rural" else 3))):  # pedestrians on sidewalks
        side = 1 if rng.random() < 0.6 else -1
        edge = road.right_edge if side > 0 else road.left_edge
        x = edge + side * rng.uniform(0.4, max(0.5, road.sidewalk_width - 0.3))
        heading = 0.0 if rng.random() < 0.5 else np.pi
        walk = rng.uniform(0.0, 1.5)
        inst = new_instance(PERSON)
        add_pedestrian(Placer(parts, x, rng.uniform(3, 70), heading + rng.normal(0, 0.3),
                              (0.0, 0.0, np.cos(heading) * walk), inst, PERSON, road.curb_height), rng)

    rng = stream(7)
    sun_elevation = np.deg2rad(rng.uniform(25, 65))
    sun_azimuth = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(sun_elevation) * np.sin(sun_azimuth), np.sin(sun_elevation),
                    np.cos(sun_elevation) * np.cos(sun_azimuth)])
    overcast = bool(rng.random() < 0.25)
    sky_top = np.array([0.55, 0.6, 0.65]) if overcast else np.array([0.25, 0.45, 0.8]) * rng.uniform(0.9, 1.1)
    sky_horizon = np.array([0.78, 0.8, 0.82]) if overcast else np.array([0.75, 0.83, 0.92])
    terrain = np.array([0.3, 0.4, 0.15]) if rng.random() < 0.7 else np.array([0.45, 0.4, 0.3])
    return Scene(seed, str(kind), road, parts, classes, sun, overcast, sky_top, sky_horizon,
                 rng.uniform(0.85, 1.15), rng.uniform(250, 600), terrain, pose, ego_speed)


def _roadside(parts, rng, kind, side, x_face, z_far):
    """Buildings, hedges and trees lining one side of the street beyond the sidewalk."""
    z = rng.uniform(-40, -15)
    p_building = {"city": 0.92, "residential": 0.6, "rural": 0.08}[kind]
    while z < z_far + 40:
        if rng.random() < p_building:
            length = rng.uniform(8, 28) if kind == "city" else rng.uniform(8, 14)
            height = rng.uniform(9, 24) if kind == "city" else rng.uniform(5, 9)
            setback = rng.uniform(0, 0.6) if kind == "city" else rng.uniform(1.5, 6)
            add_building(parts, rng, x_face + side * setback, side, z, z + length, height)
            if kind == "residential" and rng.random() < 0.6:  # front-garden hedge
                parts.append(Part(KIND_BOX, (x_face + side * 0.5, 0.5, z + length / 2), (0.4, 0.5, length / 2), 0.0,
                                  M_FOLIAGE, (0.15, 0.33, 0.1), VEGETATION))
            z += length + (rng.uniform(0, 1) if kind == "city" else rng.uniform(2, 8))
        else:
            gap = rng.uniform(6, 20)
            for _ in range(int(rng.integers(0, 4))):
                add_tree(parts, rng, x_face + side * rng.uniform(1, 12), z + rng.uniform(0, gap),
                         rng.uniform(0.8, 1.6))
            z += gap
