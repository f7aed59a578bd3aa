"""The quick-start demo: the depth node on ONNX Runtime (CPU), fed over a real ROS 2 graph by a synthetic drive.

    bash scripts/demo.sh [--frames 60] [--rate 1.0] [--instance-source topic|clusters] [--out outputs/demo]

1. renders a synthetic drive (10 Hz, 192 x 640, a seed no training scene uses) into a rosbag2, once;
2. starts ``depth_node`` in its own process with the shipped demo model (models/demo/), in namespace
   /demo, on a private ROS_DOMAIN_ID with localhost-only discovery and the shared-memory transport;
3. plays the drive into the graph at the recorded rate with ``replay_eval --live``, which listens to
   what the node publishes and scores it against the drive's true depth;
4. prints a summary (frames, dropped, latency, abs_rel, d1) and leaves a report folder with
   metrics.json, frames.csv, report.md and contact_sheet.png (image | depth | instances with distances).

With ``--instance-source topic`` (default) the drive's instance label image plays the part of a
segmentation node feeding the node's ``instances`` topic; ``clusters`` uses the network's own clusters.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icm_depth_ros.node.local_graph import DEMO_DOMAIN_IDS, local_ros_environment, pick_domain_id, stop_process  # noqa: E402

MODEL = ROOT / "models" / "demo" / "icm_demo.onnx"
DRIVE_SEED = 90210  # not among the training (0..) or validation (1,000,000..) scene seeds
NAMESPACE = "/demo"


def render_drive(bag: Path, frames: int, size: tuple[int, int]) -> None:
    """Writes the drive once; a second run reuses it."""
    if (bag / "metadata.yaml").is_file():
        return
    from training.data.synthetic import render_sequence, write_bag

    print(f"demo: rendering a {frames}-frame synthetic drive at {size[0]}x{size[1]} into {bag}", flush=True)
    write_bag(bag, render_sequence(frames, size=size, seed=DRIVE_SEED))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="length of the drive at 10 Hz")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed, multiple of 10 Hz")
    parser.add_argument("--instance-source", choices=("topic", "clusters"), default="topic")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "demo")
    args = parser.parse_args()
    if args.frames < 1:
        parser.error(f"--frames {args.frames}: must be >= 1 (frames of the drive at 10 Hz)")
    if not args.rate > 0:
        parser.error(f"--rate {args.rate}: must be > 0 (a multiple of the recorded 10 Hz)")
    if not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: exists and is not a folder")

    bag = args.out / f"drive_{args.frames}_frames"
    render_drive(bag, args.frames, (192, 640))
    report = args.out / "report"
    env = local_ros_environment(pick_domain_id(DEMO_DOMAIN_IDS))  # apart from the tests' and benchmarks'
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    node_log = args.out / "depth_node.log"
    parameters = {"model_path": str(args.model), "backend": "onnxruntime",
                  "instance_source": args.instance_source}
    node_command = [sys.executable, "-m", "icm_depth_ros.depth_node", "--ros-args", "-r", f"__ns:={NAMESPACE}"]
    for name, value in parameters.items():
        node_command += ["-p", f"{name}:={value}"]
    print(f"demo: starting depth_node in {NAMESPACE} (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, model {args.model.name}, "
          f"ONNX Runtime on the CPU); its log: {node_log}", flush=True)
    with open(node_log, "w") as log:
        node = subprocess.Popen(node_command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            replay = [sys.executable, "-m", "icm_depth_ros.replay_eval", str(bag), "--live",
                      "--node-namespace", NAMESPACE, "--rate", str(args.rate), "--out", str(report),
                      "--wait-for-node", "60", "--samples", "4"]
            if args.instance_source == "topic":
                replay += ["--instances-topic", "/camera/instances"]
            started = time.monotonic()
            result = subprocess.run(replay, env=env)
            elapsed = time.monotonic() - started
        finally:
            stop_process(node)
    if result.returncode != 0:
        print(f"demo: replay_eval failed (exit {result.returncode}); the node's log is {node_log}", file=sys.stderr)
        return result.returncode
    summarise(report, elapsed)
    return 0


def summarise(report: Path, elapsed: float) -> None:
    metrics = json.loads((report / "metrics.json").read_text())
    frames, figures, live = metrics["frames"], metrics["metrics"], metrics["live"]
    latency = metrics["latency"].get("stamp_to_publication") or {}
    print()
    print("demo summary")
    print(f"  frames     published {live['published']}, answered by the node {live['received']}, scored "
          f"{frames['scored']}, dropped {live['dropped']} (latest frame only: a CPU slower than the camera drops "
          f"frames, never queues them)")
    if latency:
        print(f"  latency    stamp to publication p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms")
    print(f"  accuracy   abs_rel {figures['abs_rel']:.3f}, d1 {figures['d1']:.3f}"
          + (f", d1 on instances {figures['d1_instance']:.3f}" if figures.get("d1_instance") is not None else ""))
    print(f"  report     {report}/report.md, contact sheet {report}/contact_sheet.png ({elapsed:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
