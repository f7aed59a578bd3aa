"""Tiny ONNX models that follow the model contract, and their fp16 / INT8 Q/DQ variants, for the doubles.

The batch-1 set is also shipped in contract_models/ and the dynamic-batch set in contract_models/dynamic/
(6 KB each): the node-side tests copy them from there, because
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
from icm_depth_ros.inference import contract, onnx_precision

HEIGHT, WIDTH, NUM_CLUSTERS = 16, 32, 4  # scenario.NUM_CLUSTERS must match
SHIPPED = Path(__file__).resolve().parent / "contract_models"
PRECISIONS = ("fp32", "fp16", "int8")


def write_model(path: Path, dynamic_batch: bool) -> Path:
    """image [B, 3, H, W] -> depth = softplus(conv1x1) + 0.5, membership = softmax(conv4x4 stride 4)."""
    rng = np.random.default_rng(0)
    batch = "batch" if dynamic_batch else 1
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, (1, 3, 1, 1)).astype(np.float32), "depth_w"),
               numpy_helper.from_array(rng.normal(0, 0.3, (NUM_CLUSTERS, 3, 4, 4)).astype(np.float32), "cluster_w"),
               numpy_helper.from_array(np.array(0.5, np.float32), "offset")]
    nodes = [helper.make_node("Conv", ["image", "depth_w"], ["d0"]),
             helper.make_node("Softplus", ["d0"], ["d1"]),
             helper.make_node("Add", ["d1", "offset"], [contract.DEPTH_OUTPUT]),
             helper.make_node("Conv", ["image", "cluster_w"], ["m0"], strides=[4, 4]),
             helper.make_node("Softmax", ["m0"], [contract.MEMBERSHIP_OUTPUT], axis=1)]
    graph = helper.make_graph(
        nodes, "contract", [helper.make_tensor_value_info(contract.INPUT_NAME, TensorProto.FLOAT, [batch, 3, HEIGHT, WIDTH])],
        [helper.make_tensor_value_info(contract.DEPTH_OUTPUT, TensorProto.FLOAT, [batch, 1, HEIGHT, WIDTH]),
         helper.make_tensor_value_info(contract.MEMBERSHIP_OUTPUT, TensorProto.FLOAT,
                                       [batch, NUM_CLUSTERS, HEIGHT // 4, WIDTH // 4])],
        initializer=weights)
    # IR version 8 (ONNX 1.12, opset 17): what ONNX Runtime 1.12, the newest for Humble's numpy, can load
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    info = contract.ModelInfo(HEIGHT, WIDTH, contract.PIXEL_FORMAT, 0.5, 80.0, NUM_CLUSTERS, 4, "bindings_test",
                              "none", icm_depth_ros.__version__, dynamic_batch)
    helper.set_model_props(model, info.to_metadata())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_model_and_variants(folder: Path, dynamic_batch: bool) -> dict[str, Path]:
    """{"fp32": model.onnx, "fp16": model.fp16.onnx, "int8": model.int8.onnx} in ``folder``."""
    from training.exporting.variants import write_float16, write_int8

    folder.mkdir(parents=True, exist_ok=True)
    fp32 = write_model(folder / "model.onnx", dynamic_batch)
    write_float16(fp32, onnx_precision.variant_path(fp32, "fp16"))
    images = list(np.random.default_rng(1).random((4, 3, HEIGHT, WIDTH), dtype=np.float32))
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
