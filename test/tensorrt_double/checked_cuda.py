"""A ``cuda.bindings.runtime`` double checked against the real cuda-bindings module of one version.

The real module imports without a GPU (its CUDA library is loaded on the first call), so its
functions' signatures (Cython functions: ``inspect.signature`` works) and their documented return
tuples ("Returns" section: ``cudaError_t`` and one value per output) are at hand. A call the project
makes is bound against the real signature, and the stand-in implementation below must return as many
values as the real function documents. Enums and ``cudaStream_t`` are the real classes.

``failures`` ({function name: cudaError_t name}) makes those calls fail as the real ones do on a GPU:
the error and ``None`` for each documented output (cudaMalloc of an 8 GB Orin out of memory:
``{"cudaMalloc": "cudaErrorMemoryAllocation"}``); ``failures_after`` ({name: n}) lets the first n calls
of a function succeed first (a context lost while running). Failed calls are logged in ``calls`` too.

"Device" memory is host memory here (ctypes buffers), so copies really move bytes and a TensorRT
double can compute into the output buffers: the call sequence is checked end to end.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import inspect
import types


class CheckedCudaRuntime(types.ModuleType):
    IMPLEMENTED = ("cudaSetDeviceFlags", "cudaStreamCreate", "cudaMalloc", "cudaMallocHost", "cudaMemcpyAsync",
                   "cudaStreamSynchronize", "cudaStreamDestroy", "cudaFree", "cudaFreeHost")

    def __init__(self, real, version: str):
        super().__init__("cuda.bindings.runtime")
        self.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings.runtime", None)
        self._real, self.version = real, version
        self.calls: list[tuple[str, dict]] = []
        self.buffers: dict[int, ctypes.Array] = {}  # address -> memory, host and "device" alike
        self.streams: list[int] = []
        self.destroyed_streams: list[int] = []
        self.device_flags: int | None = None
        self.failures: dict[str, str] = {}
        self.failures_after: dict[str, int] = {}
        self.succeeded: dict[str, int] = {}

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if not hasattr(self._real, name):
            raise AttributeError(f"cuda-bindings {self.version}: cuda.bindings.runtime has no attribute {name!r}")
        real = getattr(self._real, name)
        if not callable(real) or isinstance(real, type):
            return real  # enums (cudaError_t, cudaMemcpyKind), cudaStream_t
        if name not in self.IMPLEMENTED:
            raise NotImplementedError(f"the cuda double does not implement {name} (real signature {inspect.signature(real)})")
        return self._checked(name, real)

    def _checked(self, name: str, real):
        signature = inspect.signature(real)
        returned = documented_return_count(real)
        implementation = getattr(self, "_" + name)

        def call(*args, **kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"cuda-bindings {self.version}: {name}{signature}: {error}") from None
            self.calls.append((name, dict(bound.arguments)))
            if name in self.failures and self.succeeded.get(name, 0) >= self.failures_after.get(name, 0):
                return (getattr(self._real.cudaError_t, self.failures[name]),) + (None,) * (returned - 1)
            self.succeeded[name] = self.succeeded.get(name, 0) + 1
            result = implementation(**bound.arguments)
            if len(result) != returned:
                raise AssertionError(f"double bug: {name} returns {len(result)} values, the real one {returned}")
            return result

        return call

    def _success(self):
        return self._real.cudaError_t.cudaSuccess

    def _allocate(self, size: int) -> int:
        if not isinstance(size, int) or size <= 0:
            raise TypeError(f"cuda-bindings {self.version}: size must be a positive int, got {size!r}")
        memory = (ctypes.c_byte * size)()
        self.buffers[ctypes.addressof(memory)] = memory
        return ctypes.addressof(memory)

    def _cudaSetDeviceFlags(self, flags):
        if not isinstance(flags, int):
            raise TypeError(f"cuda-bindings {self.version}: cudaSetDeviceFlags flags must be an int, got {flags!r}")
        self.device_flags = flags
        return (self._success(),)

    def _cudaStreamDestroy(self, stream):
        if not isinstance(stream, self._real.cudaStream_t):
            raise TypeError(f"cudaStreamDestroy stream must be a cudaStream_t, got {stream!r}")
        handle = ctypes.c_void_p.from_address(stream.getPtr()).value or 0
        if handle not in self.streams or handle in self.destroyed_streams:
            return (self._real.cudaError_t.cudaErrorInvalidResourceHandle,)
        self.destroyed_streams.append(handle)
        return (self._success(),)

    def _cudaStreamCreate(self):
        handle = 0x5000 + 16 * len(self.streams)
        self.streams.append(handle)
        return self._success(), self._real.cudaStream_t(handle)

    def _cudaMalloc(self, size):
        return self._success(), self._allocate(size)

    def _cudaMallocHost(self, size):
        return self._success(), self._allocate(size)

    def _cudaMemcpyAsync(self, dst, src, count, kind, stream):
        if not isinstance(kind, self._real.cudaMemcpyKind):
            raise TypeError(f"cuda-bindings {self.version}: cudaMemcpyAsync kind must be a cudaMemcpyKind, got {kind!r}")
        if not isinstance(stream, self._real.cudaStream_t):
            raise TypeError(f"cuda-bindings {self.version}: cudaMemcpyAsync stream must be a cudaStream_t, got {stream!r}")
        for address in (dst, src):
            if not any(start <= address and address + count <= start + len(buffer) for start, buffer in self.buffers.items()):
                raise ValueError(f"cudaMemcpyAsync: {count} bytes at {address:#x} are outside every allocation")
        ctypes.memmove(dst, src, count)
        return (self._success(),)

    def _cudaStreamSynchronize(self, stream):
        if not isinstance(stream, self._real.cudaStream_t):
            raise TypeError(f"cudaStreamSynchronize stream must be a cudaStream_t, got {stream!r}")
        return (self._success(),)

    def _cudaFree(self, devPtr):  # noqa: N803 - the real parameter name
        self.buffers.pop(devPtr, None)
        return (self._success(),)

    def _cudaFreeHost(self, ptr):
        return (self._success(),)  # the host array may still be referenced by NumPy; the memory is the test's


def documented_return_count(function) -> int:
    """How many values a cuda-bindings function returns: the entries of its docstring's Returns section."""
    doc = inspect.cleandoc(function.__doc__ or "")
    if "Returns\n-------\n" not in doc:
        return 1
    section = doc.split("Returns\n-------\n", 1)[1].split("\n\n", 1)[0]
    return sum(1 for line in section.splitlines() if line.strip() and not line.startswith(" "))
