"""replay_eval: score the depth node on a recorded drive (rosbag2 sqlite3/mcap or ROS 1 bag).

Offline (default): reads the bag with rosbags and runs the node's DepthPipeline on every image, no ROS
graph needed. Live (--live): plays the bag's camera topics into a ROS graph at the recorded rate and
scores what a running depth_node publishes. Both write metrics.json, frames.csv, instances.csv and
report.md to --out. A drive without ground truth (--depth-topic '') is run and reported, not scored;
without camera_info (--camera-info-topic '') instance centroids have no x/y. See docs/replay.md.

    replay_eval BAG --image-topic /camera/image_raw --camera-info-topic /camera/camera_info \\
        --depth-topic /camera/depth_gt [--instances-topic /camera/instances] --model model.onnx --out DIR
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
                "output_namespace": None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay_eval", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or mcap) or ROS 1 .bag file")
    add_topic_options(parser)
    add_model_options(parser, "model (offline)")
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
            if not args.model:
                raise ValueError("--model is required offline: an exported .onnx file (or --live to score a running node)")
            from icm_depth_ros.replay.offline import ReplayOptions, run_offline

            summary = run_offline(ReplayOptions(
                bag=args.bag, topics=topics, model_path=args.model, backend=args.backend, threads=args.threads,
                resize_policy=args.resize_policy, min_depth=args.min_depth, max_depth=args.max_depth,
                crop=args.crop, stamp_tolerance_s=args.stamp_tolerance, out=args.out, write_bag=args.write_bag,
                output_namespace=args.output_namespace, samples=args.samples, progress=not args.no_progress))
    except (BagError, ValueError, RuntimeError, TimeoutError) as error:  # ModelLoadError is a RuntimeError
        if args.debug:
            raise
        print(f"replay_eval: error: {error}", file=sys.stderr)
        return 2
    print(summary_line(summary))
    print(f"replay_eval: wrote {args.out}/metrics.json, frames.csv, instances.csv, report.md")
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
    check_output_apart(args.out, [args.bag])


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


if __name__ == "__main__":
    sys.exit(main())
