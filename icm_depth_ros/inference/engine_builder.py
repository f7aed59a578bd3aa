"""ONNX -> TensorRT engine (10.3 through 11.x) with a fingerprint beside it (fingerprint.py).

The one engine builder: ``training/export.py --engine`` (through training/exporting/tensorrt_build.py)
and the node's ``allow_engine_build`` rebuild (tensorrt_backend.py) both call ``build_engine`` here, so
an engine rebuilt on the vehicle is built the way the exported one was. No PyTorch: the node runs
without it.

One build path for every supported TensorRT: a strongly typed network. The precision is the ONNX
file's (onnx_precision.py): the fp32 export gives an fp32 engine (TF32 off), its fp16 variant an fp16
engine, its INT8 Q/DQ variant an int8 engine. No precision builder flag and no calibrator is used:
TensorRT 11 removed both (``BuilderFlag.FP16``/``INT8``, ``IInt8*Calibrator``, ``int8_calibrator``,
``set_calibration_profile``), and on 10.x they are deprecated (implicit INT8 since 10.1, FP16 since
10.12) and cannot be combined with a strongly typed network. The weakly typed path is not kept for
10.3-10.11 either: those versions build the same strongly typed Q/DQ network, and one path means the
INT8 file checked in ONNX Runtime is exactly what TensorRT runs. What differs between versions is
selected by what the bindings offer (``hasattr``), never by version strings: TensorRT 11 keeps
``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` but ignores it; a release without it is strongly
typed already.

Also: a workspace limit (``set_memory_pool_limit``), one optimisation profile over a dynamic batch, and
a timing cache on disk per TensorRT version **and device** (GPU name and compute capability: JetPack 6
and an x86 machine both report TensorRT "10.3.0", and kernel timings of one GPU say nothing about
another). The cache is offered with ``set_timing_cache(..., ignore_mismatch=False)`` and its result is
checked: a cache TensorRT cannot read or rejects (corrupt, another device) is deleted with a log line
and the engine is built without it. The fingerprint is written right after the engine, before the
cache, so a failure to save the cache never leaves an engine without its fingerprint (which would be
rebuilt on every start).
``tensorrt`` is imported only when a build runs; ``missing_requirements`` says what this machine
lacks without it.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from icm_depth_ros.inference import contract
from icm_depth_ros.inference import fingerprint as fingerprints
from icm_depth_ros.inference import onnx_precision

DEFAULT_WORKSPACE_GIB = 4.0
SUPPORTED_TENSORRT = "TensorRT 10.3 or newer 10.x, or 11.x"

log = logging.getLogger(__name__)


class TensorRTUnavailable(RuntimeError):
    """This machine cannot build or run TensorRT engines; the message lists what is missing."""


def tensorrt_version_supported(version: str) -> bool:
    """10.3 <= version < 12: JetPack 6 (10.3), JetPack 7 (10.13-10.16), DRIVE Thor and pip (11.x)."""
    match = re.match(r"(\d+)\.(\d+)", str(version))
    if match is None:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    return (major == 10 and minor >= 3) or major == 11


def missing_requirements() -> list[str]:
    """What this machine lacks to build TensorRT engines (empty list = nothing). Cheap: no torch."""
    missing = []
    try:
        import tensorrt  # noqa: PLC0415

        if not tensorrt_version_supported(tensorrt.__version__):
            missing.append(f"{SUPPORTED_TENSORRT} (installed: TensorRT {tensorrt.__version__})")
    except ImportError as error:
        missing.append(f"{SUPPORTED_TENSORRT}: the Python package 'tensorrt' (import failed: {error})")
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


def timing_cache_path_for(engine_path: str | Path, tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
    """``model.engine`` -> ``model.engine.tensorrt-10.3.0.NVIDIA-Jetson-AGX-Orin.sm87.timing.cache``: one cache
    per TensorRT version and device (name and compute capability, as the fingerprint records them)."""
    engine_path = Path(engine_path)
    device = re.sub(r"[^A-Za-z0-9.]+", "-", str(gpu_name)).strip("-") or "gpu"
    capability = "sm" + str(compute_capability).replace(".", "")
    return engine_path.with_name(f"{engine_path.name}.tensorrt-{tensorrt_version}.{device}.{capability}.timing.cache")


def offer_timing_cache(config, cache_path: Path, where: str, logger=None):
    """Give ``config`` the timing cache at ``cache_path`` (an empty one when there is none); returns it.

    A file TensorRT cannot read, or one it rejects with ``ignore_mismatch=False`` (another device's), is
    deleted with a warning and an empty cache is used instead: the build goes on without it, and the
    cache written afterwards is this device's. ``where`` names the TensorRT version and device for the log.
    """
    logger = logger or log
    data = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if not data:
        raise RuntimeError(f"TensorRT ({where}) could not create an empty timing cache; see its log above")
    logger.warning(f"timing cache {cache_path} ({len(data)} bytes) is not usable by {where} (corrupt, or another "
                   "device's): deleted; the engine is built without it and a new cache is written")
    cache_path.unlink(missing_ok=True)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise RuntimeError(f"TensorRT ({where}) could not create an empty timing cache; see its log above")
    return cache


def check_build_source(onnx_path: str | Path, precision: str | None):
    """(precision, model sha256, ONNX model) of the file an engine is built from; ValueError when it does not fit.

    ``precision`` None = the file's own. An int8 file must pass the symmetric Q/DQ check.
    """
    model = onnx_precision.load_graph(onnx_path)
    carried = onnx_precision.file_precision(onnx_path, model)
    if precision is not None and precision != carried:
        raise ValueError(
            f"{onnx_path} carries {carried}, not {precision}: TensorRT builds the precision of the ONNX graph; "
            f"build from the {precision} variant ({onnx_precision.variant_path(onnx_path, precision).name} beside "
            "the fp32 export, written by training/export.py)"
        )
    if carried == "int8":
        errors = onnx_precision.symmetric_quantization_errors(model)
        if errors:
            raise ValueError(f"{onnx_path}: TensorRT's explicit quantization would reject it: {'; '.join(errors[:3])}"
                             + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""))
    return carried, onnx_precision.model_sha256(onnx_path, model), model


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str | None = None,
    *,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache_path: str | Path | None = None,
    max_batch: int = 1,
    logger=None,
) -> dict:
    """Build ``engine_path`` from ``onnx_path`` and write ``<engine>.fingerprint.json``; returns the fingerprint.

    precision: None, or what the caller expects the file to carry ("fp32", "fp16", "int8"; a file of
    another precision is refused by name). A dynamic-batch ONNX gets one profile over batch
    1..``max_batch`` (optimised for ``max_batch``). The timing cache (default
    ``timing_cache_path_for(engine, version, gpu, capability)``) makes rebuilds on the same GPU fast; one
    that does not fit is discarded (``offer_timing_cache``). ``logger``: where that is said (default: this
    module's logging logger).
    """
    if precision is not None and precision not in fingerprints.PRECISIONS:
        raise ValueError(f"precision must be one of {fingerprints.PRECISIONS}, got {precision!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    precision, model_sha256, model = check_build_source(onnx_path, precision)
    require_tensorrt()
    import tensorrt as trt  # noqa: PLC0415

    machine = fingerprints.machine_fingerprint()
    timing_cache_path = Path(timing_cache_path) if timing_cache_path else timing_cache_path_for(
        engine_path, trt.__version__, machine["gpu_name"], machine["compute_capability"])
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT {trt.__version__}'s ONNX parser rejected the graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    offer_timing_cache(config, timing_cache_path, f"TensorRT {trt.__version__} on {machine['gpu_name']} "
                       f"(compute capability {machine['compute_capability']})", logger)

    image = next((network.get_input(i) for i in range(network.num_inputs) if network.get_input(i).name == contract.INPUT_NAME), None)
    if image is None:
        raise RuntimeError(f"{onnx_path}: no input named {contract.INPUT_NAME!r}")
    shape = tuple(image.shape)  # the file's: [B, H, W, 3] uint8 pixels, or [B, 3, H, W] (older files); B = -1 when dynamic
    if shape[0] == -1:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        profile = builder.create_optimization_profile()
        profile.set_shape(contract.INPUT_NAME, (1, *shape[1:]), (max_batch, *shape[1:]), (max_batch, *shape[1:]))
        config.add_optimization_profile(profile)
    else:
        max_batch = shape[0]
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 (on by default) keeps 10 mantissa bits: not fp32 parity

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} ({precision}); see its log above")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    fingerprint = fingerprints.make_fingerprint(
        **machine,
        precision=precision,
        input_shape=list(shape),
        max_batch=max_batch,
        onnx_sha256=model_sha256,
        model_metadata={prop.key: prop.value for prop in model.metadata_props},
    )
    fingerprints.write_fingerprint(engine_path, fingerprint)  # before the cache: the engine is complete now
    try:
        cache = config.get_timing_cache()
        if cache is None:
            raise RuntimeError("TensorRT returned no timing cache")
        timing_cache_path.write_bytes(bytes(cache.serialize()))
    except (OSError, RuntimeError) as error:
        (logger or log).warning(f"timing cache {timing_cache_path} not written ({error}); the engine {engine_path} "
                                "is fine, the next build times its kernels again")
    return fingerprint


def network_flags(trt) -> int:
    """Creation flags of a strongly typed network: STRONGLY_TYPED where the bindings have it, else 0
    (a release without the flag is strongly typed only)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)
