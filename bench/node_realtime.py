"""depth_node fed at 30 Hz: processed rate, dropped frames, latency p50/p99, resident memory start/end.

The node runs as its own process (python -m icm_depth_ros.depth_node, shared-memory Fast DDS profile,
private ROS_DOMAIN_ID, localhost discovery); this script publishes 1242x375 rgb8 frames stamped with the
send time and measures stamp -> arrival of depth/image here. Goals: p99 <= 2x one inference; RSS flat.

    python bench/node_realtime.py [--model M.onnx] [--model-size 352x1216] [--frames 2000] [--rate 30] [--json]

Prints the report as indented JSON; --json prints it as one line and keeps everything else off stdout.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from json_output import process_peak_rss_mb, run_and_report  # noqa: E402

from icm_depth_ros.local_graph import local_ros_environment, stop_process  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--model-size", default="352x1216")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    return run_and_report(measure, args)


def measure(args: argparse.Namespace) -> dict:
    from node_overhead import export_random_model

    model = args.model or export_random_model(Path(tempfile.mkdtemp()) / "bench.onnx",
                                              *map(int, args.model_size.split("x")))
    env = local_ros_environment(random.randint(100, 200))
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")})
    log = open(Path(tempfile.mkdtemp()) / "node.log", "w")
    node_process = subprocess.Popen([sys.executable, "-m", "icm_depth_ros.depth_node", "--ros-args", "-p",
                                     f"model_path:={model}", "-p", "backend:=onnxruntime"], env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
    import psutil
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from icm_depth_ros.image_conversion import fill_image
    from training.data.synthetic import render_scene

    rclpy.init()
    node = rclpy.create_node("realtime_bench")
    publisher = node.create_publisher(Image, "image", qos_profile_sensor_data)
    latencies, diagnostics = [], []
    node.create_subscription(Image, "depth/image", lambda m: latencies.append(
        time.time() - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)), 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    try:
        while publisher.get_subscription_count() == 0:
            rclpy.spin_once(node, timeout_sec=0.1)
            if node_process.poll() is not None:
                raise SystemExit(f"node exited: {Path(log.name).read_text()}")
        images = [render_scene(seed, (375, 1242))["image"] for seed in range(8)]
        messages = [fill_image(Image(), image, "rgb8") for image in images]
        memory = psutil.Process(node_process.pid)
        rss = {}
        period, start = 1.0 / args.rate, time.monotonic()
        for index in range(args.frames):
            while time.monotonic() < start + index * period:
                rclpy.spin_once(node, timeout_sec=max(0.0, start + index * period - time.monotonic()))
            msg = messages[index % len(messages)]
            now = time.time()
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            msg.header.frame_id = "camera_optical"
            publisher.publish(msg)
            if index == args.frames // 10:  # after warm-up (onnxruntime grows its arena over the first runs)
                rss["start_mb"] = memory.memory_info().rss / 2**20
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        rss["end_mb"] = memory.memory_info().rss / 2**20
        rss["peak_mb"] = process_peak_rss_mb(node_process.pid)
        duration = args.frames / args.rate
        values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics else {}
        lat = np.array(latencies) * 1e3
        report = {
            "frames_sent": args.frames, "rate_hz": args.rate, "model": str(model),
            "frames_published_by_node": len(latencies), "processed_rate_hz": round(len(latencies) / duration, 2),
            "dropped_frames_node": values.get("dropped_frames"), "received_by_node": values.get("received_frames"),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1), "latency_p99_ms": round(float(np.percentile(lat, 99)), 1),
            "inference_p50_ms_node": values.get("inference_p50_ms"), "inference_p99_ms_node": values.get("inference_p99_ms"),
            "rss_start_mb": round(rss["start_mb"], 1), "rss_end_mb": round(rss["end_mb"], 1),
            "rss_peak_mb": rss["peak_mb"],
        }
        return report
    finally:
        stop_process(node_process)
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    main()
