"""PNG reading and writing with errors that name the file and what was expected.

Depth PNGs in all three datasets are uint16, metres = value / 256, 0 = invalid (the KITTI depth devkit's convention, which the DVPS sets follow; docs/data.md).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEPTH_SCALE = 256.0  # uint16 PNG value per metre
MAX_ENCODABLE_DEPTH = 65535 / DEPTH_SCALE


def _read(path: Path, flags: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    array = cv2.imread(str(path), flags)
    if array is None:
        raise ValueError(f"{path}: cannot be decoded as an image (corrupt or not a PNG/JPEG?)")
    return array


def _describe(array: np.ndarray) -> str:
    channels = 1 if array.ndim == 2 else array.shape[2]
    return f"{array.dtype} with {channels} channel(s), shape {array.shape}"


def read_rgb(path) -> np.ndarray:
    """uint8 [H, W, 3] RGB from an 8-bit colour PNG/JPEG (an alpha channel is dropped)."""
    array = _read(path, cv2.IMREAD_UNCHANGED)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"{path}: expected an 8-bit RGB image, got {_describe(array)}")
    return np.ascontiguousarray(cv2.cvtColor(array[..., :3], cv2.COLOR_BGR2RGB))


def read_depth(path) -> np.ndarray:
    """float32 [H, W] metres from a uint16 depth PNG (value / 256); 0 stays 0 (invalid)."""
    array = _read(path, cv2.IMREAD_UNCHANGED)
    if array.dtype != np.uint16 or array.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel uint16 depth PNG (metres * 256), got {_describe(array)}")
    return array.astype(np.float32) / DEPTH_SCALE


def read_label(path, dtypes=(np.uint8, np.uint16), what: str = "label") -> np.ndarray:
    """int64 [H, W] from a single-channel label PNG whose dtype is one of `dtypes`."""
    array = _read(path, cv2.IMREAD_UNCHANGED)
    if array.ndim != 2 or array.dtype not in dtypes:
        names = " or ".join(np.dtype(d).name for d in dtypes)
        raise ValueError(f"{path}: expected a single-channel {names} {what} PNG, got {_describe(array)}")
    return array.astype(np.int64)


def write_rgb(path, image: np.ndarray) -> None:
    """Write uint8 [H, W, 3] RGB as PNG."""
    _write(path, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))


def write_depth(path, depth: np.ndarray) -> None:
    """Write float32 metres as uint16 PNG (round(d * 256)); invalid (<= 0, NaN) and > 255.99 m become 0."""
    depth = np.nan_to_num(np.asarray(depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    encodable = (depth > 0) & (depth <= MAX_ENCODABLE_DEPTH)
    _write(path, np.where(encodable, np.round(depth * DEPTH_SCALE), 0).astype(np.uint16))


def write_label(path, label: np.ndarray, dtype=np.uint16) -> None:
    """Write an integer label map as a single-channel PNG of `dtype` (values must fit)."""
    label = np.asarray(label)
    info = np.iinfo(dtype)
    if label.size and (label.min() < info.min or label.max() > info.max):
        raise ValueError(f"{path}: label values [{label.min()}, {label.max()}] do not fit {np.dtype(dtype).name}")
    _write(path, label.astype(dtype))


def _write(path, array: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"{path}: could not write PNG")
