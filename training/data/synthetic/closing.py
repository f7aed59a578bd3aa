"""Closing-object drives: scripted traffic on a synthetic street, with each object's true range over time.

`render_closing_drive(name, size, seed)` renders one scenario of SCENARIOS at 10 Hz. The street (road,
buildings, trees, poles, sidewalk pedestrians) comes from `build_scene(seed)`; its traffic and parked
cars are taken out and the scenario's actors put in, so that nothing but the script moves in the ego
lane. Every frame dict (render.py's keys) gains

    truth   numpy structured array, icm_depth_ros.replay.track_truth.TRUTH_DTYPE, one row per thing
            instance visible in the frame: id (the label value, stable over the drive), class, range
            (metres along the optical axis to the object's nearest point: the near surface that time to
            contact is about), range_rate (m/s, negative = closing), ttc (s, +inf = not closing), the
            visible box (u0, v0, u1, v1) and pixel count, and actor (1 = a scripted closing object).

The truth comes from the geometry (the nearest corner of the object's parts, the ego camera's pose),
not from the rendered depth, so that a chain run on the rendered depth is scored against something
it did not produce. Range rate is the exact derivative of that range (a central difference over
1 ms of the same analytic motion).

    python -m training.data.synthetic.closing --out BAG [--size 192x640] [--seed 0] [--scenarios ...]

writes every scenario (or those named) into one rosbag2, one after another: each starts SCENARIO_GAP_S
after the previous one ended (a tracker ends its tracks over such a gap) and its instance ids are
offset by ID_OFFSET x its position, so that ids stay unique over the bag. replay_eval scores it with
--instances-topic /camera/instances --truth-topic /camera/instances_truth.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from icm_depth_ros.replay.track_truth import TRUTH_DTYPE

from .geometry import CameraPose, kitti_like_intrinsics, primitive_corners
from .layout import Scene, build_scene
from .objects import CAR, PERSON, Placer, add_pedestrian, add_vehicle
from .render import FRAME_PERIOD_NS, PartTable, part_centers, render_frame


@dataclass(frozen=True)
class Actor:
    """One scripted object. lane: 0 = the ego lane, +1 = the lane to its right, -1 = the first oncoming
    lane; side_offset_m moves it sideways from the lane centre (a pedestrian on the kerb). Motion: the
    velocity, then ``acceleration`` from ``accelerate_from_s`` for ``accelerate_for_s`` seconds."""

    kind: str  # "car" or "person"
    lane: int
    z_m: float  # metres ahead of the ego camera's start
    velocity: tuple[float, float, float]
    acceleration: tuple[float, float, float] = (0.0, 0.0, 0.0)
    accelerate_from_s: float = 0.0
    accelerate_for_s: float = 0.0
    side_offset_m: float = 0.0
    facing_ego: bool = False  # oncoming: the object's front faces the camera


@dataclass(frozen=True)
class Scenario:
    ego_speed: float  # m/s along +Z
    frames: int  # at 10 Hz
    actors: tuple[Actor, ...]


SCENARIOS = {
    # the lead car drives at the ego's speed, then brakes at 4 m/s^2 to a standstill; the ego does not brake
    "lead_braking": Scenario(12.0, 45, (Actor("car", 0, 35.0, (0.0, 0.0, 12.0), (0.0, 0.0, -4.0), 1.0, 3.0),)),
    # a car in the first oncoming lane: 20 m/s closing speed
    "oncoming": Scenario(10.0, 35, (Actor("car", -1, 80.0, (0.0, 0.0, -10.0), facing_ego=True),)),
    # a pedestrian steps off the right kerb and walks across the ego lane at 1.4 m/s
    "pedestrian_crossing": Scenario(8.0, 30, (Actor("person", 1, 30.0, (-1.4, 0.0, 0.0), side_offset_m=1.2),)),
    # a slower car in the right lane moves over into the ego lane
    "cut_in": Scenario(12.0, 40, (Actor("car", 1, 20.0, (0.0, 0.0, 9.0), (-1.2, 0.0, 0.0), 0.5, 1.0),)),
    # the ego stands at a light: a car and a pedestrian stand ahead (range rate 0)
    "standing": Scenario(0.0, 20, (Actor("car", 0, 15.0, (0.0, 0.0, 0.0)), Actor("person", 1, 9.0, (0.0, 0.0, 0.0)))),
}
RANGE_RATE_STEP_S = 1e-3
SCENARIO_GAP_S = 5.0  # between scenarios in one bag
ID_OFFSET = 1000  # instance ids of scenario k in one bag: id + k * ID_OFFSET (labels are mono16: up to 65535)


def build_closing_scene(name: str, seed: int = 0) -> tuple[Scene, set[int]]:
    """(scene with the scenario's actors, their instance ids). ValueError names an unknown scenario."""
    if name not in SCENARIOS:
        raise ValueError(f"closing-object scenario {name!r} is not one of {', '.join(SCENARIOS)}")
    scenario = SCENARIOS[name]
    street = build_scene(seed, z_far=140.0 + scenario.ego_speed * scenario.frames * FRAME_PERIOD_NS * 1e-9)
    road = street.road
    on_road = {part.instance for part in street.parts if part.instance and road.left_edge < part.center[0] < road.right_edge}
    parts = [part for part in street.parts if part.instance not in on_road]  # traffic and parked cars out
    start = street.start_pose
    ego_lane_x = (np.floor(start.x / road.lane_width) + 0.5) * road.lane_width
    pose = CameraPose(x=ego_lane_x, height=start.height, z=0.0, yaw=0.0, pitch=start.pitch)
    classes = {key: value for key, value in street.classes.items() if key not in on_road}
    rng = np.random.default_rng([seed, 99])
    actors = set()
    for actor in scenario.actors:
        instance = max(street.classes) + 1 + len(actors)
        semantic = CAR if actor.kind == "car" else PERSON
        x = (-0.5 * road.lane_width if actor.lane < 0 else ego_lane_x + actor.lane * road.lane_width) + actor.side_offset_m
        yaw = np.pi if actor.facing_ego else 0.0
        first = len(parts)
        placer = Placer(parts, x, actor.z_m, yaw, actor.velocity, instance, semantic)
        if actor.kind == "car":
            add_vehicle(placer, rng, "car")
        else:
            add_pedestrian(placer, rng)
        parts[first:] = [replace(part, acceleration=actor.acceleration, accelerate_from_s=actor.accelerate_from_s,
                                 accelerate_for_s=actor.accelerate_for_s) for part in parts[first:]]
        classes[instance] = semantic
        actors.add(instance)
    scene = replace(street, parts=parts, classes=classes, start_pose=pose, ego_speed=scenario.ego_speed,
                    kind=f"closing:{name}")
    return scene, actors


def true_ranges(scene: Scene, table: PartTable, time_s: float, instances: np.ndarray) -> np.ndarray:
    """Range [n] (metres along the optical axis to the nearest corner of the object's parts) at ``time_s``."""
    start = scene.start_pose
    pose = CameraPose(start.x, start.height, start.z + scene.ego_speed * time_s, start.yaw, start.pitch)
    _, _, forward = pose.axes()
    corners = primitive_corners(part_centers(table, time_s), table.half, table.yaw)  # [N, 8, 3]
    depth = ((corners - pose.origin) @ forward).min(axis=1)  # [N] nearest corner of each part
    return np.array([depth[table.instance == instance].min() for instance in instances])


def frame_truth(scene: Scene, table: PartTable, time_s: float, labels: np.ndarray, actors: set[int]) -> np.ndarray:
    """TRUTH_DTYPE [n] of the instances visible in ``labels`` at ``time_s``."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    truth = np.zeros(ids.size, dtype=TRUTH_DTYPE)
    if not ids.size:
        return truth
    ranges = true_ranges(scene, table, time_s, ids)
    rates = (true_ranges(scene, table, time_s + RANGE_RATE_STEP_S, ids)
             - true_ranges(scene, table, time_s - RANGE_RATE_STEP_S, ids)) / (2 * RANGE_RATE_STEP_S)
    truth["id"], truth["range"], truth["range_rate"] = ids, ranges, rates
    truth["class"] = [scene.classes.get(int(i), -1) for i in ids]
    with np.errstate(divide="ignore"):
        truth["ttc"] = np.where(rates < 0, ranges / -np.minimum(rates, -1e-12), np.inf)
    truth["actor"] = [int(i) in actors for i in ids]
    for row, instance in zip(truth, ids):
        rows, columns = np.nonzero(labels == instance)
        row["u0"], row["v0"], row["u1"], row["v1"] = columns.min(), rows.min(), columns.max() + 1, rows.max() + 1
        row["pixel_count"] = rows.size
    return truth


def render_closing_drive(name: str, size=(192, 640), seed: int = 0) -> list[dict]:
    """The frames of scenario ``name`` (10 Hz) with their ``truth``; see the module docstring."""
    scene, actors = build_closing_scene(name, seed)
    table = PartTable(scene.parts)
    K = kitti_like_intrinsics(*size)
    frames = []
    for index in range(SCENARIOS[name].frames):
        time_s = index * FRAME_PERIOD_NS * 1e-9
        frame = render_frame(scene, tuple(size), time_s, K=K, table=table)
        frame["truth"] = frame_truth(scene, table, time_s, frame["instances"], actors)
        frames.append(frame)
    return frames


def render_closing_drives(names, size=(192, 640), seed: int = 0) -> list[dict]:
    """The scenarios ``names`` one after another as one drive (see the module docstring)."""
    frames, start_ns = [], 0
    for position, name in enumerate(names):
        drive = render_closing_drive(name, size, seed)
        offset = position * ID_OFFSET
        for frame in drive:
            frame["stamp_ns"] += start_ns
            frame["instances"] = np.where(frame["instances"] > 0, frame["instances"] + offset, 0).astype(np.uint16)
            frame["truth"]["id"] += offset
            frame["instance_classes"] = {key + offset: value for key, value in frame["instance_classes"].items()}
        frames += drive
        start_ns = frames[-1]["stamp_ns"] + int(SCENARIO_GAP_S * 1e9)
    return frames


def main(argv=None) -> int:
    from .__main__ import parse_size
    from .bag import write_bag

    parser = argparse.ArgumentParser(prog="python -m training.data.synthetic.closing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="rosbag2 folder to create")
    parser.add_argument("--size", type=parse_size, default=(192, 640), help="H x W, default 192x640")
    parser.add_argument("--seed", type=int, default=0, help="the street of every scenario")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"--out {args.out} already exists; rosbag2 writers need a new folder")
    if args.seed < 0:
        parser.error(f"--seed {args.seed}: must be >= 0 (scene seeds are non-negative)")
    frames = render_closing_drives(args.scenarios, args.size, args.seed)
    write_bag(args.out, frames)
    print(f"wrote {len(frames)} frames of {', '.join(args.scenarios)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
