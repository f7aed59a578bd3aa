"""What the three on-disk loaders share: root checks, augmentation set-up and item assembly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .items import make_item
from .transforms import Augmenter, center_crop


def require_dir(path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path}: directory not found")
    return path


def check_same_size(source: str, image: np.ndarray, **maps: np.ndarray) -> None:
    """Every label/depth map must cover the image pixel for pixel; the error names the file prefix."""
    for name, array in maps.items():
        if array.shape != image.shape[:2]:
            raise ValueError(f"{source}: {name} map is {array.shape}, image is {image.shape[:2]}")


class DepthDataset(Dataset):
    """Base of the loaders: subclasses implement `__len__` and `load(index) -> sample` (see transforms.py).

    augment=True: random scale in scale_range, random crop to crop_size, flip, colour jitter. Randomness
    comes from torch's generator, so torch.manual_seed (and per-worker seeding) makes it reproducible.
    augment=False: a centre crop to crop_size if given, nothing else.
    """

    def __init__(self, augment: bool, crop_size, scale_range, min_depth: float, max_depth: float):
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"depth range must satisfy 0 <= min_depth < max_depth, got [{min_depth}, {max_depth}]")
        self.augment = augment
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.augmenter = Augmenter(self.crop_size, tuple(scale_range))

    def load(self, index: int) -> dict:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        return f"{type(self).__name__}[{index}]"

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range [0, {len(self)})")
        sample = self.load(index)
        if self.augment:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
            sample = self.augmenter(sample, np.random.default_rng(seed))
        elif self.crop_size is not None:
            sample = center_crop(sample, self.crop_size)
        return make_item(sample, self.min_depth, self.max_depth, self.describe(index))


class DVPSFrames(DepthDataset):
    """The ViP-DeepLab (DVPS) layouts: frames PREFIX + suffix in ROOT/video_sequence/SPLIT/, sorted by name.

    Each frame is found by its image (PREFIX + IMAGE_SUFFIX); every suffix in ``partner_suffixes`` must
    exist beside it. Subclasses implement ``load``.
    """

    IMAGE_SUFFIX = "_leftImg8bit.png"

    def __init__(self, root, split: str, dataset_name: str, partner_suffixes: tuple[str, ...], augment: bool,
                 crop_size, scale_range, min_depth: float, max_depth: float):
        super().__init__(augment, crop_size, scale_range, min_depth, max_depth)
        self.folder = require_dir(Path(root) / "video_sequence" / split, f"{dataset_name} {split} split")
        suffix = self.IMAGE_SUFFIX
        self.prefixes = sorted(str(p)[: -len(suffix)] for p in self.folder.glob("*" + suffix))
        if not self.prefixes:
            raise FileNotFoundError(f"{self.folder}: no *{suffix} files")
        for prefix in self.prefixes:
            for partner in partner_suffixes:
                if not Path(prefix + partner).is_file():
                    raise FileNotFoundError(f"{prefix + partner}: file not found (partner of {prefix + suffix})")

    def __len__(self) -> int:
        return len(self.prefixes)

    def describe(self, index: int) -> str:
        return self.prefixes[index] + self.IMAGE_SUFFIX
