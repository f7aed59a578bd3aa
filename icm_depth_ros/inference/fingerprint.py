"""Engine fingerprints: what a serialized TensorRT engine was built for, kept beside it as JSON.

A TensorRT engine runs only on the TensorRT version and GPU architecture that built it, and it
silently embodies one ONNX file, one precision and one input shape. ``training/export.py`` writes
``<engine>.fingerprint.json`` next to every engine; the node builds the fingerprint it expects on the
machine it runs on and compares the two before it deserializes anything.

Pure Python (no PyTorch, no ROS). TensorRT and the CUDA driver are imported/loaded only by
``machine_fingerprint``.

Fingerprint (a JSON object)::

    format              1
    tensorrt_version    "10.3.0"              trt.__version__ of the builder (engines are per version:
                                              a 10.x engine does not run on 11.x, nor the reverse)
    gpu_name            "NVIDIA H200"         CUDA device name
    compute_capability  "9.0"                 major.minor
    precision           "fp32" | "fp16" | "int8"
    input_shape         [B, H, W, 3]          the engine's input: uint8 pixels (rgb_uint8_nhwc), or
                        or [B, 3, H, W]       float32 for an older rgb_float32_nchw_0_1 model; B = -1 for
                                              a dynamic batch
    max_batch           int                   largest batch of the optimisation profile
    onnx_sha256         hex digest of the fp32 ONNX export the engine's model is (for an fp16/int8
                                              engine, the export its variant was made from)
    model_metadata      {icm.* key: value}    the ONNX metadata (contract.py), so the engine
                                              alone tells the node its input size and depth range
    built_at            ISO-8601 UTC time     informational, never compared
"""
from __future__ import annotations

import ctypes
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from icm_depth_ros.inference import contract

FORMAT_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
FINGERPRINT_SUFFIX = ".fingerprint.json"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

# Fields that must agree between an engine and the machine/model that wants to run it, in the order
# mismatches are reported. The first three describe the machine, the rest the model.
MACHINE_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability")
MODEL_FIELDS = ("precision", "input_shape", "max_batch", "onnx_sha256")
COMPARED_FIELDS = MACHINE_FIELDS + MODEL_FIELDS

# CUdevice_attribute values from cuda.h (stable since CUDA 6).
_CU_ATTRIBUTE_CC_MAJOR = 75
_CU_ATTRIBUTE_CC_MINOR = 76


def is_engine_path(path: str | Path) -> bool:
    return Path(path).suffix in ENGINE_SUFFIXES


def sibling_onnx(path: str | Path) -> Path:
    """The ONNX file an engine was built from, by convention beside it: model.engine -> model.onnx."""
    return Path(path).with_suffix(".onnx")


def fingerprint_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.fingerprint.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + FINGERPRINT_SUFFIX)


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_fingerprint(
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    input_shape: list[int] | tuple[int, ...],
    max_batch: int,
    onnx_sha256: str,
    model_metadata: dict[str, str] | None = None,
) -> dict:
    """Assemble a fingerprint; validates the precision and the input shape: that of the model's pixel format
    (``model_metadata``'s icm.pixel_format; either layout without it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    shape = check_input_shape(input_shape, (model_metadata or {}).get(contract.META_PIXEL_FORMAT))
    return {
        "format": FORMAT_VERSION,
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": str(gpu_name),
        "compute_capability": str(compute_capability),
        "precision": precision,
        "input_shape": shape,
        "max_batch": int(max_batch),
        "onnx_sha256": str(onnx_sha256),
        "model_metadata": dict(model_metadata or {}),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


INPUT_LAYOUTS = {contract.PIXEL_FORMAT_UINT8: "[B, H, W, 3]", contract.PIXEL_FORMAT_FLOAT32: "[B, 3, H, W]"}


def check_input_shape(input_shape, pixel_format: str | None = None) -> list[int]:
    """``input_shape`` as ints when it is an engine input of ``pixel_format`` (contract.PIXEL_FORMATS; None: of
    either) with B > 0 or -1 (dynamic); else ValueError naming the shape and the layout expected."""
    shape = [int(d) for d in input_shape]
    formats = contract.PIXEL_FORMATS if pixel_format is None else (pixel_format,)
    for layout in formats:
        if layout not in INPUT_LAYOUTS:
            raise ValueError(f"pixel format {layout!r} is not one of {contract.PIXEL_FORMATS}")
        if len(shape) != 4 or min(shape[1:]) <= 0 or not (shape[0] > 0 or shape[0] == -1):
            continue
        colours = shape[3] if layout == contract.PIXEL_FORMAT_UINT8 else shape[1]
        if colours == 3:
            return shape
    wanted = " or ".join(f"{INPUT_LAYOUTS[layout]} ({layout})" for layout in formats)
    raise ValueError(f"input_shape must be {wanted} with B > 0 or -1 (dynamic), got {list(input_shape)}")


def write_fingerprint(engine_path: str | Path, fingerprint: dict) -> Path:
    path = fingerprint_path(engine_path)
    path.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    return path


def read_fingerprint(engine_path: str | Path) -> dict:
    """Read the fingerprint beside ``engine_path``; a missing or unreadable file raises ValueError naming it."""
    path = fingerprint_path(engine_path)
    if not path.is_file():
        raise ValueError(f"{path}: no fingerprint beside engine {engine_path}; rebuild the engine with training/export.py")
    try:
        fingerprint = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON fingerprint ({error})") from None
    if not isinstance(fingerprint, dict):
        raise ValueError(f"{path}: fingerprint must be a JSON object, got {type(fingerprint).__name__}")
    return fingerprint


def compare_fingerprint(found: dict, expected: dict) -> list[str]:
    """Names of the fields in which ``found`` (the engine's) differs from ``expected`` (this machine/model).

    Only fields present in ``expected`` are compared, so a caller that does not know e.g. the GPU can
    leave it out. A field missing from ``found`` counts as a mismatch. Empty list = the engine fits.
    """
    mismatched = []
    for field in COMPARED_FIELDS:
        if field not in expected:
            continue
        if field not in found or _normalise(field, found[field]) != _normalise(field, expected[field]):
            mismatched.append(field)
    return mismatched


def describe_mismatch(found: dict, expected: dict, fields: list[str] | None = None) -> str:
    """One line per mismatched field: ``field: engine has X, expected Y`` (for logs and errors)."""
    fields = compare_fingerprint(found, expected) if fields is None else fields
    notes = {"tensorrt_version": " (an engine runs only on the TensorRT version that built it)"}
    return "; ".join(
        f"{field}: engine has {found.get(field, '<missing>')!r}, expected {expected[field]!r}{notes.get(field, '')}"
        for field in fields
    )


def _normalise(field: str, value):
    if field == "input_shape":
        return [int(d) for d in value]
    if field == "max_batch":
        return int(value)
    return str(value).strip()


def _load_driver():
    for library in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            return ctypes.CDLL(library)
        except OSError:
            continue
    raise RuntimeError("no NVIDIA driver: libcuda.so.1 cannot be loaded (is there an NVIDIA GPU and driver?)")


def driver_cuda_version() -> str:
    """The CUDA version the driver supports, "major.minor" (cuDriverGetVersion), e.g. "12.6"."""
    cuda = _load_driver()
    version = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        raise RuntimeError("the NVIDIA driver did not report its CUDA version (cuDriverGetVersion failed)")
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def query_gpu(device: int = 0) -> tuple[str, str]:
    """(name, "major.minor") of CUDA device ``device`` through the driver library (libcuda), no toolkit needed.

    Raises RuntimeError saying what is missing when there is no driver or no such device.
    """
    cuda = _load_driver()
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        raise RuntimeError("the NVIDIA driver reports no usable CUDA device (check CUDA_VISIBLE_DEVICES and nvidia-smi)")
    if not 0 <= device < count.value:
        raise RuntimeError(f"CUDA device {device} requested, the driver sees {count.value} device(s)")
    handle = ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    status = (
        cuda.cuDeviceGet(ctypes.byref(handle), device)
        or cuda.cuDeviceGetName(name, len(name), handle)
        or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTRIBUTE_CC_MAJOR, handle)
        or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTRIBUTE_CC_MINOR, handle)
    )
    if status != 0:
        raise RuntimeError(f"CUDA driver call failed with CUresult {status} while querying device {device}")
    return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"


def machine_fingerprint(device: int = 0) -> dict:
    """The machine fields (TensorRT version, GPU name, compute capability) of this machine."""
    try:
        import tensorrt  # noqa: PLC0415 - optional dependency, only present on GPU machines
    except ImportError as error:
        raise RuntimeError(f"TensorRT's Python package 'tensorrt' is not importable ({error})") from None
    gpu_name, capability = query_gpu(device)
    return {"tensorrt_version": tensorrt.__version__, "gpu_name": gpu_name, "compute_capability": capability}


def expected_fingerprint(
    onnx_path: str | Path, precision: str, input_shape: list[int], max_batch: int | None = None, device: int = 0
) -> dict:
    """The fingerprint an engine must carry to be run here with this fp32 ONNX export (compared fields only)."""
    expected = dict(machine_fingerprint(device))
    expected.update(precision=precision, input_shape=[int(d) for d in input_shape], onnx_sha256=file_sha256(onnx_path))
    if max_batch is not None:
        expected["max_batch"] = int(max_batch)
    return expected
