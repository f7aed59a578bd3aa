"""Synthetic road scenes with exact metric depth and instance masks (see docs/data.md).

render_scene(seed, size, sparse) -> frame dict; render_sequence(n, size, seed) -> list of frames at 10 Hz;
SyntheticRoadScenes -> torch Dataset; write_bag / write_split -> rosbag2 and Cityscapes-DVPS files.
CLI: python -m training.data.synthetic --out DIR --frames N --size HxW --seed S

The renderer and write_bag need only NumPy (and rosbags): the node-side tests use them where PyTorch is not
installed. The dataset (dataset.py) and the file writer (writer.py, through the Cityscapes-DVPS loader) need
PyTorch and are imported on first use.
"""
import importlib

from .bag import write_bag
from .geometry import KITTI_CAMERA_HEIGHT, kitti_like_intrinsics
from .layout import build_scene
from .render import FRAME_PERIOD_NS, render_frame, render_scene, render_sequence

_LAZY_NAMES = {"SyntheticRoadScenes": ".dataset", "frame_to_sample": ".dataset", "scene_seed": ".dataset",
               "write_split": ".writer"}


def __getattr__(name: str):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["FRAME_PERIOD_NS", "KITTI_CAMERA_HEIGHT", "SyntheticRoadScenes", "build_scene", "frame_to_sample",
           "kitti_like_intrinsics", "render_frame", "render_scene", "render_sequence", "scene_seed", "write_bag",
           "write_split"]
