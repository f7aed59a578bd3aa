"""Write rendered frames in the Cityscapes-DVPS layout (read back by CityscapesDVPS).

Per frame, in OUT/video_sequence/<split>/, with prefix SSSSSS_FFFFFF_synthetic_SSSSSS_FFFFFF:
    _leftImg8bit.png              RGB
    _gtFine_instanceTrainIds.png  uint16, Cityscapes' convention: trainId * 1000 + instance id for things
                                  (ids are the scene's, stable through a sequence), the bare trainId for
                                  stuff (road 0, sky 10)
    _depth.png                    uint16 metres * 256, 0 = invalid (sky, and anything beyond 255.99 m)
    _camera.json                  Cityscapes camera format: {"intrinsic": {"fx", "fy", "u0", "v0"}, ...}
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..cityscapes_dvps import LABEL_DIVISOR, SUFFIX_CAMERA, SUFFIX_DEPTH, SUFFIX_IMAGE, SUFFIX_PANOPTIC
from ..io import write_depth, write_label, write_rgb

CITY = "synthetic"


def panoptic_map(frame: dict) -> np.ndarray:
    """uint16 [H, W]: trainId * 1000 + instance id where there is an instance, else the bare trainId."""
    if frame["instances"].max(initial=0) >= LABEL_DIVISOR:
        raise ValueError(f"instance id {frame['instances'].max()} does not fit the panoptic encoding (< 1000)")
    semantic, instances = frame["semantic"].astype(np.int64), frame["instances"].astype(np.int64)
    return np.where(instances > 0, semantic * LABEL_DIVISOR + instances, semantic).astype(np.uint16)


def frame_prefix(sequence: int, index: int) -> str:
    return f"{sequence:06d}_{index:06d}_{CITY}_{sequence:06d}_{index:06d}"


def write_frame(folder: Path, sequence: int, index: int, frame: dict) -> str:
    """Write one frame's files under folder; returns the prefix path."""
    prefix = str(Path(folder) / frame_prefix(sequence, index))
    write_rgb(prefix + SUFFIX_IMAGE, frame["image"])
    write_depth(prefix + SUFFIX_DEPTH, frame["depth"])
    write_label(prefix + SUFFIX_PANOPTIC, panoptic_map(frame))
    K, camera = frame["K"], frame["camera"]
    Path(prefix + SUFFIX_CAMERA).write_text(json.dumps({
        "intrinsic": {"fx": K[0, 0], "fy": K[1, 1], "u0": K[0, 2], "v0": K[1, 2]},
        "extrinsic": {"x": 0.0, "y": 0.0, "z": camera["height"], "pitch": camera["pitch"], "yaw": camera["yaw"],
                      "roll": 0.0},
        "stamp_ns": frame["stamp_ns"],
    }, indent=1))
    return prefix


def write_split(root, split: str, sequences: list[list[dict]], first_sequence: int = 0) -> int:
    """Write sequences (lists of frames) to root/video_sequence/<split>/; returns the frame count."""
    folder = Path(root) / "video_sequence" / split
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for s, frames in enumerate(sequences):
        for i, frame in enumerate(frames):
            write_frame(folder, first_sequence + s, i, frame)
            count += 1
    return count
