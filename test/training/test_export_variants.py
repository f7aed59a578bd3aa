"""fp16 and INT8 Q/DQ variants: same contract and metadata, close to the fp32 graph, smaller, TensorRT-ready."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from icm_depth_ros.inference import contract, onnx_precision
from icm_depth_ros.inference.fingerprint import file_sha256
from training.exporting.onnx_export import export_onnx, onnxruntime_session, read_model_info, run_onnxruntime
from training.exporting.operator_check import check_tensorrt_compatibility
from training.exporting.variants import convert_to_float16, int8_nodes, write_float16, write_int8
from training.model import ICMDepthNet

HEIGHT, WIDTH = 64, 192


def scenes(count: int, seed: int) -> np.ndarray:
    from training.data import SyntheticRoadScenes

    data = SyntheticRoadScenes(count, size=(HEIGHT, WIDTH), seed=seed)
    return np.stack([data[index]["image"].numpy() for index in range(count)])  # [B, 3, H, W]


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    model = ICMDepthNet("resnet18", img_size=(HEIGHT, WIDTH), pretrained_path=None).eval()
    torch.nn.init.normal_(model.predictors[0].head.weight, std=0.05)
    path = tmp_path_factory.mktemp("variants") / "fp32.onnx"
    export_onnx(model, path, HEIGHT, WIDTH, config_name="variants", dynamic_batch=True)
    images = scenes(2, seed=0)
    return path, images, run_onnxruntime(onnxruntime_session(path), images)


def io_types_of(model: onnx.ModelProto) -> dict[str, int]:
    return {value.name: value.type.tensor_type.elem_type for value in [*model.graph.input, *model.graph.output]}


def io_types(path) -> dict[str, int]:
    return io_types_of(onnx.load(str(path)))


def test_float16_variant(fp32, tmp_path):
    path, images, reference = fp32
    half = write_float16(path, tmp_path / "fp16.onnx")
    assert io_types(half) == {"image": TensorProto.UINT8, "depth": TensorProto.FLOAT, "cluster": TensorProto.INT32,
                              "firmness": TensorProto.FLOAT}  # the contract's I/O, as the fp32 file's
    assert read_model_info(half) == read_model_info(path)
    weights = [i for i in onnx.load(str(half)).graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    float16_bytes = sum(len(i.raw_data) for i in weights if i.data_type == TensorProto.FLOAT16)
    assert float16_bytes > 0.95 * sum(len(i.raw_data) for i in weights)  # nearly all weights are float16
    assert half.stat().st_size < 0.6 * path.stat().st_size
    outputs = run_onnxruntime(onnxruntime_session(half), images)
    relative = np.abs(outputs["depth"] - reference["depth"]) / reference["depth"]
    assert np.mean(relative) < 5e-3 and np.max(relative) < 5e-2  # float16 keeps ~3 significant digits
    assert np.max(np.abs(outputs["firmness"] - reference["firmness"])) < 1e-2
    assert np.mean(outputs["cluster"] == reference["cluster"]) > 0.95
    assert check_tensorrt_compatibility(half).ok
    assert onnx_precision.file_precision(half) == "fp16" and onnx_precision.file_precision(path) == "fp32"
    assert onnx_precision.model_sha256(half) == file_sha256(path)  # the variant names the export it comes from


def test_float16_keeps_float32_only_inputs_and_listed_ops():
    # Softmax (KEEP_FLOAT32_OPS) runs in float32 behind a Cast, Resize in float16 with its scales input kept
    # float32 (the schema fixes it); the Conv runs on a float16 weight; the graph output stays float32.
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    weight = numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "weight"], ["c"], name="conv"),
         helper.make_node("Resize", ["c", "", "scales"], ["r"], mode="linear", name="resize"),
         helper.make_node("Softmax", ["r"], ["y"], axis=1, name="softmax")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])], initializer=[scales, weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    converted = convert_to_float16(model)
    initializers = {i.name: i.data_type for i in converted.graph.initializer}
    assert initializers == {"scales": TensorProto.FLOAT, "weight": TensorProto.FLOAT16}
    assert io_types_of(converted) == {"x": TensorProto.FLOAT, "y": TensorProto.FLOAT}
    assert model.graph.initializer[1].data_type == TensorProto.FLOAT  # the source graph is left as it was
    types = {v.name: v.type.tensor_type.elem_type for v in converted.graph.value_info}
    nodes = {n.name: n for n in converted.graph.node}
    assert types[nodes["conv"].output[0]] == TensorProto.FLOAT16
    assert nodes["resize"].input[2] == "scales" and types[nodes["resize"].input[0]] == TensorProto.FLOAT16
    assert types[nodes["softmax"].input[0]] == TensorProto.FLOAT
    x = np.random.default_rng(0).random((1, 2, 4, 4), dtype=np.float32)
    import onnxruntime

    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = onnxruntime.InferenceSession(converted.SerializeToString()).run(None, {"x": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_float16_shared_weight_behind_identity_and_output_from_a_float32_op():
    # What broke onnxconverter-common on the exported models (docs/export.md, "fp16 converter"): a weight
    # the exporter shares through an Identity, consumed by a float32-kept op, and a graph output made by
    # a float32-kept op (Exp, as the depth output is).
    bias = numpy_helper.from_array(np.array([0.1, -0.2], np.float32), "bias")
    scale = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "scale")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["bias"], ["shared_bias"]),
         helper.make_node("Add", ["x", "bias"], ["a"]),
         helper.make_node("LayerNormalization", ["a", "scale", "shared_bias"], ["n"], axis=-1),
         helper.make_node("Exp", ["n"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])], initializer=[bias, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    converted = convert_to_float16(model)
    assert io_types_of(converted) == {"x": TensorProto.FLOAT, "y": TensorProto.FLOAT}
    import onnxruntime

    x = np.array([[1.0, 2.0], [0.5, -0.5], [3.0, 3.5]], np.float32)
    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = onnxruntime.InferenceSession(converted.SerializeToString()).run(None, {"x": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-3)


def test_float16_refuses_a_conversion_that_changes_the_io_types(monkeypatch):
    from onnxruntime.transformers import float16

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    real = float16.convert_float_to_float16
    monkeypatch.setattr(float16, "convert_float_to_float16", lambda m, **kw: real(m, **{**kw, "keep_io_types": False}))
    with pytest.raises(ValueError, match=r"changed the type of graph inputs/outputs \['x', 'y'\]"):
        convert_to_float16(model)


def test_int8_variant(fp32, tmp_path):
    path, images, reference = fp32
    quantized = write_int8(path, tmp_path / "int8.onnx", list(scenes(2, seed=100)))
    assert io_types(quantized)["image"] == TensorProto.UINT8 and io_types(quantized)["cluster"] == TensorProto.INT32
    assert read_model_info(quantized) == read_model_info(path)
    ops = {node.op_type for node in onnx.load(str(quantized)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert quantized.stat().st_size < 0.6 * path.stat().st_size
    outputs = run_onnxruntime(onnxruntime_session(quantized), images)
    relative = np.abs(outputs["depth"] - reference["depth"]) / reference["depth"]
    assert np.all(np.isfinite(outputs["depth"])) and np.mean(relative) < 0.1
    assert np.all(outputs["firmness"] > 0) and np.all(outputs["firmness"] <= 1.0 + 1e-4)
    assert outputs["cluster"].min() >= 0 and outputs["cluster"].max() < 32
    # The one INT8 file for ONNX Runtime and TensorRT: symmetric, zero points int8 0, passes the gate.
    assert check_tensorrt_compatibility(quantized).ok
    assert onnx_precision.file_precision(quantized) == "int8"
    assert onnx_precision.model_sha256(quantized) == file_sha256(path)
    assert_symmetric_per_channel_qdq(onnx.load(str(quantized)))


def assert_symmetric_per_channel_qdq(model: onnx.ModelProto) -> None:
    """Zero points int8 0; Conv/MatMul/Gemm weights int8 with one scale per output channel; activations
    one scale; every weight MatMul/Gemm and residual Add fed by DequantizeLinear, no activation x
    activation MatMul quantized."""
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    dequantize = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    zero_points = [constants[n.input[2]] for n in quantize + dequantize]
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert all(constants[n.input[1]].ndim == 0 for n in quantize)  # activations: one scale per tensor

    def weight_dq(node, index):
        producer = producers.get(node.input[index])
        if producer is not None and producer.op_type == "DequantizeLinear" and producer.input[0] in constants:
            return producer
        return None

    convs = [n for n in graph.node if n.op_type == "Conv"]
    for conv in convs:
        dq = weight_dq(conv, 1)
        weight, scale = constants[dq.input[0]], constants[dq.input[1]]
        assert weight.dtype == np.int8 and scale.shape == (weight.shape[0],)  # output channels, axis 0
    linear = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and weight_dq(n, 1) is not None]
    assert linear, "no MatMul/Gemm with quantized weights"
    for node in linear:
        dq = weight_dq(node, 1)
        weight, scale = constants[dq.input[0]], constants[dq.input[1]]
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        out_axis = 0 if trans_b else weight.ndim - 1  # B is [K, N] (or [N, K] with transB)
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % weight.ndim
        assert weight.dtype == np.int8 and axis == out_axis and scale.shape == (weight.shape[out_axis],)
        assert producers[node.input[0]].op_type == "DequantizeLinear"  # the activation is quantized too
    for node in graph.node:
        if node.op_type == "MatMul" and weight_dq(node, 1) is None:
            assert producers.get(node.input[1]) is None or producers[node.input[1]].op_type != "DequantizeLinear"
    residual = [n for n in graph.node if n.op_type == "Add" and all(i not in constants for i in n.input)
                and all(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)]
    assert residual, "no residual Add with Q/DQ inputs"


def test_int8_nodes_picks_weight_layers_and_residual_adds():
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "weight")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["projected"], name="linear"),
         helper.make_node("Add", ["projected", "bias"], ["biased"], name="bias_add"),
         helper.make_node("Gemm", ["biased", "weight", "bias"], ["gemm_out"], name="gemm"),
         helper.make_node("Transpose", ["gemm_out"], ["keys"], name="transpose"),
         helper.make_node("MatMul", ["gemm_out", "keys"], ["scores"], name="attention"),
         helper.make_node("MatMul", ["scores", "gemm_out"], ["mixed"], name="attention_values"),
         helper.make_node("Add", ["mixed", "x"], ["y"], name="residual")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], initializer=[weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert int8_nodes(model) == ["linear", "gemm", "residual"]
    assert int8_nodes(model, ("Conv", "MatMul")) == ["linear"]
    assert int8_nodes(model, ("Conv",)) == []


def test_int8_demo_model_is_close_to_fp32(tmp_path):
    """The shipped demo model (hybrid CNN + attention): INT8 Q/DQ on Conv, MatMul/Gemm and residual Adds,
    run by ONNX Runtime, against its fp32 graph on two unseen scenes."""
    from pathlib import Path

    demo = Path(__file__).resolve().parents[2] / "models/demo/icm_demo.onnx"
    info = read_model_info(demo)
    height, width = info.input_height, info.input_width
    from training.data import SyntheticRoadScenes

    calibration = SyntheticRoadScenes(2, size=(height, width), seed=100)
    quantized = write_int8(demo, tmp_path / "demo.int8.onnx", [calibration[i]["image"].numpy() for i in range(2)])
    model = onnx.load(str(quantized))
    assert_symmetric_per_channel_qdq(model)
    assert check_tensorrt_compatibility(quantized).ok
    validation = SyntheticRoadScenes(2, size=(height, width), seed=7)
    images = np.stack([validation[i]["image"].numpy() for i in range(2)])
    reference = [run_onnxruntime(onnxruntime_session(demo), image[None]) for image in images]
    outputs = [run_onnxruntime(onnxruntime_session(quantized), image[None]) for image in images]
    relative = np.concatenate([(np.abs(o["depth"] - r["depth"]) / r["depth"]).ravel() for o, r in zip(outputs, reference)])
    same_cluster = np.mean([o["cluster"] == r["cluster"] for o, r in zip(outputs, reference)])
    assert np.mean(relative) < 0.06 and same_cluster > 0.95


def test_asymmetric_int8_is_refused_by_the_engine_builder(fp32, tmp_path):
    from icm_depth_ros.inference.engine_builder import check_build_source

    path, _, _ = fp32
    quantized = write_int8(path, tmp_path / "model.int8.onnx", list(scenes(1, seed=100)))
    model = onnx.load(str(quantized))
    zero = next(i for i in model.graph.initializer if i.data_type == TensorProto.INT8 and i.dims == [])
    zero.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zero.name))
    onnx.save(model, str(tmp_path / "shifted.onnx"))
    with pytest.raises(ValueError, match="zero point is not 0; TensorRT supports symmetric quantization only"):
        check_build_source(tmp_path / "shifted.onnx", "int8")
    with pytest.raises(ValueError, match="carries int8, not fp16.*model.int8.fp16.onnx"):
        check_build_source(quantized, "fp16")
    assert check_build_source(quantized, None)[0] == "int8"
    cpu_only = write_int8(path, tmp_path / "cpu.onnx", list(scenes(1, seed=100)), activations="uint8")
    assert not check_tensorrt_compatibility(cpu_only).ok  # ONNX Runtime's uint8 activations: CPU only
    with pytest.raises(ValueError, match=r"zero point type INT32; TensorRT quantizes to INT8/FP8/INT4 only.*\(and \d+ more\)"):
        check_build_source(cpu_only, "int8")
    assert check_build_source(path, "fp32")[:2] == ("fp32", file_sha256(path))
    assert contract.META_PRECISION not in onnx_precision.onnx_metadata(path)


def test_calibration_images_are_brought_to_the_model_size(tmp_path):
    import cv2

    from training.exporting.tensorrt_build import load_calibration_images

    frame = np.zeros((375, 1242, 3), np.uint8)
    frame[..., 2] = 255  # BGR on disk: pure red
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(tmp_path / name), frame)
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_calibration_images(tmp_path, HEIGHT, WIDTH, limit=1)
    assert len(images) == 1 and images[0].shape == (3, HEIGHT, WIDTH) and images[0].dtype == np.float32
    np.testing.assert_allclose(images[0][:, HEIGHT // 2, WIDTH // 2], [1.0, 0.0, 0.0], atol=0.02)  # RGB in [0, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images"):
        load_calibration_images(tmp_path / "empty", HEIGHT, WIDTH)
