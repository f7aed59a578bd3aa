"""The TensorRT 10 compatibility check on handcrafted graphs (the exported model is checked in test_export.py)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.exporting.operator_check import check_tensorrt_compatibility


def contract_graph(nodes, *, image_type=TensorProto.FLOAT, image_shape=("batch", 3, 32, 64), initializers=(), opset=17):
    """image -> depth, membership, with ``nodes`` in between (they must produce both outputs)."""
    graph = helper.make_graph(
        nodes,
        "handmade",
        [helper.make_tensor_value_info("image", image_type, list(image_shape))],
        [
            helper.make_tensor_value_info("depth", TensorProto.FLOAT, list(image_shape)),
            helper.make_tensor_value_info("membership", TensorProto.FLOAT, list(image_shape)),
        ],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def supported_nodes():
    return [helper.make_node("Relu", ["image"], ["depth"]), helper.make_node("Sigmoid", ["image"], ["membership"])]


def test_supported_graph_passes():
    report = check_tensorrt_compatibility(contract_graph(supported_nodes()))
    assert report.ok and not report.warnings
    assert report.op_counts == {"Relu": 1, "Sigmoid": 1}


def test_unsupported_op_is_rejected_by_name():
    nodes = [helper.make_node("Relu", ["image"], ["depth"]), helper.make_node("MaxUnpool", ["image", "idx"], ["membership"],
                                                                              kernel_shape=[2, 2], name="unpool")]
    report = check_tensorrt_compatibility(contract_graph(nodes))
    assert not report.ok
    assert len(report.errors) == 1 and "unpool (MaxUnpool)" in report.errors[0] and "not supported" in report.errors[0]


def test_custom_domain_needs_a_plugin():
    nodes = [helper.make_node("Relu", ["image"], ["depth"]),
             helper.make_node("MultiScaleDeformableAttn", ["image"], ["membership"], domain="com.example")]
    report = check_tensorrt_compatibility(contract_graph(nodes))
    assert any("plugin" in error for error in report.errors)


def test_unsupported_op_inside_a_subgraph_is_found():
    branch = helper.make_graph([helper.make_node("Unique", ["image"], ["u"])], "branch", [],
                               [helper.make_tensor_value_info("u", TensorProto.FLOAT, None)])
    condition = numpy_helper.from_array(np.array(True), "condition")
    nodes = [helper.make_node("If", ["condition"], ["depth"], then_branch=branch, else_branch=branch),
             helper.make_node("Sigmoid", ["image"], ["membership"])]
    report = check_tensorrt_compatibility(contract_graph(nodes, initializers=[condition]))
    assert len(report.errors) == 2 and all("Unique" in error for error in report.errors)  # both branches


def test_float64_input_is_rejected_and_float64_weights_only_warn():
    report = check_tensorrt_compatibility(contract_graph(supported_nodes(), image_type=TensorProto.DOUBLE))
    assert any("DOUBLE is not a TensorRT type" in error for error in report.errors)

    weights = numpy_helper.from_array(np.ones(1, np.float64), "w")
    nodes = [helper.make_node("Cast", ["w"], ["w32"], to=TensorProto.FLOAT), helper.make_node("Mul", ["image", "w32"], ["depth"]),
             helper.make_node("Sigmoid", ["image"], ["membership"])]
    report = check_tensorrt_compatibility(contract_graph(nodes, initializers=[weights]))
    assert report.ok and any("cast down" in warning for warning in report.warnings)


def test_dynamic_height_is_rejected_but_dynamic_batch_is_not():
    report = check_tensorrt_compatibility(contract_graph(supported_nodes(), image_shape=("batch", 3, "height", 64)))
    assert report.errors == ["input image: dimension 2 is dynamic (height); only the batch may be"]


def test_asymmetric_quantization_is_rejected():
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    uint8_zero = numpy_helper.from_array(np.array(128, np.uint8), "zero_u8")
    int8_zero = numpy_helper.from_array(np.array(0, np.int8), "zero_i8")

    def quantized(zero):
        return [helper.make_node("QuantizeLinear", ["image", "scale", zero], ["q"]),
                helper.make_node("DequantizeLinear", ["q", "scale", zero], ["depth"]),
                helper.make_node("Sigmoid", ["image"], ["membership"])]

    assert check_tensorrt_compatibility(contract_graph(quantized("zero_i8"), initializers=[scale, int8_zero])).ok
    report = check_tensorrt_compatibility(contract_graph(quantized("zero_u8"), initializers=[scale, uint8_zero]))
    assert len(report.errors) == 2 and all("UINT8" in error for error in report.errors)


def test_contract_names_are_checked():
    nodes = [helper.make_node("Relu", ["image"], ["depth"]), helper.make_node("Sigmoid", ["image"], ["attn"])]
    graph = contract_graph(nodes)
    graph.graph.output[1].name = "attn"
    report = check_tensorrt_compatibility(graph)
    assert report.errors == ["contract: no output named 'membership' (outputs: ['attn', 'depth'])"]
    assert check_tensorrt_compatibility(graph, check_contract=False).ok


def test_old_opset_is_rejected():
    report = check_tensorrt_compatibility(contract_graph(supported_nodes(), opset=7))
    assert any("opset 7" in error for error in report.errors)


def test_checked_graphs_are_valid_onnx():
    onnx.checker.check_model(contract_graph(supported_nodes()))
