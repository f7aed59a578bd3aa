"""Command-line options replay_eval and replay_fleet share: the topics, the model and the scoring."""
from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

from icm_depth_ros.replay.bag_reader import TopicSelection


def add_topic_options(parser: argparse.ArgumentParser) -> None:
    topics = parser.add_argument_group("topics (one camera; a bag may hold several)")
    topics.add_argument("--image-topic", default="/camera/image_raw", help="sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8 or mono8")
    topics.add_argument("--camera-info-topic", default="/camera/camera_info",
                        help="sensor_msgs/CameraInfo ('' = none: instance centroids x/y are NaN)")
    topics.add_argument("--depth-topic", default="/camera/depth_gt",
                        help="ground truth, sensor_msgs/Image 32FC1 metres or 16UC1 millimetres "
                             "('' = none: the drive is run and reported, not scored)")
    topics.add_argument("--instances-topic", default="",
                        help="instance labels, sensor_msgs/Image mono16/16UC1/32SC1, 0 = background ('' = none)")
    topics.add_argument("--truth-topic", default="",
                        help="per-instance truth over time, sensor_msgs/PointCloud2 (synthetic closing-object drives: "
                             "/camera/instances_truth); scores the tracks ('' = none: tracks.csv only)")


def add_model_options(parser: argparse.ArgumentParser, title: str = "model", threads: bool = True):
    """The group, for the caller's own model options. threads False: the caller sets ONNX Runtime's threads
    itself (replay_fleet: the task's CPUs)."""
    model = parser.add_argument_group(title)
    model.add_argument("--model", default="", help="exported .onnx (or TensorRT engine) file")
    model.add_argument("--backend", default="onnxruntime", choices=("auto", "onnxruntime", "tensorrt"))
    if threads:
        model.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    model.add_argument("--resize-policy", default="crop", choices=("resize", "crop", "letterbox"),
                       help="camera image -> model input, as the node's parameter")
    return model


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    scoring = parser.add_argument_group("scoring")
    scoring.add_argument("--min-depth", type=float, default=1e-3, help="ground truth counted above this (m)")
    scoring.add_argument("--max-depth", type=float, default=80.0, help="depth cap: ground truth counted below this (m)")
    scoring.add_argument("--crop", default="none", choices=("none", "garg"), help="evaluation crop")
    scoring.add_argument("--stamp-tolerance", type=float, default=0.005,
                         help="seconds between an image's and its ground truth's header stamps")
    scoring.add_argument("--samples", type=int, default=4, help="frames drawn in report.md")


def topic_selection(args: argparse.Namespace) -> TopicSelection:
    return TopicSelection(args.image_topic, args.camera_info_topic, args.depth_topic, args.instances_topic,
                          args.truth_topic)


def check_shared_options(args: argparse.Namespace) -> None:
    """The shared options' values, before any work: ValueError naming the option, the value and what is allowed."""
    if not (math.isfinite(args.stamp_tolerance) and args.stamp_tolerance >= 0):
        raise ValueError(f"--stamp-tolerance {args.stamp_tolerance}: must be a number of seconds >= 0 "
                         "(a negative one pairs no frame)")
    if getattr(args, "min_instance_pixels", 1) < 1:
        raise ValueError(f"--min-instance-pixels {args.min_instance_pixels}: must be >= 1")
    if args.samples < 0:
        raise ValueError(f"--samples {args.samples}: must be >= 0")
    if getattr(args, "threads", 0) < 0:
        raise ValueError(f"--threads {args.threads}: must be >= 0 (0 = ONNX Runtime's default)")
    if not (math.isfinite(args.min_depth) and math.isfinite(args.max_depth) and 0 < args.min_depth < args.max_depth):
        raise ValueError(f"--min-depth {args.min_depth} / --max-depth {args.max_depth}: the depth range needs 0 < min < max (metres)")
    if getattr(args, "truth_topic", "") and importlib.util.find_spec("motmetrics") is None:
        raise ValueError(f"--truth-topic {args.truth_topic}: scoring tracks needs motmetrics, a workstation package "
                         "not in requirements-node.txt (pip install motmetrics==1.4.0)")
    if args.model:
        model = Path(args.model)
        if not model.is_file():
            raise ValueError(f"--model {model}: no such file")


def check_output_apart(out: str, inputs: list[str | Path], option: str = "--out", writes_bag: bool = False) -> None:
    """``out`` must be neither an input nor inside one (a rosbag2 folder), and with ``writes_bag`` OUT/bag
    (--write-bag's copy) must not be one: writing there would change what is read. A folder that merely
    holds a bag is fine."""
    target = Path(out).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if target == source or source in target.parents or (writes_bag and source == target / "bag"):
            raise ValueError(f"{option} {out}: it would write into the input {given}; choose a folder apart from it")
