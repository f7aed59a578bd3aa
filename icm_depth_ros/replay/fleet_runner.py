"""Run a fleet of drives on Ray: one task per drive, each the offline replay (offline.evaluate_drive).

Ray is imported here only, when a fleet runs: the node and replay_eval never need it.

- Without an address, Ray starts inside this process with ``workers`` CPUs and stops at the end; with
  one, the run goes to that cluster (every node needs this package installed and the bags at the same
  paths, e.g. shared storage; contact sheets are written by the workers into the output folder, so it
  must be shared too).
- The models go into the object store once; a worker writes each to a local file once (by content hash)
  and keeps its loaded DepthPipeline for the drives that follow.
- ONNX Runtime runs ``cpus_per_task`` intra-op threads: the CPUs Ray reserved for the task.
- A task whose worker process dies is re-run by Ray (``max_retries``); an exception inside a drive (an
  unreadable bag, a missing topic) is that drive's failure, returned as a result and never retried.
- Ctrl-C cancels the drives not finished and returns what finished (``FleetRun.interrupted``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

from icm_depth_ros.processing.pipeline import DepthPipeline
from icm_depth_ros.replay.fleet import DriveResult
from icm_depth_ros.replay.offline import ReplayOptions, evaluate_drive, pipeline_config
from icm_depth_ros.replay.plots import contact_sheet

POLL_S = 0.5  # how often the progress bar is refreshed while drives run


@dataclass
class FleetOptions:
    """How to run the fleet. ``replay``: the options every drive shares (its bag, out and model are set per
    drive and model; ``replay.samples``: frames of each drive in its contact sheet, 0 = none); ``models``:
    role ("candidate", "baseline") -> model file."""

    replay: ReplayOptions
    models: dict[str, str]
    out: str
    workers: int | None = None  # local Ray's CPUs; None = all of this machine's
    ray_address: str | None = None
    cpus_per_task: int = 1
    gpus_per_task: float = 0.0
    max_retries: int = 3  # re-runs of a drive whose worker process died


@dataclass
class FleetRun:
    """results[i]: role -> DriveResult for drive i, only for drives that finished."""

    results: dict[int, dict[str, DriveResult]] = field(default_factory=dict)
    interrupted: bool = False
    elapsed_s: float = 0.0  # everything: Ray's start, the models into the object store, the drives, Ray's stop
    startup_s: float = 0.0  # of which starting (or connecting to) Ray
    cluster: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelHandle:
    """A model in the object store: ``ref`` is in a list so that Ray hands the task the reference, not the bytes."""

    name: str
    sha256: str
    suffix: str
    ref: list


_PIPELINES: dict[tuple, DepthPipeline] = {}  # per worker process: (sha256, config) -> loaded pipeline


def _pipeline(handle: ModelHandle, options: ReplayOptions) -> tuple[DepthPipeline, ReplayOptions]:
    import ray

    folder = Path(tempfile.gettempdir()) / "replay_fleet_models"
    path = folder / f"{handle.sha256}{handle.suffix}"
    options = replace(options, model_path=str(path))
    key = (handle.sha256, repr(pipeline_config(options)))
    if key not in _PIPELINES:
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.part")
            partial.write_bytes(ray.get(handle.ref[0]))
            partial.replace(path)  # atomic: another worker may be writing the same file
        _PIPELINES[key] = DepthPipeline.from_config(pipeline_config(options))
    return _PIPELINES[key], options


def evaluate_fleet_drive(bag: str, options: ReplayOptions, models: dict[str, ModelHandle], sheet: str | None,
                         out: str) -> dict[str, DriveResult]:
    """The Ray task: every model on drive ``bag``. sheet: contact sheet path under ``out`` for the candidate."""
    results = {}
    for role, handle in models.items():
        started = time.perf_counter()
        try:
            pipeline, drive_options = _pipeline(handle, replace(options, bag=bag, samples=options.samples if
                                                                sheet and role == "candidate" else 0))
            run = evaluate_drive(drive_options, pipeline)
        except Exception as error:  # one drive's failure is a row of the report, never the end of the run
            reason = f"{type(error).__name__}: {error}"
            if not isinstance(error, (ValueError, RuntimeError, OSError)):
                reason += "\n" + traceback.format_exc(limit=4)
            results[role] = DriveResult(bag, failure=reason, elapsed_s=time.perf_counter() - started)
            continue
        result = DriveResult(bag, frames=run.summary["frames"], totals=run.evaluation.scorer.totals,
                             latency=run.summary["latency"], elapsed_s=time.perf_counter() - started,
                             notes=run.summary["run"]["notes"])
        if run.evaluation.samples:
            Path(out, sheet).parent.mkdir(parents=True, exist_ok=True)
            contact_sheet(Path(out, sheet), sorted(run.evaluation.samples, key=lambda s: s["frame"]), options.max_depth)
            result.contact_sheet = sheet
        results[role] = result
    return results


def sheet_path(index: int, bag: str) -> str:
    """drives/00012_<folder>_<bag name>/contact_sheet.png: one folder per drive, ordered as the drive list."""
    path = Path(bag)
    return f"drives/{index:05d}_{path.parent.name}_{path.stem}/contact_sheet.png"


def run_fleet(drives: list[Path], options: FleetOptions, progress=None) -> FleetRun:
    """Evaluate every drive; ``progress(done_drives, failed_drives, frames_read)`` after each poll.

    Raises RuntimeError when Ray is not installed or cannot start or connect (the message says which address).
    """
    try:
        import ray
    except ImportError:
        raise RuntimeError("replay_fleet needs Ray: pip install ray==2.60.0 (the pin of requirements.txt)") from None

    started = time.perf_counter()
    run = FleetRun()
    started_ray = not ray.is_initialized()
    if started_ray:
        try:
            if options.ray_address:
                ray.init(address=options.ray_address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(num_cpus=options.workers or os.cpu_count(), include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RuntimeError(f"--ray-address {options.ray_address}: cannot connect to a Ray cluster ({error}); a "
                               "cluster with token authentication also needs RAY_AUTH_MODE=token and its token here "
                               "(docs/replay.md, 'On a Ray cluster')"
                               if options.ray_address else f"cannot start a local Ray: {error}") from None
    run.startup_s = time.perf_counter() - started
    try:
        run.cluster = {"address": options.ray_address or "local", "cpus": ray.cluster_resources().get("CPU", 0),
                       "gpus": ray.cluster_resources().get("GPU", 0)}
        handles = {}
        for role, model in options.models.items():
            data = Path(model).read_bytes()
            handles[role] = ModelHandle(model, hashlib.sha256(data).hexdigest(), Path(model).suffix, [ray.put(data)])
        task = ray.remote(evaluate_fleet_drive).options(
            num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task, max_retries=options.max_retries,
            retry_exceptions=False)
        shared = replace(options.replay, threads=options.cpus_per_task, progress=False, write_bag=False)
        pending = {task.remote(str(bag), shared, handles, sheet_path(i, str(bag)) if shared.samples else None,
                               options.out): i for i, bag in enumerate(drives)}
        frames = failed = 0
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
                for ref in done:
                    index = pending.pop(ref)
                    run.results[index] = _collect(ref, str(drives[index]), handles)
                    frames += sum(r.frames.get("read", 0) for r in run.results[index].values())
                    failed += any(not r.ok for r in run.results[index].values())
                if progress is not None:
                    progress(len(run.results), failed, frames)
        except KeyboardInterrupt:
            run.interrupted = True
            for ref in pending:
                ray.cancel(ref, force=True)
    finally:
        if started_ray:
            ray.shutdown()
        run.elapsed_s = time.perf_counter() - started
    return run


def _collect(ref, bag: str, handles: dict) -> dict[str, DriveResult]:
    """A finished task's results; a task Ray gave up on (its worker died max_retries + 1 times) fails every model."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return {role: DriveResult(bag, failure=reason) for role in handles}
