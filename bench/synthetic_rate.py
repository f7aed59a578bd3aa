"""Synthetic road-scene rendering rate (frames per second) on this machine's CPU.

    python bench/synthetic_rate.py [--size 192x640] [--frames 40] [--mode scenes|sequence] [--sparse]

"scenes" renders independent scenes (scene layout + frame, what SyntheticRoadScenes does per item);
"sequence" renders consecutive 10 Hz frames of one scene (what the bag writer does). Prints one line
with frames/second; the issue's target is >= 10 at 192 x 640. Add --json to print one JSON object instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from json_output import peak_rss_mb, print_json  # noqa: E402
from training.data.synthetic import render_scene, render_sequence  # noqa: E402
from training.data.synthetic.__main__ import parse_size  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(192, 640))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--mode", choices=("scenes", "sequence"), default="scenes")
    parser.add_argument("--sparse", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args()
    render_scene(10_000, args.size, args.sparse)  # warm-up (imports, caches)
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.mode == "scenes":
        for seed in range(args.frames):
            render_scene(seed, args.size, args.sparse)
    else:
        render_sequence(args.frames, args.size, seed=0, sparse=args.sparse)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    H, W = args.size
    if args.json:
        print_json({"mode": args.mode, "frames": args.frames, "size": f"{H}x{W}", "sparse": args.sparse,
                    "wall_s": round(elapsed, 3), "frames_per_s": round(args.frames / elapsed, 2),
                    "frames_per_cpu_s": round(args.frames / cpu, 2), "load_average_1min": round(os.getloadavg()[0], 2),
                    "cores": os.cpu_count(), "peak_rss_mb": peak_rss_mb()})
        return 0
    # CPU time shows the renderer's own cost when other processes share the cores
    print(f"{args.mode}: {args.frames} frames at {H}x{W}{' sparse' if args.sparse else ''} in {elapsed:.2f} s wall "
          f"= {args.frames / elapsed:.1f} frames/second ({args.frames / cpu:.1f} per CPU-second, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
