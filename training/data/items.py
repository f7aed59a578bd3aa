"""Turning decoded arrays into the dataset item dict every loader returns.

Item keys (all tensors, so torch's default collate batches them):
    image             float32 [3, H, W] RGB in [0, 1]
    depth             float32 [1, H, W] metres, 0 where invalid
    valid             bool    [1, H, W] min_depth < depth <= max_depth
    instances         int64   [1, H, W] 0 = no thing, 1..M numbering this image's thing instances
                      (in increasing order of the dataset's own instance id)
    instance_classes  int64   [MAX_INSTANCES] thing class of instance i at index i - 1 (THING_CLASSES
                      order), -1 where the class is unknown (KITTI pseudo masks) and beyond M
    intrinsics        float32 [3, 3] camera matrix of the returned (cropped, scaled, flipped) image
    has_depth         bool    [] False when the image has no ground truth at all (KITTI "None" lines)
"""
from __future__ import annotations

import numpy as np
import torch

# One thing-class vocabulary for all datasets: Cityscapes' thing trainIds 11-18 minus 11.
THING_CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
CITYSCAPES_FIRST_THING = 11
MAX_INSTANCES = 255
UNKNOWN_CLASS = -1


def relabel_instances(instances: np.ndarray, classes: dict | None = None, source: str = "image"):
    """Renumber nonzero ids to 1..M in increasing order; returns (int64 [H, W], int64 [MAX_INSTANCES]).

    `classes` maps original id -> THING_CLASSES index (missing ids get UNKNOWN_CLASS).
    """
    ids = np.unique(instances)
    ids = ids[ids != 0]
    if len(ids) > MAX_INSTANCES:
        raise ValueError(f"{source}: {len(ids)} thing instances, at most {MAX_INSTANCES} are supported")
    out = np.searchsorted(ids, instances)  # index of each id among the sorted ids
    out = np.where(instances == 0, 0, out + 1)
    table = np.full(MAX_INSTANCES, UNKNOWN_CLASS, dtype=np.int64)
    for new, old in enumerate(ids):
        table[new] = (classes or {}).get(int(old), UNKNOWN_CLASS)
    return out.astype(np.int64), table


def make_item(sample: dict, min_depth: float, max_depth: float, source: str = "image") -> dict:
    """sample: image uint8 [H, W, 3], depth float32 [H, W], instances int [H, W], K [3, 3],
    classes {instance id: THING_CLASSES index}, has_depth bool -> item dict (module docstring)."""
    depth = np.nan_to_num(sample["depth"].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    valid = (depth > min_depth) & (depth <= max_depth)
    depth = np.where(valid, depth, 0.0).astype(np.float32)
    instances, table = relabel_instances(sample["instances"], sample.get("classes"), source)
    image = torch.from_numpy(np.ascontiguousarray(sample["image"])).permute(2, 0, 1).float().div_(255.0)
    return {
        "image": image.contiguous(),
        "depth": torch.from_numpy(depth)[None],
        "valid": torch.from_numpy(valid)[None],
        "instances": torch.from_numpy(instances)[None],
        "instance_classes": torch.from_numpy(table),
        "intrinsics": torch.from_numpy(np.asarray(sample["K"], dtype=np.float32)),
        "has_depth": torch.tensor(bool(sample.get("has_depth", True))),
    }
