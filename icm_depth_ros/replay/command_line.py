"""Command-line options replay_eval and replay_fleet share: the topics, the model and the scoring."""
from __future__ import annotations

import argparse

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
    return TopicSelection(args.image_topic, args.camera_info_topic, args.depth_topic, args.instances_topic)
