"""Run every benchmark of the project, one after another, and write OUT/benchmarks.json and OUT/benchmarks.md.

    python bench/run_all.py [--quick] [--out docs/bench_report] [--summary docs/benchmarks.md] [--only inference ...]

Each script runs as its own process with --json (sequentially, so that they do not compete for the CPU);
its JSON object, command line, wall time and the load average before it started go into the report, with
the machine's facts (cores, CPU, memory, load average at start and end, torch / onnxruntime versions,
date, git commit). SETTINGS sizes the full run to about 25 minutes on a 2-core machine and --quick to about
4 minutes (fewer frames and steps, smaller sizes; the report states the arguments used). A script that
fails or runs past its time limit is reported as failed with the tail of its stderr; the others still run,
and run_all exits with status 1 at the end.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from markdown_report import render_markdown, render_realtime_summary, render_tracking_summary  # noqa: E402

SUMMARY_BEGIN = "<!-- bench/run_all.py: real-time tables (regenerated; edit outside these markers) -->"
SUMMARY_END = "<!-- end of bench/run_all.py tables -->"
TRACKING_BEGIN = "<!-- bench/run_all.py: tracking tables (regenerated; edit outside these markers) -->"
TRACKING_END = "<!-- end of bench/run_all.py tracking tables -->"

# name: (script, full-run arguments, quick-run arguments). Order = run order, cheapest-to-disturb first.
# Full-run estimates on an idle 2-core machine in the comments; --quick keeps every benchmark but with
# a few frames / steps and smaller training and node sizes.
SETTINGS = {
    "inference": (  # ~4 min: 2 sizes x 3 backends x 22 frames, plus export and INT8 calibration per size
        "inference.py",
        ["--sizes", "192x640", "352x1216", "--frames", "20", "--warmup", "2", "--threads", "2", "--calib-scenes", "4"],
        ["--sizes", "192x640", "352x1216", "--frames", "3", "--warmup", "1", "--threads", "2", "--calib-scenes", "1"],
    ),
    "export_variants": (  # ~3 min: fp32 / fp16 / INT8 accuracy and speed on 16 scenes
        "export_variants.py",
        ["--height", "192", "--width", "640", "--scenes", "16", "--calib-scenes", "8", "--threads", "2"],
        ["--height", "96", "--width", "320", "--scenes", "2", "--calib-scenes", "1", "--threads", "2"],
    ),
    "node_overhead": (  # ~2 min: 1242x375 camera, 352x1216 model
        "node_overhead.py",
        ["--model-size", "352x1216", "--frames", "20", "--threads", "2"],
        ["--model-size", "192x640", "--frames", "3", "--threads", "2"],
    ),
    "resize": (  # ~5 s: the 1242x375 -> 1216x352 model input by cv2's INTER_AREA and by the compiled kernel
        "resize.py", ["--repeats", "200"], ["--repeats", "20"],
    ),
    "stage_overlap": (  # ~40 s: the node's processing threads around a simulated 25 ms GPU engine, 2 x 8 s
        "stage_overlap.py", ["--model-size", "352x1216", "--seconds", "8"], ["--seconds", "2"],
    ),
    "instance_statistics": (  # ~10 s: 64 instances at 1242x375, new and previous implementation
        "instance_statistics.py", ["--repeats", "30"], ["--repeats", "5"],
    ),
    "tracking": (  # ~1 min: 64-instance cost, 5 closing-object drives rendered at 192x640, truth and demo-model chains
        "tracking.py", ["--frames", "300", "--size", "192x640"], ["--frames", "60", "--size", "96x320"],
    ),
    "ort_spinning": (  # ~30 s: ONNX Runtime thread settings beside the instance thread's work
        "ort_spinning.py", ["--seconds", "4"], ["--seconds", "1"],
    ),
    "node_realtime": (  # ~1 min: echo floor, then the node; 10 s of 1242x375 frames at 30 Hz each, 5 s drain
        "node_realtime.py",
        ["--model", "models/demo/icm_demo.onnx", "--frames", "300", "--rate", "30"],
        ["--model", "models/demo/icm_demo.onnx", "--frames", "90", "--rate", "30"],
    ),
    "node_realtime_heavy": (  # ~2 min: a random ResNet-18 exported at 352x1216 (PyTorch), floor, node, 20 s at 30 Hz
        "node_realtime.py",
        ["--model-size", "352x1216", "--frames", "600", "--rate", "30"],
        ["--model-size", "352x1216", "--frames", "150", "--rate", "30"],
    ),
    "node_multicamera": (  # ~2 min: 3 cameras x 10 Hz for 15 s: echo floor, one node for all, one node per camera
        "node_realtime.py",
        ["--model", "models/demo/icm_demo.onnx", "--cameras", "front,left,right", "--frames", "150", "--rate", "10"],
        ["--model", "models/demo/icm_demo.onnx", "--cameras", "front,left,right", "--frames", "40", "--rate", "10"],
    ),
    "node_multicamera_batched": (  # ~2 min: the same with the demo network exported with a dynamic batch (random weights)
        "node_realtime.py",
        ["--model-config", "training/configs/synthetic_mobilenetv3_demo_96x320.yaml", "--dynamic-batch",
         "--cameras", "front,left,right", "--frames", "150", "--rate", "10", "--targets", "echo", "node"],
        ["--model-config", "training/configs/synthetic_mobilenetv3_demo_96x320.yaml", "--dynamic-batch",
         "--cameras", "front,left,right", "--frames", "40", "--rate", "10", "--targets", "echo", "node"],
    ),
    "node_transport": (  # ~3 min: 6 transport set-ups x 10 s of 1242x375 frames at 30 Hz, node start-up each
        "node_transport.py",
        ["--model", "models/demo/icm_demo.onnx", "--frames", "300", "--rate", "30"],
        ["--model", "models/demo/icm_demo.onnx", "--frames", "60", "--rate", "30"],
    ),
    "icm_loss_share": (  # ~2 min: 11 interleaved training steps at batch 4
        "icm_loss_share.py",
        ["--batch", "4", "--size", "192x640", "--steps", "5"],
        ["--batch", "2", "--size", "96x320", "--steps", "2"],
    ),
    "replay_fleet": (  # ~5 min: 8 drives x 100 frames rendered, then a plain loop, Ray with 1 and with 2 workers
        "replay_fleet.py",
        ["--drives", "8", "--frames", "100", "--size", "192x640", "--workers", "1", "2"],
        ["--drives", "8", "--frames", "10", "--size", "192x640", "--workers", "1", "2"],
    ),
    "synthetic_rate": (  # ~10 s
        "synthetic_rate.py",
        ["--size", "192x640", "--frames", "40"],
        ["--size", "192x640", "--frames", "10"],
    ),
    "train_throughput": (  # ~3 min: 2 variants x 8 optimiser steps at batch 4
        "train_throughput.py",
        ["--size", "192", "640", "--batch", "4", "--steps", "6", "--threads", "2"],
        ["--size", "96", "320", "--batch", "2", "--steps", "2", "--threads", "2"],
    ),
}
TIME_LIMIT_S = {"full": 1200, "quick": 420}  # per script; generous, so that a loaded machine is slow, not failed
STDERR_TAIL_CHARS = 3000


def machine_facts() -> dict:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown")
    memory_kib = next((int(line.split()[1]) for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal:")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cores": os.cpu_count(), "cpu": cpu, "memory_gib": round(memory_kib / 2**20, 1),
        "load_average_start": [round(value, 2) for value in os.getloadavg()],
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": version("torch"), "onnxruntime": version("onnxruntime"),
        "git_commit": commit.stdout.strip() or "unknown",
    }


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def run_benchmark(name: str, script: str, arguments: list[str], time_limit_s: float) -> dict:
    """Run one script with --json; {"status": "ok" | "failed", "result": {...} or "error" and "stderr_tail"}."""
    command = [sys.executable, str(ROOT / "bench" / script), *arguments, "--json"]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    entry = {"command": " ".join(["python", f"bench/{script}", *arguments, "--json"]),
             "load_average_before": round(os.getloadavg()[0], 2)}
    start = time.perf_counter()
    try:
        finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True,
                                  timeout=time_limit_s)
    except subprocess.TimeoutExpired as expired:
        stderr = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else expired.stderr or ""
        return {**entry, "status": "failed", "seconds": round(time.perf_counter() - start, 1),
                "error": f"ran past the {time_limit_s:.0f} s limit", "stderr_tail": stderr[-STDERR_TAIL_CHARS:]}
    entry.update(seconds=round(time.perf_counter() - start, 1), returncode=finished.returncode)
    if finished.returncode != 0:
        return {**entry, "status": "failed", "error": f"exit status {finished.returncode}",
                "stderr_tail": finished.stderr[-STDERR_TAIL_CHARS:]}
    try:
        result = json.loads(finished.stdout)
    except json.JSONDecodeError as error:
        return {**entry, "status": "failed", "error": f"stdout is not one JSON object ({error})",
                "stderr_tail": (finished.stdout + finished.stderr)[-STDERR_TAIL_CHARS:]}
    return {**entry, "status": "ok", "result": result}


REALTIME_BENCHMARKS = ("node_realtime", "node_realtime_heavy", "node_multicamera", "node_multicamera_batched")


def update_summary(path: Path, block: str, begin: str = SUMMARY_BEGIN, end: str = SUMMARY_END) -> None:
    """Put ``block`` between ``begin`` and ``end`` in ``path`` (appended at the end the first time)."""
    text = path.read_text() if path.exists() else ""
    marked = f"{begin}\n{block.rstrip()}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = before + marked + after
    else:
        text = text.rstrip() + ("\n\n" if text else "") + marked + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few frames / steps each (about 4 minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_report", help="folder for benchmarks.json / .md")
    parser.add_argument("--summary", type=str, default=str(ROOT / "docs" / "benchmarks.md"),
                        help="page whose real-time block (between run_all's markers) is replaced; '' = none")
    parser.add_argument("--only", nargs="+", choices=list(SETTINGS), help="run only these benchmarks")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    names = args.only or list(SETTINGS)
    args.out.mkdir(parents=True, exist_ok=True)

    report = {"mode": mode, "command": " ".join(["python", "bench/run_all.py", *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine_facts(), "benchmarks": {}}
    started = time.perf_counter()
    for number, name in enumerate(names, 1):
        script, full, quick = SETTINGS[name]
        print(f"[{number}/{len(names)}] {name}: python bench/{script} {' '.join(quick if args.quick else full)} --json",
              flush=True)
        entry = run_benchmark(name, script, quick if args.quick else full, TIME_LIMIT_S[mode])
        report["benchmarks"][name] = entry
        print(f"    {entry['status']} in {entry['seconds']:.0f} s" + (f": {entry['error']}" if "error" in entry else ""),
              flush=True)
    report["machine"]["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    report["total_seconds"] = round(time.perf_counter() - started, 1)

    (args.out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "benchmarks.md").write_text(render_markdown(report))
    if args.summary and any(name in report["benchmarks"] for name in REALTIME_BENCHMARKS):  # Path("") would be "."
        update_summary(Path(args.summary), render_realtime_summary(report))
        print(f"updated the real-time tables in {args.summary}")
    if args.summary and "tracking" in report["benchmarks"]:
        update_summary(Path(args.summary), render_tracking_summary(report), TRACKING_BEGIN, TRACKING_END)
        print(f"updated the tracking tables in {args.summary}")
    failed = [name for name, entry in report["benchmarks"].items() if entry["status"] != "ok"]
    print(f"wrote {args.out / 'benchmarks.json'} and {args.out / 'benchmarks.md'} in {report['total_seconds']:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else "; all benchmarks ran"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
