"""Tracking and kinematics: cost per frame for 64 instances (goal <= 0.5 ms), and the figures of the
closing-object synthetic drives for two chains, scored against the drives' per-instance truth.

    python bench/tracking.py [--frames 300] [--size 192x640] [--seed 0] [--model models/demo/icm_demo.onnx] [--json]

cost          InstanceTracker.update (association + both filters + time to contact) on 64 instances that
              move over --frames frames; median / p90 / p99 ms per frame.
ground-truth  the drives' rendered depth and instance labels -> instance statistics -> tracker: the
              tracking stage alone, its upper bound (as replay_eval --depth-source ground-truth).
model         the node's DepthPipeline on the demo model (ONNX Runtime) with the drives' labels as its
              instance topic (confidence from the network's cluster firmness, as on the node); once with
              the node's defaults, once with track_range_noise_fraction 0.02 (too small for that model).
Each chain: MOTA / IDF1 / ID switches (motmetrics), errors by distance band, standing objects, and the
share of frames within one stated std (track_scoring.py). Node defaults for every tracking parameter.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from json_output import run_and_report  # noqa: E402

GOAL_MS = 0.5
GOAL_TTC_RELATIVE_ERROR = 0.10  # median, ground-truth chain, true ttc < 6 s
GOAL_STANDING_RATE = 0.5  # m/s, |range rate| of a standing object, ground-truth chain
MODEL_NOISE_FRACTION = 0.02  # a second setting for the model chain: too small a noise (the default is 0.08)
DRIVE_OFFSET = 10_000
MIN_PIXELS = 50  # the node's min_instance_pixels default  # truth ids of drive k become id + k * DRIVE_OFFSET: ids are per drive


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300, help="frames of the cost measurement")
    parser.add_argument("--size", default="192x640", help="drive image size HxW")
    parser.add_argument("--seed", type=int, default=0, help="street of every scenario")
    parser.add_argument("--model", default=str(ROOT / "models" / "demo" / "icm_demo.onnx"), help="'' = no model chain")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    return run_and_report(measure, parser.parse_args(argv))


def moving_instances(count: int, frame: int, rng_seed: int = 0) -> list:
    """``count`` box-shaped objects 8-70 m ahead, each closing or receding at its own speed, at 10 Hz."""
    from icm_depth_ros.instances.statistics import Instance

    rng = np.random.default_rng(rng_seed)
    lateral, start, speed = rng.uniform(-12, 12, count), rng.uniform(15, 70, count), rng.uniform(-8, 2, count)
    instances = []
    for label in range(count):
        range_m = max(start[label] + speed[label] * 0.1 * frame, 3.0)
        u, half = 620 + 700 * lateral[label] / range_m, 700 * 0.9 / range_m
        bbox = (int(u - half), int(180 - half), int(u + half) + 1, int(180 + half) + 1)
        instances.append(Instance(label + 1, -1, bbox, range_m + 0.5, range_m, (lateral[label], 0.0, range_m + 0.5),
                                  (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]), 0.9))
    return instances


def measure_cost(frames: int) -> dict:
    from icm_depth_ros.instances.tracking import InstanceTracker, TrackerConfig, TrackIds

    inputs = [moving_instances(64, k) for k in range(frames)]
    tracker = InstanceTracker(TrackerConfig(), TrackIds())
    times = []
    for k, instances in enumerate(inputs):
        start = time.perf_counter()
        tracker.update(0.1 * k, instances, (375, 1242))
        times.append(time.perf_counter() - start)
    ms = np.asarray(times[10:]) * 1e3  # the first frames have fewer confirmed tracks
    return {"instances": 64, "frames": frames, "tracks_at_end": tracker.count,
            "median_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "goal_ms": GOAL_MS,
            "goal_met": bool(np.median(ms) <= GOAL_MS)}


def score_chain(drives: dict, instances_of, **tracker_settings) -> dict:
    """instances_of(frame) -> (Instance records, depth-image size) per frame; the tracker (TrackerConfig with
    ``tracker_settings``, else the node's defaults) on every drive."""
    from icm_depth_ros.instances.tracking import InstanceTracker, TrackerConfig, TrackIds
    from icm_depth_ros.replay.track_scoring import TrackScorer

    scorer, ids, seconds = TrackScorer(), TrackIds(), []
    for number, frames in enumerate(drives.values()):
        tracker = InstanceTracker(TrackerConfig(**tracker_settings), ids, stable_labels=True)  # label ids are kept
        for frame in frames:
            instances, size = instances_of(frame)
            stamp = number * 1000.0 + frame["stamp_ns"] * 1e-9
            start = time.perf_counter()
            tracks = tracker.update(stamp, instances, size)
            seconds.append(time.perf_counter() - start)
            truth = frame["truth"].copy()
            truth["id"] += number * DRIVE_OFFSET
            scorer.add(stamp, instances, tracks, truth)
    summary = scorer.summary()
    summary["tracking_median_ms"] = round(float(np.median(seconds)) * 1e3, 3)
    return summary


def measure(args: argparse.Namespace) -> dict:
    from training.data.synthetic.closing import SCENARIOS, render_closing_drive

    height, width = (int(v) for v in args.size.split("x"))
    report = {"cost": measure_cost(args.frames), "size": args.size, "seed": args.seed,
              "scenarios": {name: SCENARIOS[name].frames for name in SCENARIOS}, "chains": {}}
    drives = {name: render_closing_drive(name, (height, width), args.seed) for name in SCENARIOS}

    def on_true_depth(frame):  # as replay_eval --depth-source ground-truth
        from icm_depth_ros.instances.statistics import instance_statistics

        depth = np.where(frame["depth"] > 0, frame["depth"], np.nan).astype(np.float32)
        return instance_statistics(depth, frame["instances"].astype(np.int32), frame["K"], min_pixels=MIN_PIXELS), depth.shape

    report["chains"]["ground-truth"] = score_chain(drives, on_true_depth)
    if args.model:
        from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

        pipeline = DepthPipeline.from_config(PipelineConfig(model_path=args.model, backend="onnxruntime", threads=2,
                                                            min_instance_pixels=MIN_PIXELS))
        predicted = {}  # id(frame) -> (instances, size): each frame inferred once for both settings

        def on_model_depth(frame):  # the node's chain with instance_source topic (as replay_eval with --model)
            if id(frame) not in predicted:
                result = pipeline.process(frame["image"], frame["K"], frame["instances"].astype(np.int32), "topic")
                predicted[id(frame)] = (result.instances, result.depth.shape)
            return predicted[id(frame)]

        report["chains"]["model"] = score_chain(drives, on_model_depth)
        # the same depth with a measurement noise smaller than the demo model's frame-to-frame depth error
        report["chains"][f"model, track_range_noise_fraction {MODEL_NOISE_FRACTION:g}"] = score_chain(
            drives, on_model_depth, range_noise_fraction=MODEL_NOISE_FRACTION)
        report["model"] = str(Path(args.model).relative_to(ROOT)) if Path(args.model).is_relative_to(ROOT) else args.model
    truth_chain = report["chains"]["ground-truth"]
    ttc_error = truth_chain["errors"]["all"]["ttc_relative_error"]
    standing = truth_chain["standing"]["abs_range_rate_max_mps"]
    report["goals"] = {
        "cost": report["cost"]["goal_met"],
        "ttc_median_relative_error": ttc_error is not None and ttc_error <= GOAL_TTC_RELATIVE_ERROR,
        "no_actor_id_switch": truth_chain["identity"]["actor_switches"] == 0,
        "standing_rate": standing is not None and standing < GOAL_STANDING_RATE,
    }
    return report


if __name__ == "__main__":
    main()
