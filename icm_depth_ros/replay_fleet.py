"""replay_fleet: score a model over many recorded drives on Ray, compare it with a baseline, gate a release.

One Ray task per drive runs replay_eval's offline evaluation (replay/offline.py); the overall figures are
merged from the drives' exact sums and counts, so they equal replay_eval on one bag holding every drive's
frames. Without --ray-address Ray runs inside this process on --workers CPUs. See docs/replay.md.

    replay_fleet DRIVE... --model M.onnx [--baseline M0.onnx] --out DIR [--workers N | --ray-address ADDR]
                 [--gate abs_rel=0.002 --gate d1=-0.005 ...]

Exit status: 0 all drives evaluated (and every gate passed); 1 some drive failed; 2 an input error;
3 the candidate regresses on a gated metric; 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from icm_depth_ros.replay.command_line import (add_model_options, add_scoring_options, add_topic_options,
                                            check_output_apart, check_shared_options, topic_selection)
from icm_depth_ros.replay.drive_list import DriveListError, resolve_drives
from icm_depth_ros.replay.fleet import check_gates, compare, drive_entry, overall, parse_gate
from icm_depth_ros.replay.fleet_report import write_fleet_outputs
from icm_depth_ros.replay.offline import ReplayOptions
from icm_depth_ros.replay.scoring import ReplayScorer

EXIT_FAILED_DRIVES, EXIT_INPUT_ERROR, EXIT_REGRESSION, EXIT_INTERRUPTED = 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay_fleet", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("drives", nargs="+", metavar="DRIVE",
                        help="rosbag2 folder or ROS 1 .bag, a folder searched for bags, or a text file listing them")
    add_topic_options(parser)
    model = add_model_options(parser, "model", threads=False)
    model.add_argument("--baseline", default="", help="the model the candidate replaces: both run on every drive")
    add_scoring_options(parser)
    ray = parser.add_argument_group("Ray")
    where = ray.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, help="CPUs of the Ray started in this process (default: all)")
    where.add_argument("--ray-address", default=None, help="an existing Ray cluster, run from one of its machines (auto, or HEAD:6379)")
    ray.add_argument("--cpus-per-task", type=int, default=1, help="CPUs per drive = ONNX Runtime intra-op threads")
    ray.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs per drive (GPU clusters)")
    ray.add_argument("--max-retries", type=int, default=3, help="re-runs of a drive whose worker process died")
    gate = parser.add_argument_group("release gate (with --baseline)")
    gate.add_argument("--gate", action="append", default=[], metavar="METRIC=DELTA",
                      help="worst accepted candidate - baseline change, e.g. abs_rel=0.002 or d1=-0.005")
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, help="folder for fleet.json, drives.csv, report.md")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        drives, gates, scorer = _check(args)
    except ValueError as error:  # DriveListError, a bad option or a bad depth range
        print(f"replay_fleet: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    from icm_depth_ros.replay.fleet_runner import FleetOptions, run_fleet

    models = {"candidate": args.model, **({"baseline": args.baseline} if args.baseline else {})}
    options = FleetOptions(
        replay=ReplayOptions(bag="", topics=topic_selection(args), backend=args.backend,
                             resize_policy=args.resize_policy, min_depth=args.min_depth, max_depth=args.max_depth,
                             crop=args.crop, stamp_tolerance_s=args.stamp_tolerance, samples=args.samples),
        models=models, out=args.out, workers=args.workers, ray_address=args.ray_address,
        cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task, max_retries=args.max_retries)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        with _ProgressBar(len(drives), enabled=not args.no_progress) as bar:
            run = run_fleet(drives, options, bar.update)
    except RuntimeError as error:
        print(f"replay_fleet: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        print(f"replay_fleet: interrupted before any drive finished: 0 of {len(drives)} drives; nothing written",
              file=sys.stderr)
        return EXIT_INTERRUPTED

    fleet = build_fleet(args, drives, run, scorer.bin_edges, gates)
    write_fleet_outputs(Path(args.out), fleet)
    return report(args, fleet)


def _check(args):
    """Every input checked before Ray starts: ValueError naming the option (or DRIVE) and the value."""
    drives = resolve_drives(args.drives)
    if not args.model:
        raise ValueError("--model is required: the exported .onnx (or TensorRT engine) to evaluate")
    check_shared_options(args)  # --model's file, --stamp-tolerance, --samples, the depth range
    if args.baseline and not Path(args.baseline).is_file():
        raise ValueError(f"--baseline {args.baseline}: no such file")
    for option, value, low in (("--workers", args.workers, 1), ("--cpus-per-task", args.cpus_per_task, 1),
                               ("--max-retries", args.max_retries, 0)):
        if value is not None and value < low:
            raise ValueError(f"{option} {value}: must be >= {low}")
    if args.gpus_per_task < 0:
        raise ValueError(f"--gpus-per-task {args.gpus_per_task}: must be >= 0")
    check_output_apart(args.out, drives)
    gates = [parse_gate(text) for text in args.gate]
    if gates and not args.baseline:
        raise ValueError(f"--gate {args.gate[0]}: a gate compares with a baseline; give --baseline M0.onnx")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a folder")
    scorer = ReplayScorer(args.min_depth, args.max_depth, args.crop)  # rejects a bad depth range now
    return drives, gates, scorer


def build_fleet(args, drives: list[Path], run, bin_edges, gates) -> dict:
    """fleet.json's contents from the finished drives (in drive order)."""
    finished = sorted(run.results)
    candidates = [run.results[i]["candidate"] for i in finished]
    baselines = [run.results[i]["baseline"] for i in finished] if args.baseline else None
    frames = sum(result.frames.get("read", 0) for result in candidates)
    fleet = {
        "run": {"model": args.model, "baseline": args.baseline or None, "drives_given": len(drives),
                "drives_finished": len(finished), "interrupted": run.interrupted, "cluster": run.cluster,
                "cpus_per_task": args.cpus_per_task, "gpus_per_task": args.gpus_per_task,
                "topics": asdict(topic_selection(args)), "min_depth": args.min_depth, "max_depth": args.max_depth,
                "crop": args.crop, "stamp_tolerance_s": args.stamp_tolerance, "elapsed_s": round(run.elapsed_s, 3),
                "ray_startup_s": round(run.startup_s, 3),
                "frames_per_second": frames / run.elapsed_s if run.elapsed_s > 0 else 0.0},
        "overall": overall(candidates, bin_edges),
        "drives": [drive_entry(c, b) for c, b in zip(candidates, baselines or [None] * len(candidates))],
    }
    if baselines is not None:
        fleet["overall"]["drives"]["failed"] = sum(entry["status"] == "failed" for entry in fleet["drives"])
        fleet["comparison"] = compare(candidates, baselines)
        if gates and not run.interrupted:
            fleet["gate"] = [{"metric": v.gate.metric, "allowed": v.gate.allowed, "difference": v.difference,
                              "regressed": v.regressed, "line": v.line()} for v in check_gates(gates, fleet["comparison"])]
    return fleet


def report(args, fleet: dict) -> int:
    """Summary lines on stdout (gate verdicts, failures on stderr) -> the exit status."""
    run, overall_figures = fleet["run"], fleet["overall"]
    metrics = overall_figures["metrics"]
    figures = ", ".join(f"{name} {metrics[name]:.4f}" for name in ("abs_rel", "d1") if name in metrics) or "no frame scored"
    print(f"replay_fleet: {run['drives_finished']} of {run['drives_given']} drives finished, "
          f"{overall_figures['drives']['failed']} failed; {overall_figures['frames']['scored']} frames scored; {figures}; "
          f"{run['frames_per_second']:.2f} frames/s")
    for entry in fleet["drives"]:
        if entry["status"] == "failed":
            reason = entry["failure"] or f"baseline: {entry['baseline']['failure']}"
            print(f"replay_fleet: drive failed: {entry['path']}: {reason.splitlines()[0]}", file=sys.stderr)
    if "comparison" in fleet and "abs_rel" in fleet["comparison"]["metrics"]:
        row = fleet["comparison"]["metrics"]["abs_rel"]
        interval = "" if row["interval"] is None else f" (95% [{row['interval'][0]:+.5f}, {row['interval'][1]:+.5f}])"
        print(f"replay_fleet: abs_rel candidate - baseline {row['difference']:+.5f}{interval} over {row['drives']} drives")
    print(f"replay_fleet: wrote {args.out}/fleet.json, drives.csv, report.md")
    if run["interrupted"]:
        print(f"replay_fleet: interrupted: {run['drives_finished']} of {run['drives_given']} drives finished; "
              "the report covers those" + ("; the gate was not evaluated" if args.gate else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    verdicts = fleet.get("gate", [])
    for verdict in verdicts:
        print(f"replay_fleet: {verdict['line']}", file=sys.stderr if verdict["regressed"] else sys.stdout)
    if any(verdict["regressed"] for verdict in verdicts):
        return EXIT_REGRESSION
    return EXIT_FAILED_DRIVES if overall_figures["drives"]["failed"] else 0


class _ProgressBar:
    """drives done / failed, frames per second and the ETA (tqdm's, from the drives done)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="drives", unit="drive", disable=not enabled)
        self.started = time.perf_counter()

    def update(self, done: int, failed: int, frames: int) -> None:
        self.bar.update(done - self.bar.n)
        elapsed = time.perf_counter() - self.started
        self.bar.set_postfix_str(f"failed {failed}, {frames / elapsed if elapsed else 0:.1f} frames/s")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
