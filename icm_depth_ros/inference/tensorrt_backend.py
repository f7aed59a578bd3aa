"""TensorRT backend (10.3 through 11.x): named I/O tensors, execute_async_v3, device buffers through cuda-python.

Device memory: ``cuda.bindings.runtime`` (NVIDIA's cuda-python) rather than pycuda. cuda-python is
NVIDIA's own binding, released in step with each CUDA version, shipped as wheels (no compiler or CUDA
toolkit needed at install time, unlike pycuda's source build), and it is what TensorRT's own samples
(samples/python/common_runtime.py) use. pycuda also creates its own CUDA context (pycuda.autoinit),
which fights with onnxruntime's or other libraries' primary context in the same process; cuda-python
uses the runtime API's primary context like TensorRT does. Its major version follows the driver's
CUDA: cuda-python 12.x for CUDA 12 (JetPack 6), 13.x for CUDA 13 (JetPack 7, r580+ drivers); the
stream is handed to TensorRT as a plain int read through ``getPtr()``, which both lines offer, not by
the implicit ``int(stream)`` conversion.

An engine only runs on the GPU, TensorRT version and precision it was built for: the fingerprint
``<engine>.fingerprint.json`` beside it (fingerprint.py) says which; a mismatch is refused with the
list of differences, or the engine is rebuilt from the ONNX file of its precision when allowed.

I/O: the model contract's (contract.py). An engine built from a ``rgb_uint8_nhwc`` file takes the camera's
uint8 pixels [B, H, W, 3] (a quarter of the bytes of float32 to upload) and does the conversion,
normalisation and layout on the GPU, and it returns the membership already reduced to two small maps,
cluster (int32) and firmness; one from an older ``rgb_float32_nchw_0_1`` file takes float32 [B, 3, H, W] and
returns the membership, which is reduced here on the host (``contract.reduce_membership``).

Batches: ``infer`` takes B frames for any B from 1 to the engine's largest batch
(``max_batch``): the input shape of a static engine (1 for the contract's static export), or the
maximum of optimisation profile 0 of a dynamic-batch engine (``training/export.py --dynamic-batch
--max-batch N``: profile min 1, opt N, max N), read from the engine and checked against the
fingerprint's ``max_batch``. Host and device buffers are sized once for ``max_batch`` and reused;
each call sets the input shape of its batch (checked), queries the output shapes for it, copies B
images in, enqueues once, copies B results out and synchronises once. A batch above ``max_batch`` is
refused (ValueError), not split: the node never asks for one (``DepthPipeline.max_batch`` is this
``max_batch``, and cameras beyond it wait in their latest-frame slots for the next turn, where a newer
frame can still replace theirs; docs/node.md).

Failures: every CUDA call is checked (``check_cuda``: CudaError naming the function, the CUDA error and,
for allocations, the bytes asked for). While opening, any CUDA or TensorRT failure (out of memory, an
engine that does not deserialize, a refused input shape, an output shape left at -1, engine I/O of a
type NumPy has no equivalent for, such as bf16) becomes ModelLoadError, so ``backend: auto`` falls back
to ONNX Runtime and ``backend: tensorrt`` refuses to configure with that text; what was already created
is released. While running, the same failures raise InferenceError (CudaError is one), which the
node's inference thread counts (docs/node.md). Before its first CUDA call the backend sets
``cudaDeviceScheduleBlockingSync``, so ``cudaStreamSynchronize`` sleeps instead of spinning a core
(CUDA Runtime API, cudaSetDeviceFlags); ``close()`` destroys the stream and frees the buffers.
"""
from __future__ import annotations

import ctypes
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from icm_depth_ros.inference import fingerprint as fingerprints
from icm_depth_ros.inference import onnx_precision
from icm_depth_ros.inference.contract import (
    INPUT_NAME, InferenceError, ModelInfo, ModelLoadError, check_io_names, reduced_outputs,
)
from icm_depth_ros.inference.engine_builder import SUPPORTED_TENSORRT, build_engine, tensorrt_version_supported
from icm_depth_ros.inference.fingerprint import is_engine_path
from icm_depth_ros.inference.onnx_precision import onnx_metadata


class EngineBuilding(ModelLoadError):
    """An engine is being built in the background (``build_in_background``): open again when it is done."""

    def __init__(self, message: str, engine_path: Path):
        super().__init__(message)
        self.engine_path = Path(engine_path)


class BackgroundBuilds:
    """Engine builds running on threads of their own, one per engine path, for callers that must not block
    (the node's configure runs on its executor; a Swin-L build on an Orin takes tens of minutes).

    ``start`` runs a build on a thread and raises EngineBuilding; ``check`` (at every open) raises
    EngineBuilding while it runs, and once it finished forgets it: a failed build raises ModelLoadError
    with its error (its traceback logged), so the next open starts a new one; a finished one lets the open
    go on to load the engine it wrote.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._builds: dict[str, dict] = {}

    def running(self, engine_path: Path) -> bool:
        with self._lock:
            build = self._builds.get(str(engine_path))
            return build is not None and build["state"] == "running"

    def elapsed_s(self, engine_path: Path) -> float:
        with self._lock:
            build = self._builds.get(str(engine_path))
            return 0.0 if build is None else time.monotonic() - build["started"]

    def check(self, engine_path: Path, logger) -> None:
        with self._lock:
            build = self._builds.get(str(engine_path))
            if build is None:
                return
            if build["state"] == "running":
                raise EngineBuilding(building_message(build), engine_path)
            del self._builds[str(engine_path)]
        if build["state"] == "failed":
            logger.warning(f"the background build of TensorRT engine {build['description']} failed:\n{build['traceback']}")
            raise ModelLoadError(f"cannot rebuild TensorRT engine {build['description']}: {build['error']}")
        elapsed = build["finished"] - build["started"]
        logger.info(f"TensorRT engine {build['description']} built in the background in {elapsed:.0f} s")

    def start(self, engine_path: Path, description: str, build, logger):
        """Run ``build()`` on a thread; raises EngineBuilding (always)."""
        entry = {"state": "running", "started": time.monotonic(), "description": description}
        with self._lock:
            self._builds[str(engine_path)] = entry
        threading.Thread(target=self._run, args=(str(engine_path), build), name=f"engine build {engine_path.name}",
                         daemon=True).start()
        logger.warning(f"building TensorRT engine {description} in the background; this takes minutes (tens of "
                       "minutes for Swin-L on an Orin)")
        raise EngineBuilding(building_message(entry), engine_path)

    def _run(self, key: str, build) -> None:
        try:
            build()
        except Exception as error:  # noqa: BLE001 - reported to the next open, with its traceback
            update = {"state": "failed", "error": f"{type(error).__name__}: {error}",
                      "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))}
        else:
            update = {"state": "done"}
        with self._lock:
            self._builds[key].update(update, finished=time.monotonic())


def building_message(build: dict) -> str:
    elapsed = time.monotonic() - build["started"]
    return (f"building TensorRT engine {build['description']} in the background: {elapsed:.0f} s so far; configure "
            "again when it is done (with autostart the node retries by itself)")


BUILDS = BackgroundBuilds()  # one per process: a second configure finds the build the first one started


def engine_decision(engine_path: Path, found: dict | None, mismatches: list[str], onnx_path: str,
                    allow_build: bool) -> str:
    """'use', 'build' or raise ModelLoadError: what to do with an engine given its fingerprint check.

    Pure logic (no TensorRT), so the refusal rules are tested on machines without a GPU.
    ``found`` is None when the engine or its fingerprint file is missing; ``onnx_path`` is the file
    a rebuild would start from.
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


def build_source(onnx_path: str, precision: str) -> str:
    """The ONNX file an engine of ``precision`` is built from: ``onnx_path`` when it carries that
    precision, else its variant beside it (model.onnx -> model.fp16.onnx) when present, else
    ``onnx_path`` (the builder then refuses it, naming the variant to write)."""
    if not onnx_path or not Path(onnx_path).is_file():
        return onnx_path
    try:
        if onnx_precision.file_precision(onnx_path) == precision:
            return onnx_path
    except ValueError as error:
        raise ModelLoadError(str(error)) from None
    variant = onnx_precision.variant_path(onnx_path, precision)
    return str(variant) if variant.is_file() else onnx_path


def installed_versions() -> str:
    """'tensorrt 11.4.0.106, cuda-python (cuda-bindings) 13.5.0, driver CUDA 13.0' as far as importable."""
    parts = []
    try:
        import tensorrt  # noqa: PLC0415

        parts.append(f"tensorrt {tensorrt.__version__}")
    except ImportError:
        parts.append("tensorrt not installed")
    parts.append(f"cuda-python (cuda-bindings) {cuda_bindings_version() or 'not installed'}")
    try:
        parts.append(f"driver CUDA {fingerprints.driver_cuda_version()}")
    except RuntimeError:
        parts.append("no NVIDIA driver")
    return ", ".join(parts)


def cuda_bindings_version() -> str | None:
    try:
        import cuda.bindings  # noqa: PLC0415
    except ImportError:
        return None
    return str(getattr(cuda.bindings, "__version__", "unknown"))


def check_runtime_versions() -> None:
    """TensorRT 10.3+/11.x and a cuda-python whose CUDA major the driver supports; else ModelLoadError naming them."""
    try:
        import tensorrt  # noqa: F401, PLC0415
        from cuda.bindings import runtime  # noqa: F401, PLC0415
    except ImportError as error:
        raise ModelLoadError(
            f"TensorRT backend needs tensorrt ({SUPPORTED_TENSORRT}) and cuda-python: {error} "
            f"(installed: {installed_versions()})"
        ) from None
    if not tensorrt_version_supported(tensorrt.__version__):
        raise ModelLoadError(f"TensorRT {tensorrt.__version__} is installed; this node needs {SUPPORTED_TENSORRT} "
                             f"(installed: {installed_versions()})")
    bindings = cuda_bindings_version() or ""
    try:
        driver = fingerprints.driver_cuda_version()
    except RuntimeError as error:  # no GPU visible, no driver
        raise ModelLoadError(f"TensorRT cannot run here: {error} (installed: {installed_versions()})") from None
    if bindings.split(".")[0].isdigit() and int(bindings.split(".")[0]) > int(driver.split(".")[0]):
        raise ModelLoadError(
            f"cuda-python (cuda-bindings) {bindings} needs a CUDA {bindings.split('.')[0]} driver, this driver supports "
            f"CUDA {driver}: install cuda-python {driver.split('.')[0]}.x (installed: {installed_versions()})"
        )


def stream_handle(stream) -> int:
    """The CUstream value of a cuda-python ``cudaStream_t`` as an int, for ``execute_async_v3``.

    Read through ``getPtr()`` (the address of the handle), which cuda-bindings 12.x and 13.x both
    have, instead of handing TensorRT the object and relying on an implicit ``int()`` conversion
    (deprecated in cuda-bindings 13 by NVIDIA's notes; 13.5.0 emitted no warning for it here).
    """
    return ctypes.c_void_p.from_address(stream.getPtr()).value or 0


class CudaError(InferenceError):
    """A CUDA runtime call failed; ``error`` is the cudaError_t name (e.g. cudaErrorMemoryAllocation)."""

    def __init__(self, call: str, error: str, nbytes: int | None = None):
        self.call, self.error, self.nbytes = call, error, nbytes
        asked = f" asking for {nbytes} bytes ({nbytes / (1 << 20):.1f} MiB)" if nbytes is not None else ""
        super().__init__(f"CUDA {call}{asked} failed: {error}")


def check_cuda(result, call: str, nbytes: int | None = None):
    """cuda-python returns (error, *values): the values, or CudaError naming ``call``, the error and ``nbytes``."""
    from cuda.bindings import runtime as cudart

    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        raise CudaError(call, getattr(error, "name", str(error)), nbytes)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


# engine I/O the node reads and writes: np.float32, np.float16, the pixels (np.uint8), the clusters (np.int32)
NUMPY_IO_TYPES = ("FLOAT", "HALF", "UINT8", "INT32")


def io_dtype(trt, engine, name: str, engine_path: Path) -> np.dtype:
    """The NumPy dtype of engine tensor ``name``; ModelLoadError for a type the node cannot feed or read."""
    dtype = engine.get_tensor_dtype(name)
    if getattr(dtype, "name", str(dtype)) not in NUMPY_IO_TYPES:
        raise ModelLoadError(
            f"{engine_path}: tensor {name!r} is {getattr(dtype, 'name', dtype)}; the node exchanges "
            f"{', '.join(NUMPY_IO_TYPES)} tensors with an engine (NumPy has no bf16/fp8/int4): export the model with "
            "the contract's I/O (uint8 pixels in, float32 depth and firmness and int32 clusters out; training/export.py "
            "writes it) and rebuild the engine")
    return np.dtype(trt.nptype(dtype))


class TensorRTBackend:
    name = "tensorrt"

    @classmethod
    def open(cls, model_path: str, *, onnx_path: str, precision: str, allow_build: bool, logger,
             build_max_batch: int = 0, build_in_background: bool = False):
        """Check the engine's fingerprint against this machine, build it when needed and allowed, load it.

        model_path: an engine (model.engine) or an ONNX file, whose engine is then model.engine beside it.
        onnx_path: the fp32 export (or a variant); a rebuild uses the variant of ``precision`` (build_source).
        build_max_batch: the profile maximum of an engine rebuilt from a dynamic-batch ONNX file (the node
            passes its number of cameras); 0 = the replaced engine's ``max_batch``, 1 when there was none.
        build_in_background: a build runs on a thread (BUILDS) and this raises EngineBuilding until it is done.
        """
        check_runtime_versions()
        engine_path = Path(model_path) if is_engine_path(model_path) else Path(model_path).with_suffix(".engine")
        BUILDS.check(engine_path, logger)  # EngineBuilding while a build writes the engine: not read, not rebuilt
        try:
            expected = fingerprints.machine_fingerprint()
        except RuntimeError as error:  # no GPU visible, no driver
            raise ModelLoadError(f"TensorRT cannot run here: {error}") from None
        expected["precision"] = precision
        source = build_source(onnx_path, precision)
        if source and Path(source).is_file():  # the engine must come from this very model
            try:
                expected["onnx_sha256"] = onnx_precision.model_sha256(source)
            except ValueError as error:  # not a readable ONNX file
                raise ModelLoadError(str(error)) from None
        found, mismatches = None, []
        if engine_path.is_file() and fingerprints.fingerprint_path(engine_path).is_file():
            try:
                found = fingerprints.read_fingerprint(engine_path)
            except ValueError as error:
                logger.warning(str(error))
            else:
                fields = fingerprints.compare_fingerprint(found, expected)
                mismatches = [fingerprints.describe_mismatch(found, expected, [field]) for field in fields]
        if engine_decision(engine_path, found, mismatches, source, allow_build) == "build":
            max_batch = build_max_batch or int((found or {}).get("max_batch", 1) or 1)

            def build():  # the builder training/export.py uses (engine_builder.py); writes the fingerprint
                return build_engine(source, engine_path, precision, max_batch=max_batch, logger=logger)

            if build_in_background:  # the next open after it finished finds the engine and its fingerprint
                BUILDS.start(engine_path, f"{engine_path} from {source} ({precision})", build, logger)
            else:
                logger.warning(f"building TensorRT engine {engine_path} from {source} ({precision}); this takes minutes")
                try:
                    found = build()
                except (RuntimeError, ValueError) as error:
                    raise ModelLoadError(f"cannot rebuild TensorRT engine {engine_path} from {source}: {error}") from None
        try:
            return cls(engine_path, source, found.get("model_metadata") or None, found.get("max_batch"))
        except InferenceError as error:  # CUDA out of memory, a refused shape: nothing loaded
            raise ModelLoadError(f"cannot load TensorRT engine {engine_path}: {error}") from error
        except RuntimeError as error:
            if isinstance(error, ModelLoadError):
                raise
            # TensorRT's bindings raise RuntimeError for a failure in its C++ code (pybind11)
            raise ModelLoadError(f"cannot load TensorRT engine {engine_path}: TensorRT error: {error}") from error

    def __init__(self, engine_path: Path, onnx_path: str = "", model_metadata: dict | None = None,
                 fingerprint_max_batch: int | None = None):
        """Load the engine and allocate its buffers; on any failure what was created is released first."""
        self.stream, self.host, self.device_buffers, self.capacity = None, {}, {}, {}
        try:
            self._load(Path(engine_path), onnx_path, model_metadata, fingerprint_max_batch)
        except BaseException:
            self.close()
            raise

    def _load(self, engine_path: Path, onnx_path: str, model_metadata: dict | None,
              fingerprint_max_batch: int | None) -> None:
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        # before TensorRT's first CUDA call: sleep in cudaStreamSynchronize instead of spinning a core
        check_cuda(cudart.cudaSetDeviceFlags(cudart.cudaDeviceScheduleBlockingSync), "cudaSetDeviceFlags")
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._trt_logger)
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialize this engine "
                                 "(corrupt, or built by another TensorRT version or GPU? rebuild it)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        dtypes = {name: io_dtype(trt, self.engine, name, engine_path) for name in names}
        metadata = model_metadata or _onnx_metadata(onnx_path, engine_path)
        self.metadata = dict(metadata)  # the self-test reads its reference here (self_test.py)
        try:
            self.info = ModelInfo.from_metadata(metadata, source=f"{engine_path} (fingerprint model_metadata)")
        except ValueError as error:
            raise ModelLoadError(str(error)) from None
        check_io_names(inputs, [n for n in names if n not in inputs], str(engine_path), self.info)
        if (dtypes[INPUT_NAME] == np.uint8) != (self.info.input_dtype == np.uint8):
            raise ModelLoadError(f"{engine_path}: input {INPUT_NAME!r} is {dtypes[INPUT_NAME]}, but the model's pixel "
                                 f"format is {self.info.pixel_format!r}: the engine was not built from this model")
        self._outputs = self.info.outputs
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ModelLoadError(f"{engine_path}: TensorRT could not create an execution context (out of GPU "
                                 "memory? see its log above)")
        self.min_batch, self.opt_batch, self.max_batch = self._batch_range(engine_path, fingerprint_max_batch)
        self.frame_shape = self.info.input_shape(1)[1:]  # (H, W, 3) pixels, or (3, H, W) for older files
        self._engine_name = engine_path.name
        self._set_batch(self.max_batch)  # buffers for the largest batch, reused by every smaller one
        self.stream = check_cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_handle = stream_handle(self.stream)
        for name in names:
            shape = tuple(self.context.get_tensor_shape(name))
            if min(shape) < 1:
                raise ModelLoadError(f"{engine_path}: tensor {name!r} has no size at batch {self.max_batch}: {shape}")
            self.capacity[name] = int(np.prod(shape))
            nbytes = self.capacity[name] * dtypes[name].itemsize
            pinned = check_cuda(cudart.cudaMallocHost(nbytes), "cudaMallocHost", nbytes)  # async copies really async
            buffer = (ctypes.c_byte * nbytes).from_address(pinned)
            self.host[name] = np.frombuffer(buffer, dtype=dtypes[name])  # flat; each call views its batch's part
            self.device_buffers[name] = check_cuda(cudart.cudaMalloc(nbytes), "cudaMalloc", nbytes)
            if not self.context.set_tensor_address(name, self.device_buffers[name]):
                raise ModelLoadError(f"{engine_path}: TensorRT refused the device address of tensor {name!r}")
        self.device = "cuda"
        batches = (f"batch {self.max_batch}" if self.min_batch == self.max_batch
                   else f"batch {self.min_batch}-{self.max_batch}, opt {self.opt_batch}")
        self.description = f"tensorrt {trt.__version__} ({engine_path.name}, {batches})"

    def _batch_range(self, engine_path: Path, fingerprint_max_batch: int | None) -> tuple[int, int, int]:
        """(min, opt, max) batch of the engine: a static engine's batch, or optimisation profile 0's."""
        shape = tuple(self.engine.get_tensor_shape(INPUT_NAME))  # [B, H, W, 3] or [B, 3, H, W], B = -1 when dynamic
        if shape[0] == -1:
            minimum, optimum, maximum = (tuple(dims) for dims in self.engine.get_tensor_profile_shape(INPUT_NAME, 0))
            batches = (int(minimum[0]), int(optimum[0]), int(maximum[0]))
        else:
            batches = (int(shape[0]),) * 3
        if batches[0] != 1:
            raise ModelLoadError(
                f"{engine_path}: the engine takes batches of {batches[0]} to {batches[2]}; the node needs batch 1 (one "
                "camera's frame on its own): rebuild it with training/export.py (profile from 1 to --max-batch)")
        if fingerprint_max_batch is not None and int(fingerprint_max_batch) != batches[2]:
            raise ModelLoadError(
                f"{engine_path}: its fingerprint says max_batch {fingerprint_max_batch}, the engine's largest batch is "
                f"{batches[2]}: the fingerprint is not this engine's; rebuild it with training/export.py")
        return batches

    def _set_batch(self, batch: int) -> None:
        shape = (batch, *self.frame_shape)
        if not self.context.set_input_shape(INPUT_NAME, shape):
            raise InferenceError(f"TensorRT engine {self._engine_name} refused input shape {shape} for "
                                 f"{INPUT_NAME!r} (engine batch {self.min_batch}-{self.max_batch}); see its log above")

    def infer(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph input, B = 1 to max_batch (uint8 pixels [B, H, W, 3], or float [B, 3, H, W] for older files)
        -> (depth float32 [B, 1, H, W], cluster int32 [B, H/4, W/4], firmness float32 [B, H/4, W/4]), copies."""
        from cuda.bindings import runtime as cudart

        image = np.asarray(image)
        if image.ndim != 4 or tuple(image.shape[1:]) != self.frame_shape:
            raise ValueError(f"TensorRT engine {self._engine_name} takes images [B, {', '.join(map(str, self.frame_shape))}], "
                             f"got {list(image.shape)}")
        if (image.dtype == np.uint8) != (self.info.input_dtype == np.uint8):
            raise ValueError(f"TensorRT engine {self._engine_name} takes {self.info.input_dtype} input (pixel format "
                             f"{self.info.pixel_format}), got {image.dtype}")
        batch = image.shape[0]
        if not 1 <= batch <= self.max_batch:
            raise ValueError(self._batch_refusal(batch))
        self._set_batch(batch)  # every call: the context runs the shape it was last given
        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        host_input = self.host[INPUT_NAME][: image.size].reshape(image.shape)
        np.copyto(host_input, image, casting="same_kind")
        check_cuda(cudart.cudaMemcpyAsync(self.device_buffers[INPUT_NAME], host_input.ctypes.data, host_input.nbytes,
                                          to_device, self.stream), "cudaMemcpyAsync (input)")
        outputs = {}
        for name in self._outputs:
            shape = tuple(self.context.get_tensor_shape(name))  # for this batch
            size = int(np.prod(shape))
            if min(shape) < 1 or shape[0] != batch or size > self.capacity[name]:  # -1: a dimension left unresolved
                raise InferenceError(f"TensorRT engine {self._engine_name}: output {name!r} has shape {shape} for a batch "
                                   f"of {batch} (buffer holds {self.capacity[name]} values)")
            outputs[name] = self.host[name][:size].reshape(shape)
        if not self.context.execute_async_v3(self.stream_handle):
            raise InferenceError(f"TensorRT engine {self._engine_name}: execute_async_v3 failed (see TensorRT's log)")
        for name, host in outputs.items():
            check_cuda(cudart.cudaMemcpyAsync(host.ctypes.data, self.device_buffers[name], host.nbytes, to_host,
                                              self.stream), f"cudaMemcpyAsync ({name})")
        check_cuda(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        depth, cluster, firmness = reduced_outputs(self.info.pixel_format, [outputs[name] for name in self._outputs])
        return depth.astype(np.float32), cluster.astype(np.int32), firmness.astype(np.float32)  # copies

    def _batch_refusal(self, batch: int) -> str:
        if self.max_batch == 1:
            return (f"TensorRT engine {self._engine_name} has a fixed batch of 1 and was given {batch} images: export "
                    "the model with --dynamic-batch and build the engine with --max-batch N (N = cameras per node) "
                    "to run several cameras' frames in one call")
        return (f"TensorRT engine {self._engine_name} takes batches of 1 to {self.max_batch} (its optimisation "
                f"profile) and was given {batch} images: rebuild it with --max-batch {batch}, or pass at most "
                f"{self.max_batch} (DepthPipeline does: cameras beyond it take the next turn)")

    def close(self) -> None:
        """Destroy the stream and free the buffers this backend created (idempotent; errors ignored: the
        context may already be lost)."""
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            return
        for pointer in self.device_buffers.values():
            cudart.cudaFree(pointer)
        for array in self.host.values():
            cudart.cudaFreeHost(array.ctypes.data)
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
        self.stream, self.host, self.device_buffers = None, {}, {}

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: modules may be gone
            pass


def _onnx_metadata(onnx_path: str, engine_path: Path | None = None) -> dict[str, str]:
    """The contract metadata of the ONNX file (for engines whose fingerprint lacks model_metadata)."""
    if not onnx_path or not Path(onnx_path).is_file():
        raise ModelLoadError(f"{engine_path}: no model_metadata in its fingerprint and ONNX file {onnx_path!r} missing")
    return onnx_metadata(onnx_path)
