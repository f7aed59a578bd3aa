"""DepthPipeline: camera image in, metric depth and per-instance depth out. Plain NumPy, no ROS.

The node (depth_node.py) and replay evaluation (replay_eval.py) both run frames through this class:

    pipeline = DepthPipeline.from_config(PipelineConfig(model_path="model.onnx", backend="onnxruntime"))
    result = pipeline.process(rgb, K)            # rgb uint8 [H, W, 3], K [3, 3] or None
    result.depth      # [H', W'] float32 metres, NaN = no estimate (H', W' = output geometry)
    result.K          # [3, 3] intrinsics of result.depth (None when K was None)
    result.instances  # list[instances.Instance]
    result.timings    # {"preprocess": s, "inference": s, "postprocess": s, "instances": s}
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from icm_depth_ros.inference import open_backend
from icm_depth_ros.inference.contract import PIXEL_FORMAT_UINT8, unit_float
from icm_depth_ros.processing.geometry import RESIZE_POLICIES, InputGeometry
from icm_depth_ros.instances.statistics import Instance, assignment_regions, instance_statistics

OUTPUT_RESOLUTIONS = ("input", "model")
INSTANCE_SOURCES = ("clusters", "topic", "none")


@dataclass
class PipelineConfig:
    """Everything DepthPipeline.from_config needs; the node fills it from ROS parameters."""

    model_path: str
    backend: str = "auto"  # auto | onnxruntime | tensorrt
    precision: str = "fp16"  # TensorRT engine precision; ONNX Runtime runs the graph as exported (fp32)
    onnx_path: str = ""  # ONNX file for onnxruntime / engine rebuilds; default: beside model_path
    allow_engine_build: bool = False  # rebuild a mismatched TensorRT engine from ONNX (takes minutes)
    onnxruntime_provider: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # onnxruntime intra-op threads; 0 = its default
    input_height: int = 0  # 0 = the model's; else must equal it (exported graphs have a static size)
    input_width: int = 0
    resize_policy: str = "crop"  # resize (stretch) | crop (cover, centre crop) | letterbox (fit, pad)
    output_resolution: str = "input"  # input: depth on the camera's pixel grid | model: the model's grid
    min_depth: float = 0.0  # 0 = the model's; depths are clamped to [min_depth, max_depth]
    max_depth: float = 0.0
    min_instance_pixels: int = 50  # in output-image pixels; clusters: also 1/16 of it at membership size
    instance_label_divisor: int = 0  # >0: label = class * divisor + instance (panoptic); 0: class unknown
    max_instances: int = 64  # clusters: keep the largest regions (bounds the message and the work per frame)
    # not a ROS parameter: the profile maximum of a TensorRT engine (re)built on this machine from a dynamic-batch
    # ONNX file (allow_engine_build); the node sets its number of cameras; 0 = the replaced engine's, else 1
    engine_max_batch: int = 0
    # not a ROS parameter: an allowed engine (re)build runs on a thread of its own and opening fails fast with
    # EngineBuilding until it is done (the node sets it: configure must not block its executor; docs/node.md)
    engine_build_in_background: bool = False


@dataclass
class FrameInput:
    """One camera frame for process_batch."""

    rgb: np.ndarray  # uint8 [H, W, 3]
    K: np.ndarray | None = None  # [3, 3] of rgb
    instance_labels: np.ndarray | None = None  # [H, W] int, instance_source "topic" only


class ClusterMaps(NamedTuple):
    """One frame's reduced membership, at membership resolution [h/4, w/4] (contract.py)."""

    cluster: np.ndarray  # int32, each cell's most likely cluster
    firmness: np.ndarray  # float32, that cluster's membership


class InferredFrame(NamedTuple):
    """One frame between inference and post-processing (DepthPipeline.infer_batch -> finish_depth)."""

    geometry: InputGeometry
    depth: np.ndarray  # [h, w] float32 on the model's grid, as the model gave it
    maps: ClusterMaps
    timings: dict  # seconds: "preprocess" (per frame), "inference" (the batch's)


@dataclass
class PipelineResult:
    depth: np.ndarray  # [H', W'] float32 metres, NaN = no estimate
    K: np.ndarray | None  # [3, 3] for depth's geometry
    instances: list[Instance]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    geometry: InputGeometry | None = None


class DepthPipeline:
    def __init__(self, backend, config: PipelineConfig):
        self.backend = backend
        self.config = config
        info = backend.info
        self.model_size = (info.input_height, info.input_width)
        self.min_depth = config.min_depth or info.min_depth
        self.max_depth = config.max_depth or info.max_depth
        self._geometries: dict[tuple[int, int], InputGeometry] = {}
        self._inputs: dict[int, np.ndarray] = {}  # batch size -> the graph's input buffer for B frames
        self._pixels = info.pixel_format == PIXEL_FORMAT_UINT8  # the graph takes the pixels (else float NCHW)

    @classmethod
    def from_config(cls, config: PipelineConfig, logger=None) -> "DepthPipeline":
        """Validate ``config`` and open its backend; ValueError/ModelLoadError name what is wrong."""
        validate_config(config)
        backend = open_backend(
            config.backend, config.model_path, precision=config.precision, onnx_path=config.onnx_path,
            allow_engine_build=config.allow_engine_build, onnxruntime_provider=config.onnxruntime_provider,
            threads=config.threads, logger=logger, engine_max_batch=config.engine_max_batch,
            build_in_background=config.engine_build_in_background,
        )
        info = backend.info
        for name, wanted, actual in (("input_height", config.input_height, info.input_height),
                                     ("input_width", config.input_width, info.input_width)):
            if wanted and wanted != actual:
                raise ValueError(f"{name}={wanted} but model {config.model_path} was exported for {actual}; "
                                 "re-export it at that size or set the parameter to 0 (use the model's)")
        pipeline = cls(backend, config)
        if not 0 < pipeline.min_depth < pipeline.max_depth:
            raise ValueError(f"min_depth={pipeline.min_depth}, max_depth={pipeline.max_depth}: need 0 < min < max")
        return pipeline

    def geometry(self, camera_size: tuple[int, int]) -> InputGeometry:
        if camera_size not in self._geometries:
            self._geometries[camera_size] = InputGeometry.build(camera_size, self.model_size, self.config.resize_policy)
        return self._geometries[camera_size]

    def output_K(self, camera_size: tuple[int, int], K: np.ndarray | None) -> np.ndarray | None:
        """Intrinsics (or a 3x4 P) of the published depth image, for a camera image of ``camera_size``."""
        if K is None or self.config.output_resolution == "input":
            return None if K is None else np.asarray(K, dtype=np.float64)
        return self.geometry(camera_size).scale_intrinsics(K)

    @property
    def max_batch(self) -> int:
        """How many frames one inference may take: the backend's ``max_batch``. ONNX Runtime: 64 for a
        dynamic-batch model, 1 for a static one; TensorRT: the engine's largest batch (its optimisation
        profile's maximum, ``training/export.py --max-batch``), 1 for a static engine."""
        return int(getattr(self.backend, "max_batch", 1))

    def process(self, rgb: np.ndarray, K: np.ndarray | None = None, instance_labels: np.ndarray | None = None,
                instance_source: str = "clusters") -> PipelineResult:
        """rgb uint8 [H, W, 3]; K [3, 3] of that image or None; instance_labels [H, W] int for "topic"."""
        return self.process_batch([FrameInput(rgb, K, instance_labels)], instance_source)[0]

    def process_batch(self, frames: list["FrameInput"], instance_source: str = "clusters",
                      on_depth: Callable[[int, PipelineResult], None] | None = None) -> list[PipelineResult]:
        """Several cameras' frames through one inference ([B, 3, h, w], B <= max_batch); one result each.

        Every result is what ``process`` gives for that frame alone; timings["inference"] is the batch's.
        ``on_depth(index, result)`` is called for every frame as soon as its depth and K are ready, before
        any instance statistics (result.instances is still empty then): the node publishes depth/image
        there, so that its latency does not include the instances.
        """
        depth_results = self.depth_batch(frames)
        if on_depth is not None:
            for index, (result, _) in enumerate(depth_results):
                on_depth(index, result)
        return [self.add_instances(frame, result, maps, instance_source)
                for frame, (result, maps) in zip(frames, depth_results)]

    def depth_batch(self, frames: list["FrameInput"]) -> list[tuple[PipelineResult, "ClusterMaps"]]:
        """The first half of process_batch: [(result without instances, its ClusterMaps)] per frame; that is
        ``infer_batch`` then ``finish_depth`` for each frame (the node runs the two on different threads)."""
        return [self.finish_depth(frame, inferred) for frame, inferred in zip(frames, self.infer_batch(frames))]

    def infer_batch(self, frames: list["FrameInput"]) -> list["InferredFrame"]:
        """Pre-processing and one inference for the frames: what the model gave for each, on the model's grid.

        Every array is the frame's own (the backend's outputs are fresh arrays or copies, the maps are copied):
        it stays valid while the next batch is inferred.
        """
        batch, geometries, preprocess = self.prepare(frames)
        start = time.perf_counter()
        depths, clusters, firmness = self.backend.infer(batch)  # [B, 1, h, w], [B, h/4, w/4] twice
        inference = time.perf_counter() - start
        return [InferredFrame(geometry, depths[index, 0], ClusterMaps(clusters[index].copy(), firmness[index].copy()),
                              {"preprocess": preprocess, "inference": inference})
                for index, geometry in enumerate(geometries)]

    def finish_depth(self, frame: "FrameInput", inferred: "InferredFrame") -> tuple[PipelineResult, "ClusterMaps"]:
        """One inferred frame -> (its result without instances: depth on the output grid, K; its ClusterMaps)."""
        return self._depth_result(frame, inferred.geometry, inferred.depth, dict(inferred.timings)), inferred.maps

    def prepare(self, frames: list["FrameInput"]) -> tuple[np.ndarray, list[InputGeometry], float]:
        """The frames -> (the graph's input for them, their geometries, seconds per frame it took).

        The input is the camera pixels at the model's size, uint8 [B, h, w, 3] (the graph converts them), or
        for a model exported before issue 21, float32 [B, 3, h, w] in [0, 1]. It is this pipeline's buffer for
        B frames, reused by the next call of the same B.
        """
        if not 1 <= len(frames) <= self.max_batch:
            raise ValueError(f"{len(frames)} frames in one batch; this model takes 1 to {self.max_batch}")
        start = time.perf_counter()
        batch = self._input_buffer(len(frames))
        geometries = []
        for index, frame in enumerate(frames):
            geometry = self.geometry(frame.rgb.shape[:2])
            if self._pixels:  # resized (or cropped) straight into the input buffer: the graph does the rest
                geometry.to_model(frame.rgb, out=batch[index])
            else:
                model_rgb = geometry.to_model(frame.rgb)  # [h, w, 3] uint8
                unit_float(model_rgb, out=batch[index])  # [3, h, w]
            geometries.append(geometry)
        return batch, geometries, (time.perf_counter() - start) / len(frames)

    def add_instances(self, frame: "FrameInput", result: PipelineResult, maps: "ClusterMaps",
                      instance_source: str = "clusters") -> PipelineResult:
        """The second half of process_batch: ``result``'s instances (and timings["instances"]) filled in."""
        start = time.perf_counter()
        if instance_source == "clusters" or (instance_source == "topic" and frame.instance_labels is not None):
            result.instances = self._instances(result.depth, maps, result.geometry, result.K,
                                               frame.instance_labels, instance_source)
        result.timings["instances"] = time.perf_counter() - start
        return result

    def _input_buffer(self, size: int) -> np.ndarray:
        if size not in self._inputs:  # no per-frame allocation
            info = self.backend.info
            self._inputs[size] = np.empty(info.input_shape(size), dtype=info.input_dtype)
        return self._inputs[size]

    def _depth_result(self, frame: "FrameInput", geometry: InputGeometry, depth: np.ndarray,
                      timings: dict[str, float]) -> PipelineResult:
        """One frame's model depth [h, w] -> its PipelineResult without instances (depth on the output grid, K)."""
        start = time.perf_counter()
        depth = np.clip(depth, self.min_depth, self.max_depth)  # [h, w], a new array
        if self.config.output_resolution == "input":
            depth = geometry.to_camera(depth)  # NaN outside the crop
        else:
            u0, v0, u1, v1 = geometry.model_window()
            depth[:, : int(np.ceil(u0))] = np.nan  # letterbox padding has no camera pixels behind it
            depth[:, int(np.floor(u1)) + 1:] = np.nan
            depth[: int(np.ceil(v0)), :] = np.nan
            depth[int(np.floor(v1)) + 1:, :] = np.nan
        K_out = self.output_K(frame.rgb.shape[:2], frame.K)
        timings["postprocess"] = time.perf_counter() - start
        return PipelineResult(depth.astype(np.float32, copy=False), K_out, [], timings, geometry)

    def _instances(self, depth, maps: "ClusterMaps", geometry, K_out, instance_labels, source) -> list[Instance]:
        """The membership's cluster and firmness maps [h/4, w/4] -> regions on the depth image's grid -> statistics."""
        min_pixels = self.config.min_instance_pixels
        firmness = maps.firmness
        if source == "clusters":
            cells = max(1, min_pixels // 16)  # a membership cell covers 4x4 model pixels
            regions = assignment_regions(maps.cluster, cells, self.config.max_instances)
            # < 65536 regions: a membership map has at most (h/4)*(w/4) cells, each region >= 1 cell
            labels = self._to_output_grid(regions.astype(np.uint16), geometry, depth.shape, nearest=True)
            divisor = 0
        else:
            if instance_labels.shape != depth.shape and self.config.output_resolution == "input":
                raise ValueError(f"instance label image {instance_labels.shape[::-1]} differs from the camera "
                                 f"image {depth.shape[::-1]} (width, height)")
            on_camera_grid = self.config.output_resolution == "input"
            labels = instance_labels if on_camera_grid else geometry.labels_to_model(instance_labels)
            divisor = self.config.instance_label_divisor
        firmness = self._to_output_grid(firmness, geometry, depth.shape, nearest=False)
        return instance_statistics(depth, labels, K_out, firmness, min_pixels, divisor)

    def _to_output_grid(self, coarse: np.ndarray, geometry: InputGeometry, shape, nearest: bool) -> np.ndarray:
        """A membership-resolution map -> the depth image's grid (camera or model)."""
        import cv2

        if self.config.output_resolution == "input":
            return geometry.to_camera(coarse, nearest=nearest, fill=coarse.dtype.type(0))  # keeps the dtype: no copy
        interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.resize(coarse, (shape[1], shape[0]), interpolation=interpolation)


def validate_config(config: PipelineConfig) -> None:
    """Raise ValueError naming the parameter and what is allowed."""
    choices = {"resize_policy": RESIZE_POLICIES, "output_resolution": OUTPUT_RESOLUTIONS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ValueError(f"parameter {name}={getattr(config, name)!r} is not one of {allowed}")
    for name in ("input_height", "input_width", "threads", "min_instance_pixels", "instance_label_divisor",
                 "max_instances"):
        if getattr(config, name) < 0:
            raise ValueError(f"parameter {name}={getattr(config, name)} must be >= 0")
    for name in ("min_depth", "max_depth"):
        if not np.isfinite(getattr(config, name)) or getattr(config, name) < 0:
            raise ValueError(f"parameter {name}={getattr(config, name)} must be finite and >= 0 (0 = the model's)")
