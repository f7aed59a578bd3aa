"""Write a synthetic dataset: python -m training.data.synthetic --out DIR --frames N --size HxW --seed S

DIR/video_sequence/train/   N frames, clips of --clip-length consecutive 10 Hz frames, one scene per clip
DIR/video_sequence/val/     one continuous sequence of --val-frames frames (default N) from its own scene
DIR/bag/                    rosbag2 of exactly the val sequence (same images, depth, instances, stamps)
DIR/instance_classes.json   {"val": {instance id: Cityscapes trainId}} for the val sequence / bag
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .bag import GT_ENCODINGS, STORAGES, write_bag
from .dataset import scene_seed
from .render import render_sequence
from .writer import write_split

VAL_SCENE_OFFSET = 50_000  # val scenes come from a seed range train clips never use


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 192x640 (H x W), got {text!r}") from None
    if h < 8 or w < 8:
        raise argparse.ArgumentTypeError(f"--size {text}: both sides must be >= 8")
    return h, w


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output directory (created; must not hold a bag)")
    parser.add_argument("--frames", type=int, required=True, help="number of train frames")
    parser.add_argument("--size", type=parse_size, default=(192, 640), help="H x W, default 192x640")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparse", action="store_true", help="LiDAR-like sparse ground truth")
    parser.add_argument("--clip-length", type=int, default=5, help="consecutive frames per train scene")
    parser.add_argument("--val-frames", type=int, default=None, help="length of the val sequence and bag (default N)")
    parser.add_argument("--bag-storage", choices=sorted(STORAGES), default="sqlite3")
    parser.add_argument("--gt-encoding", choices=GT_ENCODINGS, default="32FC1")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.clip_length < 1:
        parser.error(f"--frames {args.frames} / --clip-length {args.clip_length}: both must be >= 1")
    val_frames = args.frames if args.val_frames is None else args.val_frames
    if val_frames < 1:
        parser.error(f"--val-frames {args.val_frames}: must be >= 1")
    if (args.out / "bag").exists():
        parser.error(f"{args.out / 'bag'} already exists; choose a new --out")
    if args.seed < 0:
        parser.error(f"--seed {args.seed}: must be >= 0 (scene seeds are non-negative)")

    started = time.perf_counter()
    clips, left, clip = [], args.frames, 0
    while left > 0:
        n = min(args.clip_length, left)
        clips.append(render_sequence(n, args.size, scene_seed(args.seed, clip), args.sparse))
        left, clip = left - n, clip + 1
    write_split(args.out, "train", clips)
    sequence = render_sequence(val_frames, args.size, scene_seed(args.seed, VAL_SCENE_OFFSET), args.sparse)
    write_split(args.out, "val", [sequence])
    write_bag(args.out / "bag", sequence, storage=args.bag_storage, gt_encoding=args.gt_encoding)
    classes = {}
    for frame in sequence:
        classes.update({str(k): v for k, v in frame["instance_classes"].items()})
    (args.out / "instance_classes.json").write_text(json.dumps({"val": classes}, indent=1, sort_keys=True))
    print(f"wrote {args.frames} train + {val_frames} val frames and {args.out / 'bag'} "
          f"({args.bag_storage}) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
