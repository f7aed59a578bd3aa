"""Datasets: KITTI Eigen, Cityscapes-DVPS, SemKITTI-DVPS and synthetic road scenes (docs/data.md).

Every dataset returns the item dict documented in training/data/items.py.

The datasets (and items.py's names) are imported on first use: they need PyTorch, and the synthetic
renderer in training.data.synthetic, which the node-side tests use, must import without it.
"""
from __future__ import annotations

import importlib
from pathlib import Path

_LAZY_NAMES = {"CityscapesDVPS": ".cityscapes_dvps", "KittiEigen": ".kitti", "SemKittiDVPS": ".semkitti_dvps",
               "SyntheticRoadScenes": ".synthetic", "MAX_INSTANCES": ".items", "THING_CLASSES": ".items"}

DATASET_NAMES = ("kitti_eigen", "cityscapes_dvps", "semkitti_dvps", "synthetic")
SYNTHETIC_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
SYNTHETIC_DEFAULT_LENGTH = {"train": 2000, "val": 200, "test": 200}


def build_dataset(name: str, root, split: str, augment: bool, size=None, **overrides):
    """Build a dataset by name. `size` (H, W) is the crop size (random when augmenting, centred otherwise)
    for on-disk datasets and the render size for in-memory synthetic scenes. `overrides` go to the class.

    kitti_eigen expects ROOT/raw (KITTI raw), ROOT/depth_annotated, ROOT/splits/eigen_{train,test}_files_with_gt.txt
    ("val" reads the test list) and, optionally, ROOT/instances (pseudo masks from
    `python -m training.data.pseudo_instances`); without that folder the dataset has no instances
    (``has_instances`` False) and training turns the ICM terms off.
    synthetic with root=None renders in memory (seed 0/1/2 for train/val/test); with a root it reads the
    Cityscapes-DVPS layout written by `python -m training.data.synthetic`.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    from .cityscapes_dvps import CityscapesDVPS
    from .kitti import KittiEigen
    from .semkitti_dvps import SemKittiDVPS
    from .synthetic import SyntheticRoadScenes

    size = tuple(size) if size is not None else None
    if name == "synthetic" and root is None:
        if split not in SYNTHETIC_SPLIT_SEEDS:
            raise ValueError(f"synthetic split must be one of {sorted(SYNTHETIC_SPLIT_SEEDS)}, got {split!r}")
        kwargs = {"length": SYNTHETIC_DEFAULT_LENGTH[split], "seed": SYNTHETIC_SPLIT_SEEDS[split],
                  "size": size or (192, 640), **overrides}
        return SyntheticRoadScenes(augment=augment, **kwargs)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root directory")
    if name in ("cityscapes_dvps", "synthetic"):
        defaults = {"max_depth": 80.0} if name == "synthetic" else {}
        return CityscapesDVPS(root, split, augment=augment, crop_size=size, **{**defaults, **overrides})
    if name == "semkitti_dvps":
        return SemKittiDVPS(root, split, augment=augment, crop_size=size, **overrides)
    root = Path(root)
    listed = "test" if split in ("val", "test") else "train"
    masks = root / "instances"
    kwargs = {"data_root": root / "raw", "gt_root": root / "depth_annotated",
              "instance_root": masks if masks.is_dir() else None,
              "split_file": root / "splits" / f"eigen_{listed}_files_with_gt.txt", **overrides}
    return KittiEigen(augment=augment, crop_size=size, **kwargs)


def __getattr__(name: str):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["DATASET_NAMES", "MAX_INSTANCES", "SYNTHETIC_SPLIT_SEEDS", "THING_CLASSES", "CityscapesDVPS",
           "KittiEigen", "SemKittiDVPS", "SyntheticRoadScenes", "build_dataset"]
