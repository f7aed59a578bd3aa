"""Tiny ONNX models that follow the model contract, and their fp16 / INT8 Q/DQ variants, for the doubles.

The models compute what the engine double computes (scenario.network, from ``DEPTH_OFFSET``,
``CLUSTER_GAINS`` and ``CLUSTER_BIAS_STEPS``), so ONNX Runtime on a file and the double's engine built
from it can be compared; test_double.py checks that they agree. Two pixel formats (contract.py): the
current rgb_uint8_nhwc (written as the older form, then rewritten by graph_upgrade.upgrade_graph: Cast,
Mul, Transpose in front, ArgMax + Cast(int32) and ReduceMax behind) and rgb_float32_nchw_0_1 for the
legacy tests.

The batch-1 set is also shipped in contract_models/ and the dynamic-batch set in contract_models/dynamic/
(8 KB each), both rgb_uint8_nhwc: the node-side tests copy them from there, because
writing the INT8 variant takes the training side's export tools (ONNX Runtime's quantization, newer than
the ONNX Runtime a Python 3.10 vehicle has). Regenerate with ``python -m tensorrt_double.models`` from test/;
test_double.py checks that the shipped files are what this module writes.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import icm_depth_ros
from icm_depth_ros.inference import contract, graph_upgrade, onnx_precision

HEIGHT, WIDTH, NUM_CLUSTERS = 16, 32, 4  # the engine double (scenario.py) reads them here
SHIPPED = Path(__file__).resolve().parent / "contract_models"
PRECISIONS = ("fp32", "fp16", "int8")
# depth = DEPTH_OFFSET + the mean of the three channels (a 1x1 convolution)
DEPTH_OFFSET = 1.0
# cluster c's logit: the 4x4 mean of channel c % 3 times CLUSTER_GAINS[c], plus CLUSTER_BIAS_STEPS[c] quarters of
# PIXEL_SCALE / 16 (a 4x4 stride-4 convolution with a bias). On uint8 pixels the logits without the bias are whole
# multiples of PIXEL_SCALE / 16; the quarter steps make two clusters' logits differ by at least PIXEL_SCALE / 64,
# far above float32 rounding, so every runtime picks the same arg-max (no ties).
CLUSTER_GAINS = (2.0, 3.0, 4.0, 5.0)
CLUSTER_BIAS_STEPS = (0, 1, 2, 3)


def cluster_bias() -> np.ndarray:
    """The membership convolution's bias [N], float32: exact multiples of PIXEL_SCALE / 64."""
    return (np.array(CLUSTER_BIAS_STEPS, np.float32) * (contract.PIXEL_SCALE / np.float32(64))).astype(np.float32)


def float_graph(dynamic_batch: bool) -> onnx.ModelProto:
    """The rgb_float32_nchw_0_1 model: image [B, 3, H, W] -> depth [B, 1, H, W], membership [B, N, H/4, W/4]."""
    batch = "batch" if dynamic_batch else 1
    depth_weight = np.full((1, 3, 1, 1), 1.0 / 3.0, np.float32)
    cluster_weight = np.zeros((NUM_CLUSTERS, 3, 4, 4), np.float32)
    for cluster, gain in enumerate(CLUSTER_GAINS):
        cluster_weight[cluster, cluster % 3] = gain / 16.0  # the 4x4 mean, scaled
    weights = [numpy_helper.from_array(depth_weight, "depth_w"),
               numpy_helper.from_array(cluster_weight, "cluster_w"),
               numpy_helper.from_array(cluster_bias(), "cluster_b"),
               numpy_helper.from_array(np.array(DEPTH_OFFSET, np.float32), "offset")]
    nodes = [helper.make_node("Conv", [contract.INPUT_NAME, "depth_w"], ["d0"]),
             helper.make_node("Add", ["d0", "offset"], [contract.DEPTH_OUTPUT]),
             helper.make_node("Conv", [contract.INPUT_NAME, "cluster_w", "cluster_b"], ["m0"], strides=[4, 4]),
             helper.make_node("Softmax", ["m0"], [contract.MEMBERSHIP_OUTPUT], axis=1)]
    graph = helper.make_graph(
        nodes, "contract",
        [helper.make_tensor_value_info(contract.INPUT_NAME, TensorProto.FLOAT, [batch, 3, HEIGHT, WIDTH])],
        [helper.make_tensor_value_info(contract.DEPTH_OUTPUT, TensorProto.FLOAT, [batch, 1, HEIGHT, WIDTH]),
         helper.make_tensor_value_info(contract.MEMBERSHIP_OUTPUT, TensorProto.FLOAT,
                                       [batch, NUM_CLUSTERS, HEIGHT // 4, WIDTH // 4])],
        initializer=weights)
    # IR version 8 (ONNX 1.12, opset 17): what ONNX Runtime 1.12, the newest for Humble's numpy, can load
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    info = contract.ModelInfo(HEIGHT, WIDTH, contract.PIXEL_FORMAT_FLOAT32, 0.5, 80.0, NUM_CLUSTERS, 4,
                              "bindings_test", "none", icm_depth_ros.__version__, dynamic_batch)
    helper.set_model_props(model, info.to_metadata())
    return model


def write_model(path: Path, dynamic_batch: bool, pixel_format: str = contract.PIXEL_FORMAT_UINT8) -> Path:
    """The contract model in ``pixel_format`` (contract.PIXEL_FORMATS) at ``path``."""
    if pixel_format not in contract.PIXEL_FORMATS:
        raise ValueError(f"pixel_format must be one of {contract.PIXEL_FORMATS}, got {pixel_format!r}")
    model = float_graph(dynamic_batch)
    if pixel_format == contract.PIXEL_FORMAT_UINT8:
        model = graph_upgrade.upgrade_graph(model, f"the contract model for {path}")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_model_and_variants(folder: Path, dynamic_batch: bool,
                             pixel_format: str = contract.PIXEL_FORMAT_UINT8) -> dict[str, Path]:
    """{"fp32": model.onnx, "fp16": model.fp16.onnx, "int8": model.int8.onnx} in ``folder``."""
    from training.exporting.variants import write_float16, write_int8

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = write_model(folder / "model.onnx", dynamic_batch, pixel_format)
    write_float16(fp32, onnx_precision.variant_path(fp32, "fp16"))
    pixels = np.random.default_rng(1).integers(0, 256, (4, 3, HEIGHT, WIDTH), dtype=np.uint8)
    images = list(pixels.astype(np.float32) / np.float32(255))  # calibration frames: [3, H, W] in [0, 1], from pixels
    write_int8(fp32, onnx_precision.variant_path(fp32, "int8"), images)
    return {precision: onnx_precision.variant_path(fp32, precision) for precision in PRECISIONS}


def shipped_folder(dynamic_batch: bool) -> Path:
    return SHIPPED / "dynamic" if dynamic_batch else SHIPPED


def shipped_model_and_variants(folder: Path, dynamic_batch: bool = False) -> dict[str, Path]:
    """The shipped set (what ``write_model_and_variants(folder, dynamic_batch)`` writes), copied into ``folder``."""
    source = shipped_folder(dynamic_batch)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for precision in PRECISIONS:
        name = onnx_precision.variant_path(source / "model.onnx", precision).name
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name} is missing: run python -m tensorrt_double.models from test/")
        files[precision] = Path(shutil.copyfile(source / name, folder / name))
    return files


if __name__ == "__main__":
    for dynamic in (False, True):
        written = write_model_and_variants(shipped_folder(dynamic), dynamic_batch=dynamic)
        print("\n".join(str(path) for path in written.values()), file=sys.stderr)
