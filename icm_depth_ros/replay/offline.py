"""Offline replay: run the node's DepthPipeline over a bag's frames, score them, write the outputs.

No ROS graph: the bag is read with rosbags, frames go through the very ``DepthPipeline`` the node runs.
A drive without ground truth (no --depth-topic) is run and reported but not scored; without camera_info
the instance centroids have no x/y (NaN), as on the node.

Tracking: the frames' instances go through the node's InstanceTracker (default parameters), in bag order,
on the image stamps; tracks.csv holds every confirmed track per frame and, where the bag has per-instance
truth (--truth-topic), track_scoring.py scores them. ``depth_source`` "ground-truth" takes the bag's true
depth instead of a model's (no model needed; the instance labels must come from the bag): the tracking
stage alone, its upper bound.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from icm_depth_ros.inference.self_test import check_backend
from icm_depth_ros.instances.statistics import instance_statistics
from icm_depth_ros.instances.tracking import InstanceTracker, TrackerConfig, TrackIds
from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig
from icm_depth_ros.replay.bag_output import PredictionBag, topic_namespace
from icm_depth_ros.replay.bag_reader import BagSource, DecodeError, TopicSelection
from icm_depth_ros.replay.evaluation import Evaluation, evenly_spaced
from icm_depth_ros.replay.pairing import FrameAssembler, plan_frames
from icm_depth_ros.replay.report import write_outputs
from icm_depth_ros.replay.scoring import ReplayScorer
from icm_depth_ros.replay.track_scoring import TrackScorer

DEPTH_SOURCES = ("model", "ground-truth")


@dataclass
class ReplayOptions:
    """Everything one evaluation run needs; replay_eval.py fills it from the command line."""

    bag: str
    topics: TopicSelection
    model_path: str = ""
    backend: str = "onnxruntime"  # auto | onnxruntime | tensorrt (as the node's parameter)
    threads: int = 0  # onnxruntime intra-op threads, 0 = its default
    resize_policy: str = "crop"  # as the node's parameter: the camera image -> model input mapping
    min_depth: float = 1e-3  # evaluated ground-truth range (min, max) in metres; KITTI: 1e-3, 80
    max_depth: float = 80.0
    crop: str = "none"  # none | garg
    stamp_tolerance_s: float = 0.005  # image <-> ground truth pairing; a 10 Hz drive has 100 ms between frames
    out: str = "replay_out"
    write_bag: bool = False
    output_namespace: str | None = None  # --write-bag topics under this; None = the image topic's namespace
    samples: int = 4  # frames drawn as image | predicted | true | error in report.md
    progress: bool = True
    pipeline_overrides: dict = field(default_factory=dict)  # further PipelineConfig fields
    depth_source: str = "model"  # model | ground-truth (the bag's depth: scores the tracking stage alone)
    tracking: bool = True  # tracks.csv, and track scoring where the bag has truth
    min_instance_pixels: int = 50  # as the node's parameter (both depth sources)
    # the model's self-test before scoring (inference/self_test.py): refuse | warn | off; replay_eval's
    # --self-test defaults to refuse, callers that compare models on purpose (replay_fleet) leave it off
    self_test: str = "off"


@dataclass
class _Part:
    value: object  # the decoded array (or K)
    msg: object  # the rosbags message
    raw: bytes
    connection: object


@dataclass
class DriveRun:
    """One drive evaluated offline: ``summary`` is metrics.json's contents; ``evaluation`` holds the frame
    rows, samples and instance rows, and ``evaluation.scorer.totals`` the sums and counts behind the figures
    (what replay_fleet merges over drives)."""

    summary: dict
    evaluation: Evaluation
    tracks: TrackScorer | None = None  # the tracks and their scores (tracks.csv), when tracking ran


def run_offline(options: ReplayOptions) -> dict:
    """Evaluate ``options.bag``; writes options.out and returns the metrics.json contents."""
    run = evaluate_drive(options)
    write_outputs(Path(options.out), run.summary, run.evaluation.rows, run.evaluation.samples,
                  run.evaluation.instance_rows, run.tracks)
    return run.summary


def evaluate_drive(options: ReplayOptions, pipeline: DepthPipeline | None = None) -> DriveRun:
    """Run and score every frame of ``options.bag``; writes only ``--write-bag``'s OUT/bag.

    pipeline: an already loaded one to reuse (replay_fleet's workers keep theirs across drives); it must
    have been built from ``pipeline_config(options)``. None: loaded here, after the bag's topics are checked.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    out = Path(options.out)
    check_depth_source(options)
    scorer = ReplayScorer(options.min_depth, options.max_depth, options.crop)
    tracker = InstanceTracker(TrackerConfig(), TrackIds(), stable_labels=bool(options.topics.instances)) \
        if options.tracking else None
    tracks = TrackScorer() if options.tracking else None
    with BagSource(options.bag, options.topics) as source:
        self_test = None
        if pipeline is None and options.depth_source == "model":
            pipeline = DepthPipeline.from_config(pipeline_config(options))  # after the bag check: a wrong topic fails fast
            # before scoring: SelfTestFailed (a ModelLoadError) under refuse, the line logged otherwise
            self_test = check_backend(pipeline.backend, options.self_test, _StderrLog(), model=options.model_path,
                                      precision=pipeline.config.precision)
        notes = options.topics.missing_notes()
        for note in notes:
            print(f"replay_eval: {note}", file=sys.stderr, flush=True)
        with tqdm(total=source.message_count(), desc="indexing", unit="msg", disable=not options.progress) as bar:
            stamps = source.stamps(bar)
        plans, skips, without_instances = plan_frames(stamps, round(options.stamp_tolerance_s * 1e9))
        evaluation = Evaluation(scorer, {plans[i].index for i in evenly_spaced(len(plans), options.samples)})
        evaluation.frames_without_instances = without_instances
        for skip in skips:
            evaluation.skip(skip.reason, skip.detail, skip.index, skip.stamp_ns)

        bag_out = None
        if options.write_bag:
            out.mkdir(parents=True, exist_ok=True)
            namespace = options.output_namespace
            bag_out = PredictionBag(out / "bag", source, topic_namespace(options.topics.image) if namespace is None
                                    else namespace)
        assembler = FrameAssembler(plans)
        try:
            with tqdm(total=len(plans), desc="evaluating", unit="frame", disable=not options.progress) as bar:
                for role, index, log_time, connection, raw in source.messages(all_topics=bag_out is not None):
                    if bag_out is not None:
                        bag_out.copy(connection, log_time, raw)
                    if role is None or not assembler.wants(role, index):
                        continue
                    try:
                        value, msg = source.decode(role, connection, raw)
                    except DecodeError as error:
                        for plan in assembler.fail(role, index):
                            evaluation.skip(f"undecodable_{role}", str(error), plan.index, plan.stamp_ns)
                            bar.update(1)
                        continue
                    for plan, parts in assembler.add(role, index, _Part(value, msg, raw, connection)):
                        _evaluate_frame(pipeline, evaluation, plan, parts, bag_out, log_time, options, tracker, tracks)
                        bar.update(1)
        finally:
            if bag_out is not None:
                bag_out.close()
        for plan in assembler.leftovers():  # cannot happen with a well-formed bag; counted all the same
            evaluation.skip("incomplete", f"frame {plan.index}: a paired message was never read", plan.index,
                            plan.stamp_ns)
        summary = evaluation.summary(frames_read=len(stamps["image"]))
        if not options.topics.depth:
            summary["metrics_unavailable"] = "the drive has no ground truth (--depth-topic '')"
        summary["instances_reported"] = len(evaluation.instance_rows)
        summary["run"] = _run_info(options, source.storage, pipeline, time.perf_counter() - started)
        if pipeline is not None:
            summary["run"]["self_test"] = {"policy": options.self_test, "passed": None} if self_test is None else {
                "policy": options.self_test, "passed": self_test.passed, **self_test.figures.__dict__,
                "tolerance": self_test.tolerance.__dict__, "precision": self_test.precision}
        summary["run"]["notes"] = notes
        if bag_out is not None:
            summary["run"]["output_bag"] = str(out / "bag")
            summary["run"]["output_bag_topics_not_copied"] = bag_out.not_copied
        if tracks is not None:
            summary["tracks"] = tracks.summary()
            summary["tracks"]["tracker"] = asdict(tracker.config)
            summary["tracks"]["skipped_stamps"] = tracker.skipped_stamps
    return DriveRun(summary, evaluation, tracks)


class _StderrLog:
    """The self-test's lines on stderr, as replay_eval's other notes."""

    @staticmethod
    def info(text: str) -> None:
        print(f"replay_eval: {text}", file=sys.stderr, flush=True)

    warning = info


def pipeline_config(options: ReplayOptions) -> PipelineConfig:
    """The DepthPipeline a replay of ``options`` runs: the node's, with its output on the camera grid."""
    return PipelineConfig(model_path=options.model_path, backend=options.backend, threads=options.threads,
                          resize_policy=options.resize_policy, output_resolution="input",
                          min_instance_pixels=options.min_instance_pixels, **options.pipeline_overrides)


def check_depth_source(options: ReplayOptions) -> None:
    """ValueError naming the option when the depth source cannot run with the topics and model given."""
    if options.depth_source not in DEPTH_SOURCES:
        raise ValueError(f"--depth-source {options.depth_source!r} is not one of {', '.join(DEPTH_SOURCES)}")
    if options.depth_source == "model" and not options.model_path:
        raise ValueError("--model is required offline with --depth-source model: an exported .onnx file "
                         "(or --depth-source ground-truth, or --live to score a running node)")
    if options.depth_source == "ground-truth" and not (options.topics.depth and options.topics.instances):
        raise ValueError("--depth-source ground-truth needs the bag's true depth (--depth-topic) and its instance "
                         f"labels (--instances-topic); got --depth-topic {options.topics.depth!r}, --instances-topic "
                         f"{options.topics.instances!r}")


def _frame_result(pipeline, rgb, gt, K, labels, min_pixels: int):
    """(depth [H, W], instances, K of the depth, timings): the model's, or the bag's true depth itself."""
    if pipeline is not None:
        result = pipeline.process(rgb, K, instance_labels=labels,
                                  instance_source="topic" if labels is not None else "clusters")
        return result.depth, result.instances, result.K, result.timings
    start = time.perf_counter()
    instances = instance_statistics(gt, labels, K, min_pixels=min_pixels) if labels is not None else []
    return gt, instances, K, {"instances": time.perf_counter() - start}


def _evaluate_frame(pipeline, evaluation: Evaluation, plan, parts: dict, bag_out, log_time: int,
                    options: ReplayOptions, tracker, tracks) -> None:
    rgb = parts["image"].value
    gt = parts["depth"].value if "depth" in parts else None  # None: a drive without ground truth
    K = parts["camera_info"].value if "camera_info" in parts else None
    labels = parts["instances"].value if "instances" in parts else None
    size = rgb.shape[1::-1]
    for name, array in (("ground truth", gt), ("instance labels", labels)):
        if array is not None and array.shape[1::-1] != size:
            evaluation.skip("size_mismatch", f"frame {plan.index}: image {size[0]}x{size[1]}, {name} "
                            f"{array.shape[1]}x{array.shape[0]} (width x height)", plan.index, plan.stamp_ns)
            return
    start = time.perf_counter()
    depth, instances, K_depth, timings = _frame_result(pipeline, rgb, gt, K, labels, options.min_instance_pixels)
    total = time.perf_counter() - start
    if tracker is not None:
        start = time.perf_counter()
        frame_tracks = tracker.update(plan.stamp_ns * 1e-9, instances, depth.shape)
        timings["tracking"] = time.perf_counter() - start
        truth = parts["truth"].value if "truth" in parts else None
        tracks.add(plan.stamp_ns * 1e-9, instances, frame_tracks, truth)
    evaluation.add_frame(plan.index, plan.stamp_ns, rgb, depth, gt, labels, instances, K_depth,
                         {"total": total, **timings})
    if bag_out is not None:
        info = parts.get("camera_info")
        bag_out.add(log_time, parts["image"].msg, depth, instances,
                    info.raw if info is not None else None, info.connection if info is not None else None)


def _run_info(options: ReplayOptions, storage: str, pipeline, elapsed_s: float) -> dict:
    if pipeline is None:  # --depth-source ground-truth
        return {"mode": "offline", "depth_source": options.depth_source, "bag": str(options.bag), "storage": storage,
                "topics": asdict(options.topics), "model": "none (the bag's true depth)", "backend": "none",
                "min_instance_pixels": options.min_instance_pixels, "min_depth": options.min_depth,
                "max_depth": options.max_depth, "crop": options.crop, "stamp_tolerance_s": options.stamp_tolerance_s,
                "elapsed_s": round(elapsed_s, 3)}
    info = pipeline.backend.info
    return {
        "mode": "offline",
        "depth_source": options.depth_source,
        "bag": str(options.bag),
        "storage": storage,
        "topics": asdict(options.topics),
        "model": options.model_path,
        "backend": getattr(pipeline.backend, "description", options.backend),
        "model_info": {"input_size": [info.input_height, info.input_width], "config_name": info.config_name,
                       "checkpoint_sha256": info.checkpoint_sha256, "depth_range": [info.min_depth, info.max_depth]},
        "pipeline": asdict(pipeline.config),
        "min_depth": options.min_depth,
        "max_depth": options.max_depth,
        "crop": options.crop,
        "stamp_tolerance_s": options.stamp_tolerance_s,
        "elapsed_s": round(elapsed_s, 3),
    }
