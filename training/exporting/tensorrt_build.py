"""TensorRT engines from training/export.py: calibration images for the INT8 variant, and ``run_engine``.

The builder itself (strongly typed network, workspace limit, timing cache per TensorRT version and GPU, batch
profile, fingerprint) is icm_depth_ros/inference/engine_builder.py, shared with the node's engine
rebuild; its names are re-exported here. There is no calibrator: INT8 precision comes from the
symmetric Q/DQ variant (variants.write_int8), calibrated on images at export time by
``load_calibration_images``. ``tensorrt`` and ``torch`` are imported only when an engine runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from icm_depth_ros.inference import contract
from icm_depth_ros.inference.engine_builder import (  # noqa: F401 - re-exported: the builder's home is icm_depth_ros
    DEFAULT_WORKSPACE_GIB,
    TensorRTUnavailable,
    build_engine,
    missing_requirements,
    require_tensorrt,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_CALIBRATION_IMAGES = 64  # enough for stable activation ranges on a conv net; each costs a forward pass
CALIBRATION_POLICY = "crop"  # the node's default resize policy (icm_depth_ros/processing/pipeline.py)


def load_calibration_images(directory: str | Path, height: int, width: int, limit: int = DEFAULT_CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``limit`` images of ``directory`` (sorted by name) as float32 [3, height, width] RGB in [0, 1],
    brought to the model size the way the node does (``icm_depth_ros.processing.geometry``, crop policy): the INT8
    variant's calibration set."""
    import cv2  # noqa: PLC0415
    from icm_depth_ros.processing.geometry import InputGeometry  # noqa: PLC0415

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


def run_engine(engine_path: str | Path, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run an engine once (tests, parity checks) as ``onnx_export.run_onnxruntime`` runs a graph: dataset images
    float32 [B, 3, H, W] in [0, 1] (or the pixels uint8 [B, H, W, 3]) -> the engine's outputs by name,
    {"depth", "cluster" (int32), "firmness"} for an engine that takes uint8 pixels (rgb_uint8_nhwc; it is given the
    pixels), {"depth", "membership"} for one of an older rgb_float32_nchw_0_1 file (given the float images).

    Uses named I/O tensors and ``execute_async_v3`` with PyTorch CUDA buffers.
    """
    require_tensorrt()
    import tensorrt as trt  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from training.exporting.onnx_export import graph_input  # noqa: PLC0415 - imports torch

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise RuntimeError(f"{engine_path}: TensorRT cannot deserialize this engine (built by another version or GPU?)")
    image = graph_input(image, takes_pixels=engine.get_tensor_dtype(contract.INPUT_NAME) == trt.DataType.UINT8)
    context = engine.create_execution_context()
    if not context.set_input_shape(contract.INPUT_NAME, tuple(image.shape)):
        raise RuntimeError(f"{engine_path}: the engine refused input shape {tuple(image.shape)}; it takes "
                           f"{tuple(engine.get_tensor_shape(contract.INPUT_NAME))} (-1: any batch of its profile)")
    buffers, outputs = {}, []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            buffers[name] = torch.from_numpy(np.ascontiguousarray(image)).to("cuda", dtype)
        else:
            buffers[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            outputs.append(name)
        context.set_tensor_address(name, buffers[name].data_ptr())
    torch.cuda.synchronize()  # the input copy ran on the default stream
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError(f"{engine_path}: execute_async_v3 failed")
    stream.synchronize()
    return {name: (buffers[name].float() if buffers[name].is_floating_point() else buffers[name]).cpu().numpy()
            for name in outputs}
