"""Geometric and photometric augmentation on decoded samples, keeping every map aligned.

A sample is a dict of numpy arrays: image uint8 [H, W, 3], depth float32 [H, W] (metres, 0 invalid),
instances int [H, W], K float64 [3, 3]; other keys pass through. Labels and depth are resampled with
nearest-neighbour (pixel-centre aligned, cv2.INTER_NEAREST_EXACT) so depth is never blended across
an object edge; only the image is interpolated. K follows every crop, scale and flip. Pixel centres
are at integer coordinates, as in OpenCV and ROS.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KB_CROP = (352, 1216)  # KITTI benchmark ("KB") crop of BTS / AdaBins (docs/data.md)


def _with(sample: dict, **maps) -> dict:
    out = dict(sample)
    out.update(maps)
    return out


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    """Crop all maps to rows [top, top+height), cols [left, left+width); out-of-image area is padded
    with zeros (black image, invalid depth, no instance)."""
    H, W = sample["depth"].shape
    pad_b, pad_r = max(0, top + height - H), max(0, left + width - W)
    pad_t, pad_l = max(0, -top), max(0, -left)
    maps = {}
    for key in ("image", "depth", "instances"):
        a = sample[key]
        if pad_t or pad_b or pad_l or pad_r:
            pads = ((pad_t, pad_b), (pad_l, pad_r)) + (((0, 0),) if a.ndim == 3 else ())
            a = np.pad(a, pads)
        maps[key] = a[top + pad_t: top + pad_t + height, left + pad_l: left + pad_l + width]
    K = np.array(sample["K"], dtype=np.float64)
    K[0, 2] -= left
    K[1, 2] -= top
    return _with(sample, K=K, **maps)


def kb_crop(sample: dict) -> dict:
    """KITTI benchmark crop 352 x 1216: top = H - 352, left = (W - 1216) // 2."""
    H, W = sample["depth"].shape
    return crop(sample, H - KB_CROP[0], (W - KB_CROP[1]) // 2, *KB_CROP)


def center_crop(sample: dict, size) -> dict:
    H, W = sample["depth"].shape
    return crop(sample, (H - size[0]) // 2, (W - size[1]) // 2, *size)


def hflip(sample: dict) -> dict:
    """Mirror left-right; the principal point moves to W - 1 - cx."""
    W = sample["depth"].shape[1]
    K = np.array(sample["K"], dtype=np.float64)
    K[0, 2] = W - 1 - K[0, 2]
    maps = {k: np.ascontiguousarray(sample[k][:, ::-1]) for k in ("image", "depth", "instances")}
    return _with(sample, K=K, **maps)


def rescale(sample: dict, factor: float) -> dict:
    """Resize by `factor` (image bilinear, depth and instances nearest). Depth values are kept: the
    focal length scales with the image, so metric depth stays consistent with K."""
    H, W = sample["depth"].shape
    h, w = max(1, int(round(H * factor))), max(1, int(round(W * factor)))
    sx, sy = w / W, h / H
    image = cv2.resize(sample["image"], (w, h), interpolation=cv2.INTER_LINEAR)
    depth = cv2.resize(sample["depth"], (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    instances = cv2.resize(sample["instances"].astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    K = np.array(sample["K"], dtype=np.float64)
    # a pixel centre u maps to (u + 0.5) * s - 0.5 under pixel-area alignment
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return _with(sample, image=image, depth=depth, instances=instances.astype(sample["instances"].dtype), K=K)


def color_jitter(image: np.ndarray, rng: np.random.Generator, brightness=0.2, contrast=0.2, saturation=0.2,
                 gamma=(0.9, 1.1)) -> np.ndarray:
    """Random brightness, contrast, saturation and gamma on uint8 [H, W, 3]; returns uint8."""
    x = image.astype(np.float32) / 255.0
    x = x * rng.uniform(1 - brightness, 1 + brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey[..., None]) * rng.uniform(1 - saturation, 1 + saturation) + grey[..., None]
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(*gamma)
    return (x * 255.0 + 0.5).astype(np.uint8)


@dataclass
class Augmenter:
    """Training-time augmentation: random scale, random crop to crop_size, flip, colour jitter.

    scale_range: (lo, hi) resize factors; (1, 1) disables scaling (KITTI's usual recipe).
    crop_size: (h, w) random crop, or None to keep the size.
    """

    crop_size: tuple | None = None
    scale_range: tuple = (1.0, 1.0)
    flip_probability: float = 0.5
    jitter: bool = True

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        lo, hi = self.scale_range
        if hi > lo or lo != 1.0:
            sample = rescale(sample, rng.uniform(lo, hi))
        if self.crop_size is not None:
            H, W = sample["depth"].shape
            h, w = self.crop_size
            top = int(rng.integers(0, max(H - h, 0) + 1))
            left = int(rng.integers(0, max(W - w, 0) + 1))
            sample = crop(sample, top, left, h, w)
        if rng.random() < self.flip_probability:
            sample = hflip(sample)
        if self.jitter:
            sample = _with(sample, image=color_jitter(sample["image"], rng))
        return sample
