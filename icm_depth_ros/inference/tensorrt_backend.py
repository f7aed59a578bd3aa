"""TensorRT 10 backend: named I/O tensors, execute_async_v3, device buffers through cuda-python.

Device memory: ``cuda.bindings.runtime`` (NVIDIA's cuda-python) rather than pycuda. cuda-python is
NVIDIA's own binding, released in step with each CUDA version, shipped as wheels (no compiler or CUDA
toolkit needed at install time, unlike pycuda's source build), and it is what TensorRT 10's own samples
(samples/python/common_runtime.py) use. pycuda also creates its own CUDA context (pycuda.autoinit),
which fights with onnxruntime's or other libraries' primary context in the same process; cuda-python
uses the runtime API's primary context like TensorRT does.

An engine only runs on the GPU, TensorRT version and precision it was built for: the fingerprint
``<engine>.fingerprint.json`` beside it (fingerprint.py) says which; a mismatch is
refused with the list of differences, or the engine is rebuilt from the ONNX file when allowed.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from icm_depth_ros.inference import fingerprint as fingerprints
from icm_depth_ros.inference.contract import (
    DEPTH_OUTPUT, INPUT_NAME, MEMBERSHIP_OUTPUT, ModelInfo, ModelLoadError, check_io_names,
)
from icm_depth_ros.inference.engine_builder import build_engine, onnx_metadata
from icm_depth_ros.inference.fingerprint import is_engine_path


def engine_decision(engine_path: Path, found: dict | None, mismatches: list[str], onnx_path: str,
                    allow_build: bool) -> str:
    """'use', 'build' or raise ModelLoadError: what to do with an engine given its fingerprint check.

    Pure logic (no TensorRT), so the refusal rules are tested on machines without a GPU.
    ``found`` is None when the engine or its fingerprint file is missing.
    """
    if found is not None and not mismatches:
        return "use"
    reason = (
        f"{engine_path}: no engine or no fingerprint file beside it" if found is None
        else f"engine {engine_path} does not match this machine: {'; '.join(mismatches)}"
    )
    if not allow_build:
        raise ModelLoadError(f"{reason}; rebuild it, or set allow_engine_build:=true to rebuild from ONNX")
    if not onnx_path or not Path(onnx_path).is_file():
        raise ModelLoadError(f"{reason}; cannot rebuild: ONNX file {onnx_path!r} not found (set onnx_path)")
    return "build"


def check_cuda(result):
    """cuda-python returns (error, *values); raise on error, return the values."""
    from cuda.bindings import runtime as cudart

    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        raise RuntimeError(f"CUDA error {error}")
    return values[0] if len(values) == 1 else values


class TensorRTBackend:
    name = "tensorrt"

    @classmethod
    def open(cls, model_path: str, *, onnx_path: str, precision: str, allow_build: bool, logger):
        """Check the engine's fingerprint against this machine, build it when needed and allowed, load it.

        model_path: an engine (model.engine) or an ONNX file, whose engine is then model.engine beside it.
        """
        try:
            import tensorrt  # noqa: F401
            from cuda.bindings import runtime  # noqa: F401
        except ImportError as error:
            raise ModelLoadError(f"TensorRT backend needs tensorrt and cuda-python: {error}") from None

        engine_path = Path(model_path) if is_engine_path(model_path) else Path(model_path).with_suffix(".engine")
        try:
            expected = fingerprints.machine_fingerprint()
        except RuntimeError as error:  # no GPU visible, no driver
            raise ModelLoadError(f"TensorRT cannot run here: {error}") from None
        expected["precision"] = precision
        if onnx_path and Path(onnx_path).is_file():  # the engine must come from this very ONNX file
            expected["onnx_sha256"] = fingerprints.file_sha256(onnx_path)
        found, mismatches = None, []
        if engine_path.is_file() and fingerprints.fingerprint_path(engine_path).is_file():
            try:
                found = fingerprints.read_fingerprint(engine_path)
            except ValueError as error:
                logger.warning(str(error))
            else:
                fields = fingerprints.compare_fingerprint(found, expected)
                mismatches = [fingerprints.describe_mismatch(found, expected, [field]) for field in fields]
        if engine_decision(engine_path, found, mismatches, onnx_path, allow_build) == "build":
            logger.warning(f"building TensorRT engine {engine_path} from {onnx_path} ({precision}); this takes minutes")
            try:  # the builder training/export.py uses (engine_builder.py); writes the fingerprint
                found = build_engine(onnx_path, engine_path, precision)
            except (RuntimeError, ValueError) as error:
                raise ModelLoadError(f"cannot rebuild TensorRT engine {engine_path} from {onnx_path}: {error}") from None
        return cls(engine_path, onnx_path, found.get("model_metadata") or None)

    def __init__(self, engine_path: Path, onnx_path: str = "", model_metadata: dict | None = None):
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._trt_logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"{engine_path}: TensorRT cannot deserialize this engine")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        check_io_names(inputs, [n for n in names if n not in inputs], str(engine_path))
        metadata = model_metadata or _onnx_metadata(onnx_path, engine_path)
        try:
            self.info = ModelInfo.from_metadata(metadata, source=f"{engine_path} (fingerprint model_metadata)")
        except ValueError as error:
            raise ModelLoadError(str(error)) from None
        self.context = self.engine.create_execution_context()
        height, width = self.info.input_height, self.info.input_width
        self.context.set_input_shape(INPUT_NAME, (1, 3, height, width))  # fixes a dynamic batch at 1
        self.stream = check_cuda(cudart.cudaStreamCreate())
        self.host, self.device_buffers = {}, {}
        for name in names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            pinned = check_cuda(cudart.cudaMallocHost(nbytes))  # page-locked: async copies really are async
            buffer = (ctypes.c_byte * nbytes).from_address(pinned)
            self.host[name] = np.frombuffer(buffer, dtype=dtype).reshape(shape)
            self.device_buffers[name] = check_cuda(cudart.cudaMalloc(nbytes))
            self.context.set_tensor_address(name, self.device_buffers[name])
        self.device = "cuda"
        self.description = f"tensorrt {trt.__version__} ({engine_path.name})"

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from cuda.bindings import runtime as cudart

        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        np.copyto(self.host[INPUT_NAME], image, casting="same_kind")
        check_cuda(cudart.cudaMemcpyAsync(self.device_buffers[INPUT_NAME], self.host[INPUT_NAME].ctypes.data,
                                          self.host[INPUT_NAME].nbytes, to_device, self.stream))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for name in (DEPTH_OUTPUT, MEMBERSHIP_OUTPUT):
            check_cuda(cudart.cudaMemcpyAsync(self.host[name].ctypes.data, self.device_buffers[name],
                                              self.host[name].nbytes, to_host, self.stream))
        check_cuda(cudart.cudaStreamSynchronize(self.stream))
        return self.host[DEPTH_OUTPUT].astype(np.float32), self.host[MEMBERSHIP_OUTPUT].astype(np.float32)

    def __del__(self):
        try:
            from cuda.bindings import runtime as cudart

            for pointer in getattr(self, "device_buffers", {}).values():
                cudart.cudaFree(pointer)
            for array in getattr(self, "host", {}).values():
                cudart.cudaFreeHost(array.ctypes.data)
        except Exception:
            pass


def _onnx_metadata(onnx_path: str, engine_path: Path | None = None) -> dict[str, str]:
    """The contract metadata of the ONNX file (for engines whose fingerprint lacks model_metadata)."""
    if not onnx_path or not Path(onnx_path).is_file():
        raise ModelLoadError(f"{engine_path}: no model_metadata in its fingerprint and ONNX file {onnx_path!r} missing")
    return onnx_metadata(onnx_path)
