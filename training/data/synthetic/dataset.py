"""SyntheticRoadScenes: an in-memory dataset that renders scene `seed * 100003 + index` on the fly."""
from __future__ import annotations

from ..base import DepthDataset
from ..items import CITYSCAPES_FIRST_THING
from .render import render_scene

SEED_STRIDE = 100003  # a prime, so datasets with different seeds do not share scenes for < 100003 items


def scene_seed(seed: int, index: int) -> int:
    return seed * SEED_STRIDE + index


def frame_to_sample(frame: dict) -> dict:
    """A rendered frame (render.py) as a loader sample (transforms.py): classes become THING_CLASSES indices."""
    return {
        "image": frame["image"], "depth": frame["depth"], "instances": frame["instances"].astype(int),
        "classes": {k: v - CITYSCAPES_FIRST_THING for k, v in frame["instance_classes"].items()},
        "K": frame["K"],
    }


class SyntheticRoadScenes(DepthDataset):
    """`length` rendered road scenes of size (H, W); items as in training/data/items.py.

    Deterministic: item i is always scene seed * 100003 + i (augmentation aside). sparse=True keeps only
    LiDAR-like samples of the depth. Depth beyond max_depth (far road near the horizon) is invalid.
    """

    def __init__(self, length: int, size=(192, 640), seed: int = 0, sparse: bool = False, augment: bool = False,
                 crop_size=None, scale_range=(1.0, 1.0), min_depth: float = 1e-3, max_depth: float = 80.0):
        super().__init__(augment, crop_size, scale_range, min_depth, max_depth)
        if length < 1:
            raise ValueError(f"SyntheticRoadScenes: length must be >= 1, got {length}")
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"SyntheticRoadScenes: size must be (H, W) with both >= 8, got {size}")
        self.length, self.size, self.seed, self.sparse = int(length), tuple(int(s) for s in size), int(seed), sparse

    def __len__(self) -> int:
        return self.length

    def describe(self, index: int) -> str:
        return f"SyntheticRoadScenes scene {scene_seed(self.seed, index)}"

    def load(self, index: int) -> dict:
        return frame_to_sample(render_scene(scene_seed(self.seed, index), self.size, self.sparse))
