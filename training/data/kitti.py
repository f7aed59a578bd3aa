"""KITTI Eigen split loader (BTS / NeWCRFs / iDisc conventions) with pseudo instance masks.

Inputs:
    data_root      KITTI raw root: DATE/DATE_drive_XXXX_sync/image_02/data/NNNNNNNNNN.png and
                   DATE/calib_cam_to_cam.txt
    gt_root        annotated depth root: DATE_drive_XXXX_sync/proj_depth/groundtruth/image_02/NNNNNNNNNN.png
                   (uint16, metres * 256, 0 = invalid)
    split_file     one "image gt focal" line per frame, paths relative to data_root / gt_root; gt may be
                   "None" (no ground truth: depth all 0, valid all False, has_depth False)
    instance_root  pseudo instance masks (python -m training.data.pseudo_instances) as single-channel uint16
                   PNGs of instance ids (0 = none) at the image's relative path (extension .png), each with
                   an optional JSON beside it (extension .json, {"classes": {"<id>": "<THING_CLASSES name>"}});
                   ids without a class are unknown (instance_classes -1). None = no instances at all
                   (has_instances False: training then runs without the ICM terms, method II).
Intrinsics come from P_rect_02 (P_rect_03 for image_03) in DATE/calib_cam_to_cam.txt when it exists;
otherwise K uses the split file's focal with the principal point at the image centre.
KB crop (352 x 1216) is applied first when kb_crop=True, then augmentation.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .base import DepthDataset, require_dir
from .io import read_depth, read_label, read_rgb
from .items import THING_CLASSES
from .transforms import kb_crop

MASK_CLASSES_SUFFIX = ".json"  # beside each mask PNG: {"classes": {"<instance id>": "<THING_CLASSES name>"}}


@lru_cache(maxsize=64)
def read_rectified_projection(calib_path: str, camera: str) -> np.ndarray | None:
    """K [3, 3] from the 'P_rect_<camera>' row of a KITTI calib_cam_to_cam.txt, or None if absent."""
    for line in Path(calib_path).read_text().splitlines():
        key, _, values = line.partition(":")
        if key.strip() == f"P_rect_{camera}":
            numbers = [float(v) for v in values.split()]
            if len(numbers) != 12:
                raise ValueError(f"{calib_path}: P_rect_{camera} has {len(numbers)} values, expected 12")
            return np.array(numbers).reshape(3, 4)[:, :3]
    return None


def parse_split_file(path) -> list[tuple[str, str | None, float, int]]:
    """[(image, gt or None, focal, line number)] from a BTS-style split file; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"KITTI split file {path}: file not found")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        tokens = line.split()
        if len(tokens) != 3:
            raise ValueError(f"{path}:{number}: expected 'image gt focal', got {line!r}")
        try:
            focal = float(tokens[2])
        except ValueError:
            raise ValueError(f"{path}:{number}: focal {tokens[2]!r} is not a number") from None
        entries.append((tokens[0], None if tokens[1] == "None" else tokens[1], focal, number))
    if not entries:
        raise ValueError(f"{path}: no entries")
    return entries


class KittiEigen(DepthDataset):
    """Frames listed in a BTS split file; items as in training/data/items.py."""

    def __init__(self, data_root, gt_root, split_file, instance_root=None, augment: bool = False,
                 kb_crop: bool = True, crop_size=None, scale_range=(1.0, 1.0), min_depth: float = 1e-3,
                 max_depth: float = 80.0, skip_missing_depth: bool = False):
        super().__init__(augment, crop_size, scale_range, min_depth, max_depth)
        self.data_root = require_dir(data_root, "KITTI data_root")
        self.gt_root = require_dir(gt_root, "KITTI gt_root")
        self.instance_root = require_dir(instance_root, "KITTI instance_root") if instance_root is not None else None
        self.split_file = Path(split_file)
        self.kb_crop = kb_crop
        self.entries = parse_split_file(split_file)
        if skip_missing_depth:
            self.entries = [e for e in self.entries if e[1] is not None]
        for image, gt, _, number in self.entries:
            paths = [self.data_root / image] + ([self.gt_root / gt] if gt is not None else [])
            for p in paths:
                if not p.is_file():
                    raise FileNotFoundError(f"{p}: file not found (listed at {self.split_file}:{number})")
            if self.instance_root is not None and not self.instance_mask_path(image).is_file():
                raise FileNotFoundError(
                    f"{self.instance_mask_path(image)}: pseudo instance mask not found (image listed at "
                    f"{self.split_file}:{number}); make them with python -m training.data.pseudo_instances, "
                    "or train without instances (no instance_root)")

    @property
    def has_instances(self) -> bool:
        """False without an instance_root: every item has no instances (the ICM loss has nothing to match)."""
        return self.instance_root is not None

    def instance_mask_path(self, image: str) -> Path:
        return (self.instance_root / image).with_suffix(".png")

    def instance_classes(self, image: str) -> dict:
        """{instance id: THING_CLASSES index} from the mask's JSON; {} (all unknown) when there is none."""
        path = self.instance_mask_path(image).with_suffix(MASK_CLASSES_SUFFIX)
        if not path.is_file():
            return {}
        try:
            names = json.loads(path.read_text())["classes"]
            return {int(key): THING_CLASSES.index(name) for key, name in names.items()}
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: expected {{\"classes\": {{\"<id>\": one of {', '.join(THING_CLASSES)}}}}}: "
                             f"{error}") from None

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self, index: int) -> str:
        return f"{self.data_root / self.entries[index][0]} ({self.split_file}:{self.entries[index][3]})"

    def intrinsics(self, image: str, focal: float, size) -> np.ndarray:
        parts = Path(image).parts
        calib = self.data_root / parts[0] / "calib_cam_to_cam.txt"
        camera = "03" if "image_03" in parts else "02"
        K = read_rectified_projection(str(calib), camera) if calib.is_file() else None
        if K is None:
            K = np.array([[focal, 0.0, (size[1] - 1) / 2], [0.0, focal, (size[0] - 1) / 2], [0.0, 0.0, 1.0]])
        return K

    def load(self, index: int) -> dict:
        image_rel, gt_rel, focal, number = self.entries[index]
        image = read_rgb(self.data_root / image_rel)
        size = image.shape[:2]
        depth = read_depth(self.gt_root / gt_rel) if gt_rel is not None else np.zeros(size, np.float32)
        classes = {}
        if self.instance_root is not None:
            instances = read_label(self.instance_mask_path(image_rel), (np.uint16,), "instance-id")
            classes = self.instance_classes(image_rel)
        else:
            instances = np.zeros(size, np.int64)
        for name, array in (("depth", depth), ("instance mask", instances)):
            if array.shape != size:
                raise ValueError(f"{self.describe(index)}: {name} is {array.shape}, image is {size}")
        sample = {"image": image, "depth": depth, "instances": instances, "classes": classes,
                  "K": self.intrinsics(image_rel, focal, size), "has_depth": gt_rel is not None}
        return kb_crop(sample) if self.kb_crop else sample
