"""replay_fleet's scale on this machine: a plain loop over N synthetic drives against the fleet on Ray.

    python bench/replay_fleet.py [--drives 8] [--frames 20] [--size 192x640] [--model models/demo/icm_demo.onnx]
                                 [--workers 1 2] [--json]

The drives (10 Hz, different scenes) are rendered first and not timed. Then, one after another:
- loop: offline.evaluate_drive on each drive in this process, one DepthPipeline loaded once, 1 ONNX Runtime
  thread (what one Ray task runs);
- fleet with --workers W for each W given: run_fleet, Ray started inside this process, one task per drive
  with 1 CPU each; timed from before Ray starts to after it stopped (``ray_startup_s`` says how much of it
  was Ray's start; ``frames_per_s_after_start`` leaves it out).
Frames/s = all drives' frames / wall time. The issue's goals: workers 2 >= 1.7 x workers 1, and workers 1 >=
0.9 x the loop. Cost per drive-minute (600 frames at 10 Hz) = 600 x CPUs in use / frames per second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from json_output import peak_rss_mb, print_json, stdout_to_stderr  # noqa: E402
from training.data.synthetic import render_sequence, write_bag  # noqa: E402
from training.data.synthetic.__main__ import parse_size  # noqa: E402

from icm_depth_ros.processing.pipeline import DepthPipeline  # noqa: E402
from icm_depth_ros.replay.bag_reader import TopicSelection  # noqa: E402
from icm_depth_ros.replay.offline import ReplayOptions, evaluate_drive, pipeline_config  # noqa: E402

FRAMES_PER_DRIVE_MINUTE = 600  # 10 Hz
GOAL_SCALING = 1.7  # workers 2 against workers 1
GOAL_RAY_OVERHEAD = 0.10  # workers 1 at least 90 % of the plain loop's frames/s


def plain_loop(bags: list[Path], options: ReplayOptions) -> float:
    """Seconds for every drive evaluated one after another in this process."""
    start = time.perf_counter()
    pipeline = DepthPipeline.from_config(pipeline_config(options))
    for bag in bags:
        evaluate_drive(replace(options, bag=str(bag)), pipeline)
    return time.perf_counter() - start


def fleet(bags: list[Path], options: ReplayOptions, workers: int, out: Path):
    from icm_depth_ros.replay.fleet_runner import FleetOptions, run_fleet

    run = run_fleet(bags, FleetOptions(replay=options, models={"candidate": options.model_path}, out=str(out),
                                       workers=workers))
    failed = [r.failure for results in run.results.values() for r in results.values() if not r.ok]
    if failed or len(run.results) != len(bags):
        raise RuntimeError(f"fleet run with {workers} workers: {len(failed)} drives failed: {failed[:1]}")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drives", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20, help="frames per drive")
    parser.add_argument("--size", type=parse_size, default=(192, 640), help="camera image size HxW")
    parser.add_argument("--model", default=str(ROOT / "models" / "demo" / "icm_demo.onnx"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_replay_fleet_") as folder, stdout_to_stderr(args.json):
        bags = [write_bag(Path(folder) / f"drive{i}", render_sequence(args.frames, args.size, seed=100 + i))
                for i in range(args.drives)]
        options = ReplayOptions(bag="", topics=TopicSelection("/camera/image_raw", "/camera/camera_info",
                                                              "/camera/depth_gt", "/camera/instances"),
                                model_path=args.model, threads=1, progress=False, samples=0)
        frames = args.drives * args.frames
        loop_s = plain_loop(bags, options)
        results = {"loop": {"cpus": 1, "wall_s": round(loop_s, 3), "frames_per_s": round(frames / loop_s, 3)}}
        for workers in args.workers:
            run = fleet(bags, options, workers, Path(folder) / f"out{workers}")
            results[f"workers_{workers}"] = {
                "cpus": workers, "wall_s": round(run.elapsed_s, 3), "ray_startup_s": round(run.startup_s, 3),
                "frames_per_s": round(frames / run.elapsed_s, 3),
                "frames_per_s_after_start": round(frames / (run.elapsed_s - run.startup_s), 3)}
    for entry in results.values():
        entry["cpu_s_per_drive_minute"] = round(FRAMES_PER_DRIVE_MINUTE * entry["cpus"] / entry["frames_per_s"], 1)
    figures = {"drives": args.drives, "frames_per_drive": args.frames, "size": f"{args.size[0]}x{args.size[1]}",
               "model": os.path.relpath(args.model, ROOT), "cores": os.cpu_count(),
               "load_average_1min": round(os.getloadavg()[0], 2), "results": results,
               "goal_scaling": GOAL_SCALING, "goal_ray_overhead": GOAL_RAY_OVERHEAD, "peak_rss_mb": peak_rss_mb()}
    if "workers_1" in results:
        figures["ray_overhead"] = round(1 - results["workers_1"]["frames_per_s"] / results["loop"]["frames_per_s"], 4)
        figures["ray_overhead_after_start"] = round(
            1 - results["workers_1"]["frames_per_s_after_start"] / results["loop"]["frames_per_s"], 4)
    if "workers_1" in results and "workers_2" in results:
        figures["scaling_2_over_1"] = round(results["workers_2"]["frames_per_s"] / results["workers_1"]["frames_per_s"], 3)
    if args.json:
        print_json(figures)
        return 0
    print(f"{args.drives} drives x {args.frames} frames at {figures['size']}, {figures['model']}, "
          f"{os.cpu_count()} cores, load average {figures['load_average_1min']}")
    for name, entry in results.items():
        startup = f" (Ray start {entry['ray_startup_s']:.1f} s)" if "ray_startup_s" in entry else ""
        print(f"  {name:10s} {entry['wall_s']:7.1f} s{startup}  {entry['frames_per_s']:6.2f} frames/s  "
              f"{entry['cpu_s_per_drive_minute']:6.1f} CPU-s per drive-minute")
    if "ray_overhead" in figures:
        print(f"  Ray's overhead (workers 1 against the loop): {figures['ray_overhead']:.1%} "
              f"(goal <= {GOAL_RAY_OVERHEAD:.0%}); without Ray's start {figures['ray_overhead_after_start']:.1%}")
    if "scaling_2_over_1" in figures:
        print(f"  workers 2 / workers 1: {figures['scaling_2_over_1']:.2f}x (goal >= {GOAL_SCALING:g}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
