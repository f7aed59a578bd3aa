"""Contact sheet of a dataset: one row per item, RGB | depth colour map | instances.

    python -m training.data.preview DATASET_DIR --out sheet.png [--split val] [--count 6]
    python -m training.data.preview synthetic --out sheet.png [--seed 0 --size 192x640 --sparse]

DATASET_DIR may hold the Cityscapes-DVPS layout (also what the synthetic CLI writes), the SemKITTI-DVPS
layout, or the KITTI layout that build_dataset("kitti_eigen") expects. Items come through the loaders
without augmentation, so the sheet shows exactly what training sees.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from . import build_dataset
from .synthetic.__main__ import parse_size


def detect_layout(root: Path) -> str:
    """Dataset name for build_dataset, from the files under root."""
    if (root / "splits").is_dir() and (root / "raw").is_dir():
        return "kitti_eigen"
    sequences = root / "video_sequence"
    if sequences.is_dir():
        if next(sequences.glob("*/*_gtFine_instanceTrainIds.png"), None) is not None:
            return "cityscapes_dvps"
        if next(sequences.glob("*/*_gtFine_class.png"), None) is not None:
            return "semkitti_dvps"
    raise ValueError(f"{root}: not a recognised layout (expected video_sequence/<split>/ with Cityscapes-DVPS or "
                     f"SemKITTI-DVPS files, or raw/ + splits/ for KITTI)")


def colorize_depth(depth: np.ndarray, valid: np.ndarray, max_depth: float) -> np.ndarray:
    """uint8 [H, W, 3] RGB: near = warm, far = cool, invalid black; sparse points are thickened."""
    inverse = np.where(valid, 1.0 / np.maximum(depth, 1e-3), 0.0)
    scaled = np.clip((inverse - 1.0 / max_depth) / (1.0 / 2.0 - 1.0 / max_depth), 0, 1)  # 2 m .. max_depth
    colored = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
    shown = valid
    if valid.mean() < 0.3:  # LiDAR-like: dilate so the points are visible
        kernel = np.ones((3, 3), np.uint8)
        colored = cv2.dilate(colored * valid[..., None].astype(np.uint8), kernel)
        shown = cv2.dilate(valid.astype(np.uint8), kernel).astype(bool)
    return np.where(shown[..., None], colored, 0).astype(np.uint8)


def colorize_instances(image: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Instances in distinct colours over a dimmed grey image."""
    grey = (image.mean(axis=2, keepdims=True) * 0.4).repeat(3, axis=2)
    palette = np.random.default_rng(7).integers(60, 256, size=(int(instances.max()) + 1, 3))
    return np.where(instances[..., None] > 0, palette[instances], grey).astype(np.uint8)


def item_row(item: dict, max_depth: float) -> np.ndarray:
    image = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    depth = colorize_depth(item["depth"][0].numpy(), item["valid"][0].numpy(), max_depth)
    instances = colorize_instances(image, item["instances"][0].numpy())
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([image, gap, depth, gap, instances], axis=1)


def contact_sheet(dataset, count: int) -> np.ndarray:
    """uint8 [rows, cols, 3]: the first `count` items stacked (wider items are resized to the first width)."""
    rows = []
    for index in range(min(count, len(dataset))):
        row = item_row(dataset[index], dataset.max_depth)
        if rows and row.shape[1] != rows[0].shape[1]:
            scale = rows[0].shape[1] / row.shape[1]
            row = cv2.resize(row, (rows[0].shape[1], max(1, round(row.shape[0] * scale))),
                             interpolation=cv2.INTER_NEAREST)
        rows.append(row)
        rows.append(np.full((4, row.shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.preview", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset directory, or 'synthetic' to render in memory")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0, help="synthetic only")
    parser.add_argument("--size", type=parse_size, default=(192, 640), help="synthetic only")
    parser.add_argument("--sparse", action="store_true", help="synthetic only")
    args = parser.parse_args(argv)
    if args.dataset == "synthetic" and not Path(args.dataset).exists():
        dataset = build_dataset("synthetic", None, args.split, False, args.size, length=args.count, seed=args.seed,
                                sparse=args.sparse)
    else:
        root = Path(args.dataset)
        if not root.is_dir():
            parser.error(f"{root}: directory not found")
        dataset = build_dataset(detect_layout(root), root, args.split, False)
    sheet = contact_sheet(dataset, args.count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), sheet[..., ::-1])
    print(f"wrote {args.out} ({len(range(min(args.count, len(dataset))))} items, {sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
