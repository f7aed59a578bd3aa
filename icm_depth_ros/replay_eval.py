"""replay_eval: score the depth node on a recorded drive (rosbag2 sqlite3/mcap or ROS 1 bag).

Offline (default): reads the bag with rosbags and runs the node's DepthPipeline on every image, no ROS
graph needed. Live (--live): plays the bag's camera topics into a ROS graph at the recorded rate and
scores what a running depth_node publishes. Both write metrics.json, frames.csv, instances.csv and
report.md to --out. A drive without ground truth (--depth-topic '') is run and reported, not scored;
without camera_info (--camera-info-topic '') instance centroids have no x/y. See docs/replay.md.
Offline runs also track the instances (the node's tracker) into tracks.csv, scored against per-instance
truth where the bag has it (--truth-topic); --depth-source ground-truth runs that on the bag's true
depth, no model needed.

    replay_eval BAG --image-topic /camera/image_raw --camera-info-topic /camera/camera_info \\
        --depth-topic /camera/depth_gt [--instances-topic /camera/instances] --model model.onnx --out DIR
    replay_eval BAG --instances-topic /camera/instances --truth-topic /camera/instances_truth \\
        --depth-source ground-truth --out DIR
"""
from __future__ import annotations

import argparse
import sys

from icm_depth_ros.replay.bag_reader import BagError
from icm_depth_ros.replay.command_line import (add_model_options, add_scoring_options, add_topic_options,
                                            check_output_apart, check_shared_options, topic_selection)

# The options each mode would ignore, with their defaults: given otherwise, they are refused.
LIVE_ONLY = {"node_namespace": "", "rate": 1.0, "wait_for_node": 30.0, "drain": 2.0}
OFFLINE_ONLY = {"model": "", "backend": "onnxruntime", "threads": 0, "resize_policy": "crop", "write_bag": False,
                "output_namespace": None, "depth_source": "model", "min_instance_pixels": 50, "no_tracking": False,
                "self_test": "refuse"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay_eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag file")
    add_topic_options(parser)
    model = add_model_options(parser, "model (offline)")
    model.add_argument("--depth-source", default="model", choices=("model", "ground-truth"),
                       help="ground-truth: the bag's true depth instead of a model's (needs --instances-topic): "
                            "scores the tracking stage alone")
    model.add_argument("--min-instance-pixels", type=int, default=50, help="smallest instance (the node's parameter)")
    model.add_argument("--no-tracking", action="store_true", help="no tracker, no tracks.csv")
    model.add_argument("--self-test", default="refuse", choices=("refuse", "warn", "off"),
                       help="before scoring, run the backend on the model's self-test reference (as the node's "
                            "self_test parameter): refuse = a failure stops the run (exit 2), warn = report it and score")
    add_scoring_options(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, help="folder for metrics.json, frames.csv, report.md")
    output.add_argument("--write-bag", action="store_true",
                        help="also write OUT/bag: the input plus predicted depth/image, depth/camera_info, depth/instances")
    output.add_argument("--output-namespace", default=None,
                        help="namespace of the --write-bag topics (default: the image topic's namespace)")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    output.add_argument("--debug", action="store_true", help="show the traceback of an error")
    live = parser.add_argument_group("live (score a running depth_node)")
    live.add_argument("--live", action="store_true", help="play the bag into a ROS graph and score the node's output")
    live.add_argument("--rate", type=float, default=1.0, help="playback speed, multiple of the recorded rate")
    live.add_argument("--node-namespace", default="",
                      help="namespace of the running depth_node: images go to NS/image, NS/camera_info, "
                           "NS/instances; its NS/depth/image is scored")
    live.add_argument("--wait-for-node", type=float, default=30.0, help="seconds to wait for the node to appear")
    live.add_argument("--drain", type=float, default=2.0, help="seconds to wait for outputs after the last frame")
    return parser


def main(argv: list[str] | None = None) -> int:
    # ros2 run passes --ros-args; they are not ours (rclpy reads them in live mode)
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--ros-args" in argv:
        argv = argv[: argv.index("--ros-args")]
    args = build_parser().parse_args(argv)
    topics = topic_selection(args)
    try:
        check_options(args)
        if args.live:
            from icm_depth_ros.replay.live import LiveOptions, run_live

            summary = run_live(LiveOptions(
                bag=args.bag, topics=topics, node_namespace=args.node_namespace, rate=args.rate,
                min_depth=args.min_depth, max_depth=args.max_depth, crop=args.crop,
                stamp_tolerance_s=args.stamp_tolerance, out=args.out, samples=args.samples,
                wait_for_node_s=args.wait_for_node, drain_s=args.drain))
        else:
            from icm_depth_ros.replay.offline import ReplayOptions, run_offline

            summary = run_offline(ReplayOptions(
                bag=args.bag, topics=topics, model_path=args.model, backend=args.backend, threads=args.threads,
                resize_policy=args.resize_policy, min_depth=args.min_depth, max_depth=args.max_depth,
                crop=args.crop, stamp_tolerance_s=args.stamp_tolerance, out=args.out, write_bag=args.write_bag,
                output_namespace=args.output_namespace, samples=args.samples, progress=not args.no_progress,
                depth_source=args.depth_source, tracking=not args.no_tracking,
                min_instance_pixels=args.min_instance_pixels, self_test=args.self_test))
    except (BagError, ValueError, RuntimeError, TimeoutError) as error:  # ModelLoadError is a RuntimeError
        if args.debug:
            raise
        print(f"replay_eval: error: {error}", file=sys.stderr)
        return 2
    print(summary_line(summary))
    written = "metrics.json, frames.csv, instances.csv" + (", tracks.csv" if "tracks" in summary else "")
    print(f"replay_eval: wrote {args.out}/{written}, report.md")
    if summary.get("tracks", {}).get("scored"):
        print(track_line(summary["tracks"]))
    return 0


def check_options(args) -> None:
    """Every option before any work: ranges, the model file, an --out apart from the bag, and no option the
    chosen mode (offline or --live) would ignore."""
    check_shared_options(args)
    for option, value, low in (("--rate", args.rate, 0.0), ("--wait-for-node", args.wait_for_node, 0.0)):
        if not value > low:
            raise ValueError(f"--{option.lstrip('-')} {value}: must be > {low:g}")
    if not args.drain >= 0:
        raise ValueError(f"--drain {args.drain}: must be >= 0 seconds")
    ignored, mode = (OFFLINE_ONLY, "--live (the running node has its own model and settings)") if args.live \
        else (LIVE_ONLY, "offline (add --live to score a running node)")
    for name, default in ignored.items():
        value = getattr(args, name)
        if value != default:
            option = "--" + name.replace("_", "-")
            raise ValueError(f"{option}{'' if value is True else f' {value}'} would be ignored {mode}")
    if not args.live and args.depth_source == "ground-truth" and args.self_test != OFFLINE_ONLY["self_test"]:
        raise ValueError(f"--self-test {args.self_test} would be ignored with --depth-source ground-truth (no model runs)")
    check_output_apart(args.out, [args.bag], writes_bag=args.write_bag)


def summary_line(summary: dict) -> str:
    """frames, dropped, latency p50/p99, abs_rel, d1 on one line (the quick-start demo prints it)."""
    frames, metrics = summary["frames"], summary["metrics"]
    latency = summary["latency"].get("stamp_to_publication") or summary["latency"].get("total") or {}
    parts = [f"frames read {frames['read']}, scored {frames['scored']}, skipped {frames['skipped']}"]
    if frames.get("predicted_without_ground_truth"):
        parts.append(f"run without ground truth {frames['predicted_without_ground_truth']}")
    if "live" in summary:
        parts.append(f"dropped {summary['live']['dropped']}")
    if latency:
        parts.append(f"latency p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms")
    for name in ("abs_rel", "d1"):
        parts.append(f"{name} {metrics[name]:.4f}" if name in metrics else f"{name} n/a")
    return "replay_eval: " + "; ".join(parts)


def track_line(tracks: dict) -> str:
    """The track scoring on one line: identity, time-to-contact error, calibration."""
    identity, errors, calibration = tracks["identity"], tracks["errors"]["all"], tracks["calibration"]["actors"]

    def share(name):
        value = calibration[name]["within_one_std"]
        return "n/a" if value is None else f"{100 * value:.0f} %"

    ttc = errors["ttc_relative_error"]
    return (f"replay_eval: tracks: MOTA {identity['mota']:.3f}, IDF1 {identity['idf1']:.3f}, ID switches "
            f"{identity['num_switches']} (closing objects {identity['actor_switches']}); closing objects: median ttc "
            f"error {'n/a' if ttc is None else f'{100 * ttc:.1f} %'} (true ttc < 6 s), within one std: range rate "
            f"{share('range_rate')}, ttc {share('ttc')}")


if __name__ == "__main__":
    sys.exit(main())
