"""Inference backends for an exported ICM model (see model_contract.py): ONNX Runtime and TensorRT.

Each backend takes image [1, 3, H, W] float32 RGB in [0, 1] and returns
(depth [1, 1, H, W] metres, membership [1, N, H/4, W/4]). Heavy imports (onnxruntime, tensorrt,
cuda.bindings) happen inside the constructors, so a machine without TensorRT can still import this.
``open_backend`` chooses one by name: "onnxruntime", "tensorrt" or "auto" (TensorRT where it works).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from icm_depth_ros.model_contract import DEPTH_OUTPUT, INPUT_NAME, MEMBERSHIP_OUTPUT, ModelInfo

BACKENDS = ("auto", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16")
ONNXRUNTIME_PROVIDERS = ("auto", "cpu", "cuda")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model cannot be used: missing file, wrong contract, mismatched engine. The text says which."""


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU, or its CUDA execution provider where present."""

    name = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike, provider: str = "auto", threads: int = 0):
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"model_path {str(path)!r}: no such file")
        if provider not in ONNXRUNTIME_PROVIDERS:
            raise ModelLoadError(f"onnxruntime provider {provider!r} is not one of {ONNXRUNTIME_PROVIDERS}")
        available = ort.get_available_providers()
        if provider == "cuda" and "CUDAExecutionProvider" not in available:
            raise ModelLoadError(f"onnxruntime_provider 'cuda' requested but this onnxruntime offers {available}")
        use_cuda = provider in ("auto", "cuda") and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for corrupt files
            raise ModelLoadError(f"model_path {str(path)!r}: onnxruntime cannot load it: {error}") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        try:
            self.info = ModelInfo.from_metadata(metadata, source=str(path))
        except ValueError as error:
            raise ModelLoadError(str(error)) from None
        check_io_names(
            [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()], str(path)
        )
        self.device = "cuda" if use_cuda else "cpu"
        self.description = f"onnxruntime ({self.session.get_providers()[0]})"

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        depth, membership = self.session.run([DEPTH_OUTPUT, MEMBERSHIP_OUTPUT], {INPUT_NAME: image})
        return depth, membership


def check_io_names(inputs: list[str], outputs: list[str], source: str) -> None:
    """The graph must have exactly the contract's tensor names (model_contract.py)."""
    if INPUT_NAME not in inputs or DEPTH_OUTPUT not in outputs or MEMBERSHIP_OUTPUT not in outputs:
        raise ModelLoadError(
            f"{source}: tensors are inputs {inputs}, outputs {outputs}; the contract needs input "
            f"{INPUT_NAME!r} and outputs {DEPTH_OUTPUT!r}, {MEMBERSHIP_OUTPUT!r}"
        )


def is_engine_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix in ENGINE_SUFFIXES


def sibling_onnx(path: str | os.PathLike) -> Path:
    """The ONNX file an engine was built from, by convention beside it: model.engine -> model.onnx."""
    return Path(path).with_suffix(".onnx")


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
):
    """Open the backend named ``backend`` (one of BACKENDS) for ``model_path`` (.onnx or a TensorRT engine).

    tensorrt: model_path is an engine (its fingerprint must match this machine, or it is rebuilt from
        ``onnx_path`` when ``allow_engine_build``), or an ONNX file (an engine is built beside it when allowed).
    onnxruntime: model_path is an ONNX file; for an engine path the ONNX beside it (or ``onnx_path``) is used.
    auto: tensorrt; if that fails for any reason, onnxruntime, and the reason is logged.
    """
    logger = logger or log
    if backend not in BACKENDS:
        raise ModelLoadError(f"backend {backend!r} is not one of {BACKENDS}")
    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision {precision!r} is not one of {PRECISIONS}")
    if not model_path:
        raise ModelLoadError("model_path is empty: set it to an exported .onnx file or a TensorRT engine")
    if not Path(model_path).is_file():
        raise ModelLoadError(f"model_path {model_path!r}: no such file")
    onnx_file = onnx_path or (model_path if not is_engine_path(model_path) else str(sibling_onnx(model_path)))

    def open_onnxruntime():
        if not Path(onnx_file).is_file():
            raise ModelLoadError(
                f"onnxruntime needs an ONNX model: {onnx_file!r} does not exist (model_path {model_path!r}; "
                "set onnx_path)"
            )
        return OnnxRuntimeBackend(onnx_file, onnxruntime_provider, threads)

    if backend == "onnxruntime":
        return open_onnxruntime()

    from icm_depth_ros.tensorrt_backend import TensorRTBackend

    try:
        return TensorRTBackend.open(model_path, onnx_path=onnx_file, precision=precision,
                                    allow_build=allow_engine_build, logger=logger)
    except ModelLoadError as error:
        if backend == "tensorrt":
            raise
        logger.warning(f"backend auto: TensorRT unavailable ({error}); using onnxruntime")
    backend_object = open_onnxruntime()
    logger.info(f"backend auto: using {backend_object.description} for {onnx_file}")
    return backend_object
