"""ONNX Runtime's intra-op thread settings beside a busy Python thread, as in the node on 2 cores.

One thread runs the model back to back while another runs instance_statistics on 64 cluster instances at
1242x375 (the node's instance thread). Per setting (intra-op threads 0 = ORT's default / 1, spinning on /
off): inference alone, inference and instance statistics while both run (median ms, runs per second).

    python bench/ort_spinning.py [--model models/demo/icm_demo.onnx] [--seconds 4] [--json]
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "test" / "icm_depth_ros" / "instances")]
from json_output import run_and_report  # noqa: E402

SETTINGS = ((0, True), (0, False), (1, True), (1, False))  # (intra-op threads, spinning)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo" / "icm_demo.onnx")
    parser.add_argument("--seconds", type=float, default=4.0, help="per setting, both threads running")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    return run_and_report(measure, parser.parse_args(argv))


def measure(args: argparse.Namespace) -> dict:
    import onnxruntime as ort
    from test_instance_statistics import K, cluster_labels, depth_map  # the fixed 64-instance inputs

    from icm_depth_ros.instances.statistics import instance_statistics

    depth, (labels, firmness) = depth_map(0), cluster_labels(0)
    report = {"model": str(args.model), "seconds": args.seconds, "settings": {}}
    for threads, spinning in SETTINGS:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
        shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
        pixels = session.get_inputs()[0].type == "tensor(uint8)"  # the model's pixel format (contract.py)
        image = (np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8) if pixels
                 else np.random.default_rng(0).random(shape, dtype=np.float32))
        alone = [_timed(lambda: session.run(None, {"image": image})) for _ in range(20)][3:]
        stop, statistics = threading.Event(), []

        def instances_loop() -> None:
            while not stop.is_set():
                statistics.append(_timed(lambda: instance_statistics(depth, labels, K, firmness, 50)))

        thread = threading.Thread(target=instances_loop)
        thread.start()
        inference, start = [], time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            inference.append(_timed(lambda: session.run(None, {"image": image})))
        stop.set()
        thread.join()
        report["settings"][f"threads={threads or 'default'} spinning={'on' if spinning else 'off'}"] = {
            "inference_alone_ms": round(float(np.median(alone)) * 1e3, 1),
            "inference_beside_ms": round(float(np.median(inference)) * 1e3, 1),
            "inference_per_s": round(len(inference) / args.seconds, 1),
            "instances_beside_ms": round(float(np.median(statistics)) * 1e3, 1),
            "instances_per_s": round(len(statistics) / args.seconds, 1),
        }
    return report


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
