"""Node overhead against bare backend inference, per frame, at 1242x375 on this machine.

overhead = image message -> array, pre-processing, post-processing, instance statistics, building and
publishing the output messages (depth/image, depth/camera_info, depth/instances). Goal: <= 10% of inference.
Issue 21's goals for the host work around an engine: conversion + preprocess + postprocess + publish <= 3.0 ms
("host_ms") and instances <= 4.0 ms; "input_bytes" is what one frame uploads to the model (uint8 pixels for a
model exported since issue 21, float32 before).

    python bench/node_overhead.py [--model M.onnx] [--frames 20] [--threads 0] [--json]
Prints the report as indented JSON; --json prints it as one line and keeps everything else off stdout.
Without --model a random-weight ResNet-18 ICMDepthNet is exported at 352x1216 (needs PyTorch; the node does not).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from json_output import peak_rss_mb, run_and_report  # noqa: E402

HOST_STAGES = ("conversion", "preprocess", "postprocess", "publish")  # the host's work around the engine
HOST_GOAL_MS, INSTANCES_GOAL_MS = 3.0, 4.0  # issue 21


def export_random_model(path: Path, height: int, width: int) -> Path:
    import torch

    from training.exporting.onnx_export import export_onnx
    from training.model import ICMDepthNet

    torch.manual_seed(0)
    model = ICMDepthNet("resnet18", img_size=(height, width)).eval()
    with torch.no_grad():
        model.predictors[0].head.weight.normal_(0.0, 0.05)
    export_onnx(model, path, height, width, config_name="bench_random_resnet18")
    return path


def export_config_model(path: Path, config_path: Path, dynamic_batch: bool = False) -> Path:
    """The network a training config describes (e.g. the demo model's), random weights, at the config's size:
    the same compute as a model trained with it; with ``dynamic_batch`` several cameras share one inference."""
    import torch

    from training.config import build_model, load_config
    from training.exporting.onnx_export import export_onnx

    torch.manual_seed(0)
    config = load_config(config_path)
    model = build_model(config, pretrained=False).eval()
    height, width = config.model.img_size
    export_onnx(model, path, height, width, config_name=f"bench_random_{Path(config_path).stem}",
                dynamic_batch=dynamic_batch)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--model-size", default="352x1216")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    return run_and_report(measure, args)


def measure(args: argparse.Namespace) -> dict:
    model = args.model or export_random_model(Path(tempfile.mkdtemp()) / "bench.onnx",
                                              *map(int, args.model_size.split("x")))

    import rclpy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from icm_depth_ros.processing.image_conversion import fill_image
    from icm_depth_ros.node.input_checks import decode_color_image
    from icm_depth_ros.instances.messages import instances_to_cloud
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig
    from training.data.synthetic import render_scene

    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(model), backend="onnxruntime",
                                                        threads=args.threads))
    rclpy.init()
    node = rclpy.create_node("overhead_bench")
    publishers = [node.create_publisher(kind, topic, 2) for kind, topic in
                  ((Image, "depth/image"), (CameraInfo, "depth/camera_info"), (PointCloud2, "depth/instances"))]
    frames = [render_scene(seed, (375, 1242)) for seed in range(4)]
    messages = [fill_image(Image(), f["image"], "rgb8") for f in frames]
    stages = {name: [] for name in ("conversion", "preprocess", "inference", "postprocess", "instances", "publish")}
    bare = []
    for index in range(args.frames + 2):  # 2 warm-up frames
        frame, msg = frames[index % 4], messages[index % 4]
        start = time.perf_counter()
        rgb = decode_color_image(msg, "image", 1 << 24)
        conversion = time.perf_counter() - start
        result = pipeline.process(rgb, frame["K"])
        start = time.perf_counter()
        depth_msg = fill_image(Image(header=msg.header), result.depth, "32FC1")
        info = CameraInfo(header=msg.header, height=375, width=1242, k=result.K.ravel().tolist())
        cloud = instances_to_cloud(result.instances, msg.header)
        for publisher, out in zip(publishers, (depth_msg, info, cloud)):
            publisher.publish(out)
        publish = time.perf_counter() - start
        start = time.perf_counter()
        pipeline.backend.infer(pipeline._input_buffer(1))  # bare inference on the same input, for the ratio
        bare_s = time.perf_counter() - start
        if index >= 2:
            for name, value in (("conversion", conversion), ("publish", publish), *result.timings.items()):
                stages[name].append(value)
            bare.append(bare_s)
    median = {name: float(np.median(values)) * 1e3 for name, values in stages.items()}
    overhead = sum(v for k, v in median.items() if k != "inference")
    host = sum(median[name] for name in HOST_STAGES)
    inference = float(np.median(bare)) * 1e3
    report = {"camera": "1242x375", "model_input": f"{pipeline.model_size[0]}x{pipeline.model_size[1]}",
              "backend": pipeline.backend.description, "frames": args.frames,
              "median_ms": {k: round(v, 2) for k, v in median.items()}, "bare_inference_ms": round(inference, 1),
              "overhead_ms": round(overhead, 2), "overhead_ratio": round(overhead / inference, 4),
              "host_ms": round(host, 2), "goals_ms": {"host": HOST_GOAL_MS, "instances": INSTANCES_GOAL_MS},
              "pixel_format": pipeline.backend.info.pixel_format, "input_bytes": int(pipeline._input_buffer(1).nbytes),
              "instances_per_frame": len(result.instances), "peak_rss_mb": peak_rss_mb()}
    node.destroy_node()
    rclpy.shutdown()
    return report


if __name__ == "__main__":
    main()
