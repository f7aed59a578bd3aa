"""Synthetic road scenes with exact metric depth and instance masks (see docs/data.md).

render_scene(seed, size, sparse) -> frame dict; render_sequence(n, size, seed) -> list of frames at 10 Hz;
SyntheticRoadScenes -> torch Dataset; write_bag / write_split -> rosbag2 and Cityscapes-DVPS files.
CLI: python -m training.data.synthetic --out DIR --frames N --size HxW --seed S
"""
from .bag import write_bag
from .dataset import SyntheticRoadScenes, frame_to_sample, scene_seed
from .geometry import KITTI_CAMERA_HEIGHT, kitti_like_intrinsics
from .layout import build_scene
from .render import FRAME_PERIOD_NS, render_frame, render_scene, render_sequence
from .writer import write_split

__all__ = ["FRAME_PERIOD_NS", "KITTI_CAMERA_HEIGHT", "SyntheticRoadScenes", "build_scene", "frame_to_sample",
           "kitti_like_intrinsics", "render_frame", "render_scene", "render_sequence", "scene_seed", "write_bag",
           "write_split"]
