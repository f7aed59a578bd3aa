"""Which backend runs an exported ICM model: ``open_backend`` by name, "onnxruntime", "tensorrt" or "auto".

Every backend takes the graph's input for B frames, 1 <= B <= its ``max_batch`` (contract.py: uint8 pixels
[B, H, W, 3], or float32 [B, 3, H, W] in [0, 1] for files exported before issue 21; ``contract.model_input``
makes either from pixels), and returns (depth [B, 1, H, W] metres, cluster int32 [B, H/4, W/4], firmness
float32 [B, H/4, W/4]). Heavy imports (onnxruntime, tensorrt, cuda.bindings) happen inside the
backends' constructors, so a machine without TensorRT can still import this.
"""
from __future__ import annotations

import logging
from pathlib import Path

from icm_depth_ros.inference.contract import ModelLoadError
from icm_depth_ros.inference.fingerprint import is_engine_path, sibling_onnx
from icm_depth_ros.inference.onnxruntime_backend import ONNXRUNTIME_PROVIDERS, OnnxRuntimeBackend  # noqa: F401 - re-exported
from icm_depth_ros.inference.tensorrt_backend import TensorRTBackend

BACKENDS = ("auto", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")  # of the TensorRT engine; each built from the ONNX variant of that precision

log = logging.getLogger(__name__)


def open_backend(
    backend: str,
    model_path: str,
    *,
    precision: str = "fp16",
    onnx_path: str = "",
    allow_engine_build: bool = False,
    onnxruntime_provider: str = "auto",
    threads: int = 0,
    logger=None,
    engine_max_batch: int = 0,
    build_in_background: bool = False,
):
    """Open the backend named ``backend`` (one of BACKENDS) for ``model_path`` (.onnx or a TensorRT engine).

    tensorrt: model_path is an engine (its fingerprint must match this machine, or it is rebuilt from
        ``onnx_path`` when ``allow_engine_build``), or an ONNX file (an engine is built beside it when allowed).
    onnxruntime: model_path is an ONNX file; for an engine path the ONNX beside it (or ``onnx_path``) is used.
    auto: tensorrt; if that fails for any reason, onnxruntime, and the reason is logged; there, an
        onnxruntime_provider "cuda" that does not start runs on the CPU (logged) instead of failing.
    engine_max_batch: profile maximum of an engine (re)built here from a dynamic-batch ONNX file (0 = the
        replaced engine's, else 1); the node passes its number of cameras.
    build_in_background: an allowed (re)build runs on a thread of its own; until it is done opening raises
        EngineBuilding (a ModelLoadError: ``auto`` uses onnxruntime meanwhile), afterwards it loads the engine.
    """
    logger = logger or log
    if backend not in BACKENDS:
        raise ModelLoadError(f"backend {backend!r} is not one of {BACKENDS}")
    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision {precision!r} is not one of {PRECISIONS}")
    if not model_path:
        raise ModelLoadError("model_path is empty: set it to an exported .onnx file or a TensorRT engine")
    rebuildable = backend != "onnxruntime" and allow_engine_build and is_engine_path(model_path)
    if not Path(model_path).is_file() and not rebuildable:  # a missing engine may be built from the ONNX file
        raise ModelLoadError(f"model_path {model_path!r}: no such file")
    onnx_file = onnx_path or (model_path if not is_engine_path(model_path) else str(sibling_onnx(model_path)))

    def open_onnxruntime():
        if not Path(onnx_file).is_file():
            raise ModelLoadError(
                f"onnxruntime needs an ONNX model: {onnx_file!r} does not exist (model_path {model_path!r}; "
                "set onnx_path)"
            )
        return OnnxRuntimeBackend(onnx_file, onnxruntime_provider, threads, logger=logger,
                                  cpu_fallback=backend == "auto")

    if backend == "onnxruntime":
        return open_onnxruntime()

    try:
        return TensorRTBackend.open(model_path, onnx_path=onnx_file, precision=precision,
                                    allow_build=allow_engine_build, logger=logger, build_max_batch=engine_max_batch,
                                    build_in_background=build_in_background)
    except ModelLoadError as error:
        if backend == "tensorrt":
            raise
        logger.warning(f"backend auto: TensorRT unavailable ({error}); using onnxruntime")
    backend_object = open_onnxruntime()
    logger.info(f"backend auto: using {backend_object.description} for {onnx_file}")
    return backend_object
