"""Real-time figures of depth_node over a real ROS graph, side by side with the transport floor (an echo node).

The nodes run as their own processes (shared-memory Fast DDS profile, private ROS_DOMAIN_ID, localhost
discovery); this script publishes 1242x375 rgb8 frames stamped with the send time, on every camera at
the same instant, and measures stamp -> arrival of each camera's depth/image here. Each target runs
in turn on the same frames: ``echo`` (bench/echo_node.py: publishes a same-size 32FC1 image at once,
the floor), ``node`` (one depth_node; with --cameras, one process serving every camera) and, with
--cameras, ``per_camera`` (one depth_node process per camera namespace, as the launch file does on request).

    python bench/node_realtime.py [--model M.onnx | --model-size 352x1216 | --model-config C.yaml [--dynamic-batch]]
        [--frames 300] [--rate 30]
        [--cameras front,left,right] [--targets echo node per_camera] [--node-param name:=value ...] [--json]

Per target and camera: frames sent / published, processed share, latency p50/p99 after a 1 s warm-up
(depth/image; depth/instances, published after it, separately),
the node's own dropped/received counts and inference p50/p99 (/diagnostics); per target: CPU seconds
of its processes over the run, RSS after warm-up / at the end / peak (summed over its processes).
Without --model a random-weight ResNet-18 model is exported at --model-size, or with --model-config the
network of that training config (random weights; --dynamic-batch: one inference for every waiting camera)
(both need PyTorch).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from json_output import process_peak_rss_mb, run_and_report  # noqa: E402

from icm_depth_ros.node.local_graph import BENCH_DOMAIN_IDS, local_ros_environment, pick_domain_id, stop_process  # noqa: E402

WARMUP_S = 1.0  # frames sent in the first second are not counted (ONNX Runtime's first runs are slow)
DRAIN_S = 5.0  # after the last frame, wait this long for late outputs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--model-size", default="352x1216", help="HxW of the random model exported without --model")
    parser.add_argument("--model-config", type=Path, help="export this training config's network (random weights)")
    parser.add_argument("--dynamic-batch", action="store_true", help="--model-config: export with a dynamic batch")
    parser.add_argument("--camera-size", default="375x1242", help="HxW of the published frames")
    parser.add_argument("--frames", type=int, default=300, help="frames per camera")
    parser.add_argument("--rate", type=float, default=30.0, help="Hz per camera")
    parser.add_argument("--cameras", default="", help="comma-separated namespaces; empty = one camera, no namespace")
    parser.add_argument("--targets", nargs="+", default=None, help="echo, node, per_camera (default: all that apply)")
    parser.add_argument("--node-param", action="append", default=[], help="extra depth_node parameter name:=value")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    return run_and_report(measure, args)


def measure(args: argparse.Namespace) -> dict:
    from node_overhead import export_config_model, export_random_model

    if args.dynamic_batch and not args.model_config:
        raise SystemExit("node_realtime: --dynamic-batch needs --model-config (an exported --model has its batch fixed)")
    if args.model:
        model = args.model
    elif args.model_config:
        model = export_config_model(Path(tempfile.mkdtemp()) / "bench.onnx", args.model_config, args.dynamic_batch)
    else:
        model = export_random_model(Path(tempfile.mkdtemp()) / "bench.onnx", *map(int, args.model_size.split("x")))
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    targets = args.targets or (["echo", "node", "per_camera"] if cameras else ["echo", "node"])
    env = local_ros_environment(pick_domain_id(BENCH_DOMAIN_IDS))
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE")})
    import rclpy

    rclpy.init()
    try:
        harness = Harness(cameras, tuple(map(int, args.camera_size.split("x"))))
        report = {"model": f"{args.model_config} (random weights)" if args.model_config else str(model),
                  "dynamic_batch": args.dynamic_batch,
                  "camera_size": args.camera_size, "rate_hz": args.rate,
                  "frames_per_camera": args.frames, "cameras": cameras or [""], "node_parameters": args.node_param,
                  "load_average_start": os.getloadavg()[0], "targets": {}}
        for target in targets:
            commands = target_commands(target, cameras, model, args.node_param)
            report["targets"][target] = harness.run(commands, env, args.frames, args.rate)
        report["load_average_end"] = os.getloadavg()[0]
        return report
    finally:
        rclpy.shutdown()


def target_commands(target: str, cameras: list[str], model: Path, node_parameters: list[str]) -> list[list[str]]:
    """The processes of one target, each a command line."""
    python = sys.executable
    if target == "echo":
        return [[python, str(ROOT / "bench" / "echo_node.py"), "--cameras", ",".join(cameras)]]
    node = [python, "-m", "icm_depth_ros.depth_node", "--ros-args", "-p", f"model_path:={model}",
            "-p", "backend:=onnxruntime"] + [arg for value in node_parameters for arg in ("-p", value)]
    if target == "node":
        return [node + (["-p", f"cameras:=[{','.join(cameras)}]"] if cameras else [])]
    if target == "per_camera":
        return [node + ["-r", f"__ns:=/{camera}"] for camera in cameras]
    raise SystemExit(f"unknown target {target!r} (echo, node, per_camera)")


class Harness:
    """The bench's side of the graph: one image publisher and one depth/image subscription per camera."""

    def __init__(self, cameras: list[str], camera_size: tuple[int, int]):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2

        from icm_depth_ros.processing.image_conversion import fill_image
        from training.data.synthetic import render_scene

        self.rclpy = rclpy
        self.node = rclpy.create_node("realtime_bench")
        self.cameras = cameras or [""]
        self.publishers, self.arrivals, self.instance_arrivals = {}, {}, {}
        for camera in self.cameras:
            prefix = f"{camera}/" if camera else ""
            self.publishers[camera] = self.node.create_publisher(Image, f"{prefix}image", qos_profile_sensor_data)
            self.arrivals[camera], self.instance_arrivals[camera] = [], []
            self.node.create_subscription(Image, f"{prefix}depth/image", self._recorder(self.arrivals[camera]), 10)
            self.node.create_subscription(PointCloud2, f"{prefix}depth/instances",
                                          self._recorder(self.instance_arrivals[camera]), 10)
        self.diagnostics: list = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        images = [render_scene(seed, camera_size)["image"] for seed in range(8)]
        self.messages = [fill_image(Image(), image, "rgb8") for image in images]

    @staticmethod
    def _recorder(arrivals: list):
        def record(msg) -> None:
            now = time.time()
            arrivals.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, now))
        return record

    def run(self, commands: list[list[str]], env: dict, frames: int, rate: float) -> dict:
        import psutil

        for values in (*self.arrivals.values(), *self.instance_arrivals.values()):
            values.clear()
        self.diagnostics.clear()
        logs = [open(Path(tempfile.mkdtemp()) / "target.log", "w") for _ in commands]
        processes = [subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                     for command, log in zip(commands, logs)]
        try:
            self._wait_for_subscribers(processes, logs)
            watched = [psutil.Process(p.pid) for p in processes]
            sent: dict[str, list[float]] = {camera: [] for camera in self.cameras}
            period, start = 1.0 / rate, time.monotonic()
            rss_start = cpu_start = None
            for index in range(frames):
                while time.monotonic() < start + index * period:
                    self.rclpy.spin_once(self.node, timeout_sec=max(0.0, start + index * period - time.monotonic()))
                now = time.time()
                for camera in self.cameras:
                    msg = self.messages[index % len(self.messages)]
                    msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
                    msg.header.frame_id = f"{camera or 'camera'}_optical"
                    self.publishers[camera].publish(msg)
                    sent[camera].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
                if rss_start is None and index * period >= WARMUP_S:
                    rss_start = sum(p.memory_info().rss for p in watched) / 2**20
                    cpu_start = sum(sum(p.cpu_times()[:2]) for p in watched)
            deadline = time.monotonic() + DRAIN_S
            while time.monotonic() < deadline:
                self.rclpy.spin_once(self.node, timeout_sec=0.05)
            cpu_s = sum(sum(p.cpu_times()[:2]) for p in watched) - (cpu_start or 0.0)
            rss_end = sum(p.memory_info().rss for p in watched) / 2**20
            peak = sum(process_peak_rss_mb(p.pid) or 0.0 for p in processes)
        finally:
            for process in processes:
                stop_process(process)
            for log in logs:
                log.close()
        result = {"processes": len(processes), "cpu_s": round(cpu_s, 1), "rss_start_mb": round(rss_start or 0.0, 1),
                  "rss_end_mb": round(rss_end, 1), "rss_peak_mb": round(peak, 1), "cameras": {}}
        measured_after = sent[self.cameras[0]][0] + WARMUP_S
        for camera in self.cameras:
            result["cameras"][camera] = self._camera_figures(camera, sent[camera], measured_after)
        return result

    def _camera_figures(self, camera: str, sent: list[float], measured_after: float) -> dict:
        stamps = [s for s in sent if s >= measured_after]
        latencies = np.array([arrival - stamp for stamp, arrival in self.arrivals[camera] if stamp >= measured_after]) * 1e3
        figures = {"sent": len(stamps), "published": int(latencies.size),
                   "processed_share": round(latencies.size / max(len(stamps), 1), 3)}
        if latencies.size:
            figures["latency_p50_ms"] = round(float(np.percentile(latencies, 50)), 1)
            figures["latency_p99_ms"] = round(float(np.percentile(latencies, 99)), 1)
        instances = np.array([arrival - stamp for stamp, arrival in self.instance_arrivals[camera]
                              if stamp >= measured_after]) * 1e3
        if instances.size:  # depth/instances follows depth/image (the echo node publishes none)
            figures["instances_latency_p50_ms"] = round(float(np.percentile(instances, 50)), 1)
            figures["instances_latency_p99_ms"] = round(float(np.percentile(instances, 99)), 1)
        name = f"/{camera}/" if camera else "/"
        for array in reversed(self.diagnostics):  # the node's last word on this camera
            status = next((s for s in array.status if s.name.startswith(name) or f" {camera} " in f" {s.name} "
                           or (not camera and s.name.endswith(": depth"))), None)
            if status is not None:
                values = {kv.key: kv.value for kv in status.values}
                for key in ("received_frames", "dropped_frames", "inference_p50_ms", "inference_p99_ms"):
                    if key in values:
                        figures[f"node_{key}"] = float(values[key])
                break
        return figures

    def _wait_for_subscribers(self, processes, logs, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(p.get_subscription_count() > 0 for p in self.publishers.values()):
            self.rclpy.spin_once(self.node, timeout_sec=0.1)
            for process, log in zip(processes, logs):
                if process.poll() is not None:
                    raise SystemExit(f"target exited: {Path(log.name).read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit("no subscriber on every image topic within 120 s")
        time.sleep(1.0)  # let every camera's publisher discover its subscriber


if __name__ == "__main__":
    main()
