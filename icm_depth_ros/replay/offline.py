"""Offline replay: run the node's DepthPipeline over a bag's frames, score them, write the outputs.

No ROS graph: the bag is read with rosbags, frames go through the very ``DepthPipeline`` the node runs.
A drive without ground truth (no --depth-topic) is run and reported but not scored; without camera_info
the instance centroids have no x/y (NaN), as on the node.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig
from icm_depth_ros.replay.bag_output import PredictionBag, topic_namespace
from icm_depth_ros.replay.bag_reader import BagSource, DecodeError, TopicSelection
from icm_depth_ros.replay.evaluation import Evaluation, evenly_spaced
from icm_depth_ros.replay.pairing import FrameAssembler, plan_frames
from icm_depth_ros.replay.report import write_outputs
from icm_depth_ros.replay.scoring import ReplayScorer


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


def run_offline(options: ReplayOptions) -> dict:
    """Evaluate ``options.bag``; writes options.out and returns the metrics.json contents."""
    run = evaluate_drive(options)
    write_outputs(Path(options.out), run.summary, run.evaluation.rows, run.evaluation.samples,
                  run.evaluation.instance_rows)
    return run.summary


def evaluate_drive(options: ReplayOptions, pipeline: DepthPipeline | None = None) -> DriveRun:
    """Run and score every frame of ``options.bag``; writes only ``--write-bag``'s OUT/bag.

    pipeline: an already loaded one to reuse (replay_fleet's workers keep theirs across drives); it must
    have been built from ``pipeline_config(options)``. None: loaded here, after the bag's topics are checked.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    out = Path(options.out)
    scorer = ReplayScorer(options.min_depth, options.max_depth, options.crop)
    with BagSource(options.bag, options.topics) as source:
        if pipeline is None:
            pipeline = DepthPipeline.from_config(pipeline_config(options))  # after the bag check: a wrong topic fails fast
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
                        _evaluate_frame(pipeline, evaluation, plan, parts, bag_out, log_time)
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
        summary["run"]["notes"] = notes
        if bag_out is not None:
            summary["run"]["output_bag"] = str(out / "bag")
            summary["run"]["output_bag_topics_not_copied"] = bag_out.not_copied
    return DriveRun(summary, evaluation)


def pipeline_config(options: ReplayOptions) -> PipelineConfig:
    """The DepthPipeline a replay of ``options`` runs: the node's, with its output on the camera grid."""
    return PipelineConfig(model_path=options.model_path, backend=options.backend, threads=options.threads,
                          resize_policy=options.resize_policy, output_resolution="input", **options.pipeline_overrides)


def _evaluate_frame(pipeline, evaluation: Evaluation, plan, parts: dict, bag_out, log_time: int) -> None:
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
    result = pipeline.process(rgb, K, instance_labels=labels, instance_source="topic" if labels is not None else "clusters")
    total = time.perf_counter() - start
    evaluation.add_frame(plan.index, plan.stamp_ns, rgb, result.depth, gt, labels, result.instances, result.K,
                         {"total": total, **result.timings})
    if bag_out is not None:
        info = parts.get("camera_info")
        bag_out.add(log_time, parts["image"].msg, result.depth, result.instances,
                    info.raw if info is not None else None, info.connection if info is not None else None)


def _run_info(options: ReplayOptions, storage: str, pipeline, elapsed_s: float) -> dict:
    info = pipeline.backend.info
    return {
        "mode": "offline",
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
