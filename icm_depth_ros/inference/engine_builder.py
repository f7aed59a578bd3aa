"""ONNX -> TensorRT 10 engine with a fingerprint beside it (fingerprint.py).

The one engine builder: ``training/export.py --engine`` (through training/exporting/tensorrt_build.py, which adds
the INT8 calibrator fed with dataset images) and the node's ``allow_engine_build`` rebuild
(tensorrt_backend.py) both call ``build_engine`` here, so an engine rebuilt on the vehicle
is built the way the exported one was. No PyTorch: the node runs without it.

TensorRT 10 Python API: explicit-batch network from the ONNX parser, a workspace limit
(``IBuilderConfig.set_memory_pool_limit``), a timing cache kept on disk between builds, one
optimisation profile over the batch, and INT8 through a calibrator the caller makes. ``tensorrt`` is
imported only when a build runs; ``missing_requirements`` says what this machine lacks without it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from icm_depth_ros.inference import contract
from icm_depth_ros.inference import fingerprint as fingerprints

DEFAULT_WORKSPACE_GIB = 4.0

# (calibration input shape [B, 3, H, W], calibration cache path) -> a trt.IInt8Calibrator
CalibratorFactory = Callable[[tuple[int, int, int, int], Path], object]


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


def onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The ONNX file's metadata_props (the model contract: input size, depth range) as a dict."""
    import onnx  # noqa: PLC0415

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str = "fp16",
    *,
    calibrator_factory: CalibratorFactory | None = None,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache_path: str | Path | None = None,
    max_batch: int = 1,
) -> dict:
    """Build ``engine_path`` from ``onnx_path`` and write ``<engine>.fingerprint.json``; returns the fingerprint.

    precision: "fp32" (TF32 off), "fp16" (FP16 kernels allowed) or "int8" (INT8 with FP16/FP32 fallback;
    needs ``calibrator_factory(shape, cache_path)``, called with the calibration input shape, one image
    per batch, and ``<engine>.calib.cache``: delete that file to recalibrate). A dynamic-batch ONNX gets
    one profile over batch 1..``max_batch`` (optimised for ``max_batch``). The timing cache (default
    ``<engine>.timing.cache``) makes rebuilds on the same GPU fast.
    """
    if precision not in fingerprints.PRECISIONS:
        raise ValueError(f"precision must be one of {fingerprints.PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibrator_factory is None:
        raise ValueError(
            "int8 needs an INT8 calibrator fed with images; build int8 engines with "
            "training/export.py --precision int8 --calib DIR"
        )
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
        calibrator = calibrator_factory(calibration_shape, engine_path.with_name(engine_path.name + ".calib.cache"))
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
        model_metadata=onnx_metadata(onnx_path),
    )
    fingerprints.write_fingerprint(engine_path, fingerprint)
    return fingerprint
