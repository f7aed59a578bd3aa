"""ONNX -> TensorRT 10 engine with a fingerprint beside it (icm_depth_ros/engine_fingerprint.py).

TensorRT 10 Python API: explicit-batch network from the ONNX parser, a workspace limit
(``IBuilderConfig.set_memory_pool_limit``), a timing cache kept on disk between builds, one
optimisation profile over the batch, and INT8 through ``IInt8EntropyCalibrator2`` fed with dataset
images. ``tensorrt`` (and, for INT8 calibration, a CUDA build of PyTorch for device buffers) are
imported only when a build runs; ``missing_requirements`` says what this machine lacks without them.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from icm_depth_ros import engine_fingerprint as fingerprints
from icm_depth_ros import model_contract as contract

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_WORKSPACE_GIB = 4.0
DEFAULT_CALIBRATION_IMAGES = 64  # enough for stable entropy histograms on a conv net; each costs a forward pass
CALIBRATION_POLICY = "crop"  # the node's default resize policy (icm_depth_ros/pipeline.py)


class TensorRTUnavailable(RuntimeError):
    """This machine cannot build or run TensorRT engines; the message lists what is missing."""


def missing_requirements() -> list[str]:
    """What this machine lacks to build TensorRT 10 engines (empty list = nothing). Cheap: no torch."""
    missing = []
    try:
        import tensorrt  # noqa: PLC0415

        if not tensorrt.__version__.startswith("10."):
            missing.append(f"TensorRT 10 (found TensorRT {tensorrt.__version__})")
    except ImportError as error:
        missing.append(f"TensorRT 10's Python package 'tensorrt' (import failed: {error})")
    try:
        fingerprints.query_gpu()
    except RuntimeError as error:
        missing.append(f"an NVIDIA GPU ({error})")
    return missing


def require_tensorrt() -> None:
    missing = missing_requirements()
    if missing:
        raise TensorRTUnavailable(
            "cannot build a TensorRT engine on this machine; missing: " + "; ".join(missing)
            + ". Export the ONNX model here and build the engine on the GPU machine."
        )


def load_calibration_images(directory: str | Path, height: int, width: int, limit: int = DEFAULT_CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``limit`` images of ``directory`` (sorted by name) as float32 [3, height, width] RGB in [0, 1],
    brought to the model size the way the node does (``icm_depth_ros.geometry``, crop policy)."""
    import cv2  # noqa: PLC0415
    from icm_depth_ros.geometry import InputGeometry  # noqa: PLC0415

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"calibration directory not found: {directory}")
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise ValueError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) for INT8 calibration")
    images = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: not a readable image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        resized = InputGeometry.build(rgb.shape[:2], (height, width), CALIBRATION_POLICY).to_model(rgb)
        images.append(np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32) / 255.0)
    return images


def make_calibrator(images: Iterable[np.ndarray], input_shape: tuple[int, int, int, int], cache_path: Path):
    """An IInt8EntropyCalibrator2 that feeds ``images`` ([3, H, W] float32) one batch of ``input_shape`` at a time."""
    import tensorrt as trt  # noqa: PLC0415
    import torch  # noqa: PLC0415 - device buffers without pycuda

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("INT8 calibration needs a CUDA build of PyTorch that sees the GPU (torch.cuda)")

    class ImageCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches: Iterator[np.ndarray] = _batches(images, input_shape[0])
            self.device_input = torch.empty(input_shape, dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return input_shape[0]

        def get_batch(self, names, *args):  # TensorRT 10 passes the input names only
            batch = next(self.batches, None)
            if batch is None:
                return None  # calibration ends
            self.device_input.copy_(torch.from_numpy(batch))
            torch.cuda.synchronize()
            return [int(self.device_input.data_ptr())]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_path.write_bytes(bytes(cache))

    return ImageCalibrator()


def _batches(images: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    batch = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            yield np.ascontiguousarray(np.stack(batch), dtype=np.float32)  # [B, 3, H, W]
            batch = []


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str = "fp16",
    *,
    calibration_images: Iterable[np.ndarray] | None = None,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache_path: str | Path | None = None,
    max_batch: int = 1,
) -> dict:
    """Build ``engine_path`` from ``onnx_path`` and write ``<engine>.fingerprint.json``; returns the fingerprint.

    precision: "fp32", "fp16" (FP16 kernels allowed) or "int8" (INT8 with FP16/FP32 fallback; needs
    ``calibration_images``, [3, H, W] float32 in [0, 1]). A dynamic-batch ONNX gets one profile
    over batch 1..``max_batch`` (optimised for ``max_batch``). The timing cache (default
    ``<engine>.timing.cache``) makes rebuilds on the same GPU fast. The calibration cache is
    ``<engine>.calib.cache``: delete it to recalibrate.
    """
    if precision not in fingerprints.PRECISIONS:
        raise ValueError(f"precision must be one of {fingerprints.PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibration_images is None:
        raise ValueError("int8 needs calibration images (--calib DIR)")
    require_tensorrt()
    import tensorrt as trt  # noqa: PLC0415

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    timing_cache_path = Path(timing_cache_path) if timing_cache_path else engine_path.with_name(engine_path.name + ".timing.cache")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network is explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT's ONNX parser rejected the graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    cache = config.create_timing_cache(timing_cache_path.read_bytes() if timing_cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    image = next((network.get_input(i) for i in range(network.num_inputs) if network.get_input(i).name == contract.INPUT_NAME), None)
    if image is None:
        raise RuntimeError(f"{onnx_path}: no input named {contract.INPUT_NAME!r}")
    shape = tuple(image.shape)  # [B, 3, H, W], B = -1 when dynamic
    dynamic = shape[0] == -1
    if dynamic:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        profile = builder.create_optimization_profile()
        profile.set_shape(contract.INPUT_NAME, (1, *shape[1:]), (max_batch, *shape[1:]), (max_batch, *shape[1:]))
        config.add_optimization_profile(profile)
    else:
        max_batch = shape[0]
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 (on by default) keeps 10 mantissa bits: not fp32 parity
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None  # kept referenced here until the build ends: TensorRT calls back into it
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibration_shape = (1, *shape[1:])  # one image per calibration batch
        if dynamic:
            calibration_profile = builder.create_optimization_profile()
            calibration_profile.set_shape(contract.INPUT_NAME, calibration_shape, calibration_shape, calibration_shape)
            config.set_calibration_profile(calibration_profile)
        else:
            calibration_shape = shape
        calibrator = make_calibrator(calibration_images, calibration_shape, engine_path.with_name(engine_path.name + ".calib.cache"))
        config.int8_calibrator = calibrator

    serialized = builder.build_serialized_network(network, config)
    del calibrator
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} ({precision}); see its log above")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))

    fingerprint = fingerprints.make_fingerprint(
        **fingerprints.machine_fingerprint(),
        precision=precision,
        input_shape=list(shape),
        max_batch=max_batch,
        onnx_sha256=fingerprints.file_sha256(onnx_path),
        model_metadata=_onnx_metadata(onnx_path),
    )
    fingerprints.write_fingerprint(engine_path, fingerprint)
    return fingerprint


def _onnx_metadata(onnx_path: Path) -> dict[str, str]:
    import onnx  # noqa: PLC0415

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def run_engine(engine_path: str | Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run an engine once (tests, parity checks): image float32 [B, 3, H, W] -> {"depth", "membership"}.

    Uses named I/O tensors and ``execute_async_v3`` with PyTorch CUDA buffers.
    """
    require_tensorrt()
    import tensorrt as trt  # noqa: PLC0415
    import torch  # noqa: PLC0415

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise RuntimeError(f"{engine_path}: TensorRT cannot deserialize this engine (built by another version or GPU?)")
    context = engine.create_execution_context()
    context.set_input_shape(contract.INPUT_NAME, tuple(image.shape))
    buffers = {}
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            buffers[name] = torch.from_numpy(np.ascontiguousarray(image)).to("cuda", dtype)
        else:
            buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, buffers[name].data_ptr())
    torch.cuda.synchronize()  # the input copy ran on the default stream
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError(f"{engine_path}: execute_async_v3 failed")
    stream.synchronize()
    return {name: buffers[name].float().cpu().numpy() for name in (contract.DEPTH_OUTPUT, contract.MEMBERSHIP_OUTPUT)}
