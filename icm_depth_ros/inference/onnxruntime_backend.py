"""ONNX Runtime backend for an exported ICM model (see contract.py), on the CPU or its CUDA provider.

Takes the graph's input in the model's pixel format (contract.py: uint8 [B, H, W, 3] pixels, or float32
[B, 3, H, W] in [0, 1] for older files; ``contract.model_input`` makes either from pixels) and returns
(depth [B, 1, H, W] metres, cluster int32 [B, H/4, W/4], firmness float32 [B, H/4, W/4]); B is 1 for a static
export, up to ``max_batch`` for a dynamic-batch one.
onnxruntime is imported in the constructor only. A failure of ONNX Runtime itself while running (its
``Fail``, ``RuntimeException``, ``EPFail``, ``EngineError``: a CUDA provider error, for one) raises
InferenceError naming it, which the node counts as a backend failure (docs/node.md, "When the GPU fails");
``InvalidArgument`` (an input the model does not take) is left as it is.

The CUDA provider (the ``onnxruntime-gpu`` package: the GPU path where TensorRT is not installed) is
asked for with provider "cuda", or "auto" where this onnxruntime offers it. ONNX Runtime does not fail
when the provider cannot start (CUDA or cuDNN libraries missing, no device): it logs an error and runs
the session on the CPU. So after the session is made, the providers it actually runs are checked
(``session.get_providers()``): "cuda" is refused with a line saying so, unless the caller allows a CPU
fallback (``backend: auto``), which, like "auto", runs on the CPU and logs one line saying why.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from icm_depth_ros.inference.contract import (
    INPUT_NAME, META_PRECISION, InferenceError, ModelInfo, ModelLoadError, check_io_names, reduced_outputs,
)

ONNXRUNTIME_PROVIDERS = ("auto", "cpu", "cuda")
RUNTIME_FAILURES = ("Fail", "RuntimeException", "EPFail", "EngineError")  # onnxruntime's, by name (older
# releases lack some of them)


def runtime_failure_types() -> tuple[type, ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(getattr(state, name) for name in RUNTIME_FAILURES if isinstance(getattr(state, name, None), type))


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU, or its CUDA execution provider where present."""

    name = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike, provider: str = "auto", threads: int = 0, *,
                 logger=None, cpu_fallback: bool = False):
        """provider: "auto" (CUDA where this onnxruntime offers it, else the CPU), "cpu" or "cuda".
        cpu_fallback: with "cuda", run on the CPU (logged on ``logger``) instead of refusing when the CUDA
        provider is not offered or does not start (``backend: auto`` passes True)."""
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"model_path {str(path)!r}: no such file")
        if provider not in ONNXRUNTIME_PROVIDERS:
            raise ModelLoadError(f"onnxruntime provider {provider!r} is not one of {ONNXRUNTIME_PROVIDERS}")
        available = ort.get_available_providers()
        if provider == "cuda" and "CUDAExecutionProvider" not in available:
            message = (f"onnxruntime_provider 'cuda' requested but this onnxruntime ({ort.__version__}) offers "
                       f"{available}: install onnxruntime-gpu (not onnxruntime) for ONNX Runtime on a GPU")
            if not cpu_fallback:
                raise ModelLoadError(message)
            _log(logger, "warning", f"{message}; backend auto: running ONNX Runtime on the CPU")
        use_cuda = provider in ("auto", "cuda") and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        # No busy-waiting between operators: spinning pool threads took the CPU from the node's own
        # threads (instance statistics ran at 26 ms instead of 16 beside it on 2 cores; docs/node.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for corrupt files
            raise ModelLoadError(f"model_path {str(path)!r}: onnxruntime cannot load it: {error}") from None
        given = self.session.get_providers()
        if use_cuda and "CUDAExecutionProvider" not in given:
            use_cuda = False
            reason = (f"ONNX Runtime {ort.__version__} was asked for its CUDA provider but runs {path.name} on "
                      f"{given}: the provider did not start (CUDA or cuDNN libraries of the versions this "
                      "onnxruntime-gpu was built for missing, or no GPU visible; ONNX Runtime's own error is in the log above)")
            if provider == "cuda" and not cpu_fallback:
                raise ModelLoadError(f"onnxruntime_provider 'cuda': {reason}; install them, or set "
                                     "onnxruntime_provider:=cpu to run on the CPU")
            _log(logger, "warning", f"onnxruntime_provider {provider!r}: {reason}; running on the CPU")
        metadata = self.session.get_modelmeta().custom_metadata_map
        try:
            self.info = ModelInfo.from_metadata(metadata, source=str(path))
        except ValueError as error:
            raise ModelLoadError(str(error)) from None
        self.metadata = dict(metadata)  # the self-test reads its reference here (self_test.py)
        self.precision = self.metadata.get(META_PRECISION, "fp32")  # the graph's: fp16/int8 variants run as such
        check_io_names(
            [i.name for i in self.session.get_inputs()], [o.name for o in self.session.get_outputs()], str(path),
            self.info,
        )
        self._outputs = list(self.info.outputs)
        # a dynamic batch has no upper bound in ONNX Runtime; 64 caps one call's memory (the node takes at most
        # one frame per camera anyway)
        self.max_batch = 64 if self.info.dynamic_batch else 1
        self.device = "cuda" if use_cuda else "cpu"
        self.description = f"onnxruntime ({given[0]})"
        self._failures = runtime_failure_types()

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph input (see the module's text) -> (depth, cluster, firmness)."""
        try:
            outputs = self.session.run(self._outputs, {INPUT_NAME: image})
        except self._failures as error:
            raise InferenceError(f"{self.description} failed: {type(error).__name__}: {error}") from error
        return reduced_outputs(self.info.pixel_format, outputs)


def _log(logger, level: str, text: str) -> None:
    if logger is None:
        import logging  # noqa: PLC0415

        logger = logging.getLogger(__name__)
    getattr(logger, level)(text)
