"""TensorRT engines from training/export.py: the INT8 calibrator fed with dataset images, and ``run_engine``.

The builder itself (workspace limit, timing cache, precision flags, batch profile, fingerprint) is
icm_depth_ros/inference/engine_builder.py, shared with the node's engine rebuild; its names are re-exported here.
``build_engine`` below adds what needs images and PyTorch: INT8 calibration through
``IInt8EntropyCalibrator2``, with PyTorch CUDA tensors as device buffers. ``tensorrt`` and ``torch`` are
imported only when a build or run needs them.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from icm_depth_ros.inference import engine_builder
from icm_depth_ros.inference import contract
from icm_depth_ros.inference.engine_builder import (  # noqa: F401 - re-exported: the builder's home is icm_depth_ros
    DEFAULT_WORKSPACE_GIB,
    TensorRTUnavailable,
    missing_requirements,
    require_tensorrt,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_CALIBRATION_IMAGES = 64  # enough for stable entropy histograms on a conv net; each costs a forward pass
CALIBRATION_POLICY = "crop"  # the node's default resize policy (icm_depth_ros/pipeline.py)


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

    ``icm_depth_ros.inference.engine_builder.build_engine`` with, for "int8", a calibrator over
    ``calibration_images`` ([3, H, W] float32 in [0, 1]); see that function for the other arguments.
    """
    calibrator_factory = None
    if precision == "int8":
        if calibration_images is None:
            raise ValueError("int8 needs calibration images (--calib DIR)")
        calibrator_factory = functools.partial(make_calibrator, calibration_images)
    return engine_builder.build_engine(
        onnx_path, engine_path, precision,
        calibrator_factory=calibrator_factory, workspace_gib=workspace_gib,
        timing_cache_path=timing_cache_path, max_batch=max_batch,
    )


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
