"""What the node's three processing stages give on a GPU, simulated: frames served per second when the
camera sends more than the engine can take, against the two stages the node had before issue 21.

The engine is simulated: the demo model's outputs for the frame, returned after ``--engine-ms`` of sleep
(a GPU computes while the CPU is free; TensorRT's stream synchronisation sleeps too), so that only the
host work (pre-processing, mapping the depth back, building the output messages, instances) runs on the
CPU. One 1242x375 camera whose latest-frame slot is never empty; messages are built as the node builds
them (depth image, camera info, instance cloud) but not sent. "two stages" runs the inference thread as
before issue 21 (pre-process, infer, map back and publish the depth, then hand over to the instances);
"three stages" is the node's InferenceWorker.

    python bench/stage_overlap.py [--model M.onnx | --model-size 352x1216] [--engine-ms 25] [--seconds 8] [--json]

Without --model the shipped demo model (96x320); --model-size exports a random-weight ResNet-18 ICMDepthNet at
that size first (needs PyTorch), whose outputs (a 352x1216 depth to map back and publish) weigh more.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from json_output import peak_rss_mb, run_and_report  # noqa: E402


class SimulatedEngine:
    """The backend's interface; each call sleeps ``seconds`` and returns the real model's outputs for its input
    (computed once per distinct input by ONNX Runtime beforehand)."""

    def __init__(self, backend, seconds: float):
        self.backend, self.seconds = backend, seconds
        self.info, self.max_batch, self.description = backend.info, 1, f"simulated engine ({seconds * 1e3:.0f} ms)"
        self.outputs = None
        self.busy = 0.0

    def infer(self, batch):
        if self.outputs is None:
            self.outputs = self.backend.infer(batch)
        start = time.perf_counter()
        time.sleep(self.seconds)
        self.busy += time.perf_counter() - start
        return tuple(output.copy() for output in self.outputs)


class Channel:
    """What the worker uses of a CameraChannel; builds the node's output messages and counts them."""

    def __init__(self):
        from icm_depth_ros.node.frame_flow import FrameStatistics

        self.stats = FrameStatistics()
        self.depths = self.instances = 0
        self.rejected = []

    def labels_for(self, frame):
        return None

    def reject(self, error):
        self.rejected.append(str(error))

    def publish_depth(self, frame, result):
        from sensor_msgs.msg import CameraInfo, Image

        from icm_depth_ros.processing.image_conversion import fill_image

        fill_image(Image(header=frame.header), result.depth, "32FC1")
        CameraInfo(header=frame.header, height=375, width=1242, k=result.K.ravel().tolist())
        self.depths += 1

    def publish_instances(self, frame, result):
        from icm_depth_ros.instances.messages import instances_to_cloud

        instances_to_cloud(result.instances, frame.header)
        self.instances += 1


def two_stage_worker(worker_class):
    """The inference thread as before issue 21: depth_turn (pre-process, infer, map back, publish) and then
    the hand-over to the instance thread; no depth thread."""

    class TwoStages(worker_class):
        def start(self):
            self._threads = [self._threads[0], self._threads[2]]
            super().start()

        def _run_inference(self):
            while not self._stopped.is_set():
                taken = self.frames.take(self.max_batch, timeout=0.5)
                if taken:
                    self._hand_on(self._turns, self.depth_turn(taken))
            self._pass_stop(self._turns, self._threads[1])

    return TwoStages


def run_mode(mode: str, pipeline, engine, frame, seconds: float) -> dict:
    from types import SimpleNamespace

    from icm_depth_ros.node.frame_scheduler import RoundRobinFrames
    from icm_depth_ros.node.inference_worker import InferenceWorker

    worker_class = InferenceWorker if mode == "three stages" else two_stage_worker(InferenceWorker)
    channel, frames = Channel(), RoundRobinFrames(1)
    worker = worker_class(pipeline, [channel], frames, "clusters", logger=SimpleNamespace(error=print, info=print))
    stop = threading.Event()

    def camera():  # keeps the latest-frame slot full: the engine, not the camera, sets the rate
        from std_msgs.msg import Header

        index = 0
        while not stop.is_set():
            index += 1
            header = Header(frame_id="camera")
            header.stamp.sec = index
            frames.put(0, SimpleNamespace(header=header, rgb=frame["image"], K=frame["K"]))
            time.sleep(0.0005)

    feeder = threading.Thread(target=camera, daemon=True)
    feeder.start()
    worker.start()
    time.sleep(1.0)  # warm-up
    engine.busy, served, start = 0.0, channel.depths, time.perf_counter()
    time.sleep(seconds)
    elapsed, served, busy = time.perf_counter() - start, channel.depths - served, engine.busy
    stop.set()
    worker.stop(timeout=10)
    return {"frames_per_s": round(served / elapsed, 2), "engine_busy": round(busy / elapsed, 3),
            "host_ms_per_frame_outside_engine": round(1e3 * (elapsed - busy) / max(served, 1), 2),
            "rejected": len(channel.rejected)}


def measure(args: argparse.Namespace) -> dict:
    import rclpy  # noqa: F401 - the message classes need the ROS Python packages

    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig
    from training.data.synthetic import render_scene

    if args.model_size:
        import tempfile

        from node_overhead import export_random_model

        args.model = export_random_model(Path(tempfile.mkdtemp()) / "bench.onnx", *map(int, args.model_size.split("x")))
    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(args.model), backend="onnxruntime"))
    engine = SimulatedEngine(pipeline.backend, args.engine_ms / 1e3)
    pipeline.backend = engine
    frame = render_scene(3, (375, 1242))
    report = {"camera": "1242x375", "model": args.model_size or args.model.name, "engine_ms": args.engine_ms, "seconds": args.seconds}
    for mode in ("two stages", "three stages"):
        report[mode] = run_mode(mode, pipeline, engine, frame, args.seconds)
    report["speed_up"] = round(report["three stages"]["frames_per_s"] / report["two stages"]["frames_per_s"], 3)
    report["peak_rss_mb"] = peak_rss_mb()
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo" / "icm_demo.onnx")
    parser.add_argument("--model-size", default="", help="HxW: export a random-weight model of this size instead")
    parser.add_argument("--engine-ms", type=float, default=25.0, help="simulated engine time per frame")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per mode (after 1 s warm-up)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args(argv)
    if args.engine_ms <= 0 or args.seconds <= 0:
        parser.error(f"--engine-ms {args.engine_ms} and --seconds {args.seconds} must be > 0")
    if args.model_size and not all(part.isdigit() for part in args.model_size.split("x", 1)):
        parser.error(f"--model-size {args.model_size!r} is not HxW, e.g. 352x1216")
    if not args.model_size and not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    return run_and_report(measure, args)


if __name__ == "__main__":
    main()
