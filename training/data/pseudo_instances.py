"""Pseudo instance masks for KITTI (the paper's Mask2Former step), in the layout KittiEigen reads.

    python -m training.data.pseudo_instances --data-root RAW --split FILE --out DIR --weights W \\
        [--score-threshold 0.5] [--min-area 64] [--batch-size 4] [--device auto|cpu|cuda]

RAW is KITTI raw (the split file's image paths are relative to it), FILE a BTS split file, W a local
Mask2Former folder as `transformers` saves it (config.json, model.safetensors, preprocessor_config.json),
e.g. a Cityscapes instance-segmentation checkpoint. Nothing is downloaded. For every listed image it writes

    DIR/<image path>.png   uint16 instance ids 1..M (0 = none), highest score first
    DIR/<image path>.json  {"classes": {"<id>": "<THING_CLASSES name>"}, "scores": {"<id>": score}, ...}

(the JSON last, so an image counts as done only when both exist: a rerun skips done images).
Only road users are kept (THING_CLASSES: person, rider, car, truck, bus, train, motorcycle, bicycle, found
by the model's label names), with score >= --score-threshold and at least --min-area pixels after
overlaps are resolved. Point the KITTI loader at DIR (build_dataset: ROOT/instances).

Why Mask2Former through `transformers`: it is the network the paper used, and its Cityscapes checkpoints
know `rider`, which COCO-trained models (torchvision's Mask R-CNN) do not have.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import read_rgb, write_label
from .items import THING_CLASSES
from .kitti import MASK_CLASSES_SUFFIX, parse_split_file

# Label names other datasets use for our road users (Cityscapes and COCO use THING_CLASSES' names).
ALIASES = {"pedestrian": "person", "motorbike": "motorcycle", "bicyclist": "rider", "motorcyclist": "rider",
           "cyclist": "rider", "bike": "bicycle"}
MAX_IDS = 65535  # uint16 PNG


@dataclass
class Segment:
    """One predicted instance: its pixels on the image grid, label name (the model's) and score."""

    mask: np.ndarray  # bool [H, W]
    label: str
    score: float


def road_user_class(label: str) -> str | None:
    """THING_CLASSES name for a model label ('car', 'Car', 'motorbike' ...), None for anything else."""
    name = label.strip().lower()
    name = ALIASES.get(name, name)
    return name if name in THING_CLASSES else None


def select_instances(segments: list[Segment], size: tuple[int, int], score_threshold: float,
                     min_area: int) -> tuple[np.ndarray, dict]:
    """Road users with score >= threshold and >= min_area pixels -> (uint16 ids [H, W], metadata dict).

    Ids run 1..M in decreasing score; a pixel claimed by two segments keeps the higher-scored one, and
    the area is counted after that. Metadata: {"classes": {id: name}, "scores": {id: score},
    "labels": {id: the model's label}} with string keys (JSON).
    """
    ids = np.zeros(size, np.uint16)
    taken = np.zeros(size, bool)
    meta = {"classes": {}, "scores": {}, "labels": {}}
    kept = 0
    for segment in sorted(segments, key=lambda s: -s.score):
        name = road_user_class(segment.label)
        if name is None or segment.score < score_threshold:
            continue
        pixels = segment.mask & ~taken
        if int(pixels.sum()) < min_area:
            continue
        kept += 1
        if kept > MAX_IDS:
            raise ValueError(f"more than {MAX_IDS} instances in one image do not fit a uint16 PNG")
        ids[pixels] = kept
        taken |= pixels
        key = str(kept)
        meta["classes"][key], meta["scores"][key], meta["labels"][key] = name, round(float(segment.score), 6), segment.label
    return ids, meta


class Mask2FormerSegmenter:
    """A local Mask2Former (transformers) folder; ``segment(images)`` -> one list of Segment per image."""

    def __init__(self, weights: str | Path, device: str = "auto"):
        import torch
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

        weights = Path(weights)
        if not (weights / "config.json").is_file():
            raise FileNotFoundError(f"--weights {weights}: expected a transformers Mask2Former folder with "
                                    "config.json, model.safetensors and preprocessor_config.json")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(weights, local_files_only=True)
        self.model.to(self.device).eval()
        self.processor = Mask2FormerImageProcessor.from_pretrained(weights, local_files_only=True)
        self.labels = {int(k): v for k, v in self.model.config.id2label.items()}
        if not any(road_user_class(name) for name in self.labels.values()):
            raise ValueError(f"--weights {weights}: none of the model's labels ({', '.join(self.labels.values())}) "
                             f"is a road user ({', '.join(THING_CLASSES)})")

    def segment(self, images: list[np.ndarray]) -> list[list[Segment]]:
        """images: uint8 [H, W, 3] RGB (sizes may differ)."""
        import torch

        inputs = self.processor(images=images, return_tensors="pt")
        with torch.no_grad():
            outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device),
                                 pixel_mask=inputs["pixel_mask"].to(self.device) if "pixel_mask" in inputs else None)
        # threshold 0: every query the library keeps; the score threshold is applied by select_instances
        results = self.processor.post_process_instance_segmentation(
            outputs, threshold=0.0, target_sizes=[image.shape[:2] for image in images])
        per_image = []
        for result in results:
            segmentation = result["segmentation"].cpu().numpy()  # [H, W], -1 = none, else a segment id
            per_image.append([Segment(segmentation == info["id"], self.labels[int(info["label_id"])],
                                      float(info["score"])) for info in result["segments_info"]])
        return per_image


def output_paths(out: Path, image: str) -> tuple[Path, Path]:
    """(mask PNG, classes JSON) for an image path of the split file, as KittiEigen looks for them."""
    png = (out / image).with_suffix(".png")
    return png, png.with_suffix(MASK_CLASSES_SUFFIX)


def write_masks(segmenter, data_root: Path, images: list[str], out: Path, score_threshold: float, min_area: int,
                batch_size: int, progress: bool = True, provenance: dict | None = None) -> dict:
    """Segment and write every image not done yet. Returns {"written", "skipped", "instances"}."""
    from tqdm import tqdm

    todo = [image for image in images if not output_paths(out, image)[1].is_file()]
    counts = {"written": 0, "skipped": len(images) - len(todo), "instances": 0}

    def flush(batch: list[tuple[str, np.ndarray]]) -> None:
        for (image, rgb), segments in zip(batch, segmenter.segment([rgb for _, rgb in batch])):
            ids, meta = select_instances(segments, rgb.shape[:2], score_threshold, min_area)
            png, meta_path = output_paths(out, image)
            write_label(png, ids, np.uint16)
            meta.update(provenance or {})
            partial = meta_path.with_name(meta_path.name + ".partial")
            partial.write_text(json.dumps(meta, indent=1) + "\n")
            os.replace(partial, meta_path)  # done only once the JSON is complete
            counts["written"] += 1
            counts["instances"] += len(meta["classes"])
            bar.update(1)

    with tqdm(total=len(images), initial=counts["skipped"], desc="pseudo masks", unit="image",
              disable=not progress) as bar:
        batch: list[tuple[str, np.ndarray]] = []
        for image in todo:
            rgb = read_rgb(data_root / image)
            # one size per batch: the processor pads a mixed batch, and padding would shift the masks
            if batch and (len(batch) == batch_size or rgb.shape != batch[0][1].shape):
                flush(batch)
                batch = []
            batch.append((image, rgb))
        if batch:
            flush(batch)
    return counts


def listed_images(split_file) -> list[str]:
    """Image paths of a BTS split file, each once, in file order."""
    return list(dict.fromkeys(image for image, _, _, _ in parse_split_file(split_file)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.data.pseudo_instances",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-root", required=True, help="KITTI raw root (the split file's image paths start here)")
    parser.add_argument("--split", required=True, help="BTS split file ('image gt focal' lines)")
    parser.add_argument("--out", required=True, help="output folder (the KITTI loader's instance_root)")
    parser.add_argument("--weights", required=True, help="local transformers Mask2Former folder")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="keep instances scoring at least this")
    parser.add_argument("--min-area", type=int, default=64, help="keep instances with at least this many pixels")
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto = cuda when present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0.0 <= args.score_threshold <= 1.0:
            raise ValueError(f"--score-threshold {args.score_threshold}: must be in [0, 1]")
        if args.min_area < 1 or args.batch_size < 1:
            raise ValueError(f"--min-area {args.min_area} and --batch-size {args.batch_size} must be >= 1")
        data_root = Path(args.data_root)
        if not data_root.is_dir():
            raise FileNotFoundError(f"--data-root {data_root}: directory not found")
        images = listed_images(args.split)
        missing = [image for image in images if not (data_root / image).is_file()]
        if missing:
            raise FileNotFoundError(f"{data_root / missing[0]}: image listed in {args.split} not found "
                                    f"({len(missing)} of {len(images)} missing)")
        segmenter = Mask2FormerSegmenter(args.weights, args.device)
        provenance = {"weights": str(args.weights), "score_threshold": args.score_threshold, "min_area": args.min_area}
        counts = write_masks(segmenter, data_root, images, Path(args.out), args.score_threshold, args.min_area,
                             args.batch_size, progress=not args.no_progress, provenance=provenance)
    except (FileNotFoundError, ValueError) as error:
        print(f"pseudo_instances: error: {error}", file=sys.stderr)
        return 2
    print(f"pseudo_instances: {counts['written']} images written, {counts['skipped']} already done, "
          f"{counts['instances']} instances ({segmenter.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
