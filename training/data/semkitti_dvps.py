"""SemKITTI-DVPS (ViP-DeepLab) loader.

Layout (ViP-DeepLab's DVPS preparation; docs/data.md): ROOT/video_sequence/{train,val}/ holding, per frame,
    SSSSSS_FFFFFF_leftImg8bit.png       8-bit RGB
    SSSSSS_FFFFFF_gtFine_class.png      class ids 0-18, 255 = void (uint8 or uint16)
    SSSSSS_FFFFFF_gtFine_instance.png   instance ids within a class, 0 = none (uint8 or uint16)
    SSSSSS_FFFFFF_depth_<focal>.png     uint16 projected LiDAR depth, metres * 256, 0 = no return
Thing classes are 0-7 (car, bicycle, motorcycle, truck, other-vehicle, person, bicyclist, motorcyclist);
an instance is a (class, instance id > 0) pair. The file name gives only the focal length, so the
principal point is taken at the image centre ((W - 1) / 2, (H - 1) / 2).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DVPSFrames, check_same_size
from .io import read_depth, read_label, read_rgb
from .items import THING_CLASSES

SUFFIX_IMAGE = DVPSFrames.IMAGE_SUFFIX
SUFFIX_CLASS = "_gtFine_class.png"
SUFFIX_INSTANCE = "_gtFine_instance.png"
DEPTH_GLOB = "_depth_*.png"
VOID = 255
# SemKITTI thing class -> THING_CLASSES index; other-vehicle (trailers, buses, trams...) counts as truck,
# bicyclists and motorcyclists as riders.
THING_MAP = {0: "car", 1: "bicycle", 2: "motorcycle", 3: "truck", 4: "truck", 5: "person", 6: "rider", 7: "rider"}
THING_INDEX = {k: THING_CLASSES.index(v) for k, v in THING_MAP.items()}
INSTANCE_STRIDE = 1 << 16  # key = class * 65536 + instance id


def focal_from_name(path: Path) -> float:
    """The focal length (pixels) in a name like 000008_000123_depth_718.856.png."""
    token = path.name[: -len(".png")].rsplit("_depth_", 1)[-1]
    try:
        focal = float(token)
    except ValueError:
        raise ValueError(f"{path}: expected the focal length after '_depth_' in the name, got {token!r}") from None
    if focal <= 0:
        raise ValueError(f"{path}: focal length {focal} in the name is not positive")
    return focal


class SemKittiDVPS(DVPSFrames):
    """Frames of ROOT/video_sequence/SPLIT/, sorted by name; items as in training/data/items.py."""

    def __init__(self, root, split: str = "train", augment: bool = False, crop_size=None,
                 scale_range=(1.0, 1.0), min_depth: float = 1e-3, max_depth: float = 80.0):
        super().__init__(root, split, "SemKITTI-DVPS", (SUFFIX_CLASS, SUFFIX_INSTANCE), augment, crop_size,
                         scale_range, min_depth, max_depth)
        self.depth_paths = []
        for prefix in self.prefixes:
            matches = sorted(self.folder.glob(Path(prefix).name + DEPTH_GLOB))
            if len(matches) != 1:
                raise FileNotFoundError(f"{prefix}{DEPTH_GLOB}: expected exactly one depth file, found {len(matches)}")
            self.depth_paths.append(matches[0])

    def load(self, index: int) -> dict:
        prefix = self.prefixes[index]
        image = read_rgb(prefix + SUFFIX_IMAGE)
        depth = read_depth(self.depth_paths[index])
        semantic = read_label(prefix + SUFFIX_CLASS, what="class")
        instance = read_label(prefix + SUFFIX_INSTANCE, what="instance")
        check_same_size(prefix, image, depth=depth, **{"class": semantic, "instance": instance})
        is_thing = (semantic <= max(THING_MAP)) & (instance > 0)
        keys = np.where(is_thing, semantic * INSTANCE_STRIDE + instance, 0)
        classes = {int(k): THING_INDEX[int(k) // INSTANCE_STRIDE] for k in np.unique(keys) if k}
        H, W = image.shape[:2]
        focal = focal_from_name(self.depth_paths[index])
        K = np.array([[focal, 0.0, (W - 1) / 2], [0.0, focal, (H - 1) / 2], [0.0, 0.0, 1.0]])
        return {"image": image, "depth": depth, "instances": keys, "classes": classes, "K": K}
