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
from training.exporting.variants import convert_to_float16, write_float16, write_int8
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


def io_types(path) -> dict[str, int]:
    graph = onnx.load(str(path)).graph
    return {value.name: value.type.tensor_type.elem_type for value in [*graph.input, *graph.output]}


def test_float16_variant(fp32, tmp_path):
    path, images, reference = fp32
    half = write_float16(path, tmp_path / "fp16.onnx")
    assert io_types(half) == {"image": TensorProto.FLOAT, "depth": TensorProto.FLOAT, "membership": TensorProto.FLOAT}
    assert read_model_info(half) == read_model_info(path)
    weights = [i for i in onnx.load(str(half)).graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    float16_bytes = sum(len(i.raw_data) for i in weights if i.data_type == TensorProto.FLOAT16)
    assert float16_bytes > 0.95 * sum(len(i.raw_data) for i in weights)  # nearly all weights are float16
    assert half.stat().st_size < 0.6 * path.stat().st_size
    outputs = run_onnxruntime(onnxruntime_session(half), images)
    relative = np.abs(outputs["depth"] - reference["depth"]) / reference["depth"]
    assert np.mean(relative) < 5e-3 and np.max(relative) < 5e-2  # float16 keeps ~3 significant digits
    assert np.max(np.abs(outputs["membership"] - reference["membership"])) < 1e-2
    assert check_tensorrt_compatibility(half).ok
    assert onnx_precision.file_precision(half) == "fp16" and onnx_precision.file_precision(path) == "fp32"
    assert onnx_precision.model_sha256(half) == file_sha256(path)  # the variant names the export it comes from


def test_float16_keeps_float32_only_inputs_and_listed_ops():
    # Resize's scales input is tensor(float) whatever X is; Softmax is kept in float32 on purpose.
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    weight = numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "weight"], ["c"]),
         helper.make_node("Resize", ["c", "", "scales"], ["r"], mode="linear"),
         helper.make_node("Softmax", ["r"], ["y"], axis=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])], initializer=[scales, weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    converted = convert_to_float16(model)
    initializers = {i.name: i.data_type for i in converted.graph.initializer}
    assert initializers == {"scales": TensorProto.FLOAT, "weight__as_float16": TensorProto.FLOAT16}
    nodes = {n.op_type: n for n in converted.graph.node}
    assert nodes["Resize"].input[2] == "scales"
    assert nodes["Softmax"].input[0].endswith("__as_float32")
    x = np.random.default_rng(0).random((1, 2, 4, 4), dtype=np.float32)
    import onnxruntime

    expected = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = onnxruntime.InferenceSession(converted.SerializeToString()).run(None, {"x": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_int8_variant(fp32, tmp_path):
    path, images, reference = fp32
    quantized = write_int8(path, tmp_path / "int8.onnx", list(scenes(2, seed=100)))
    assert io_types(quantized)["image"] == TensorProto.FLOAT
    assert read_model_info(quantized) == read_model_info(path)
    ops = {node.op_type for node in onnx.load(str(quantized)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert quantized.stat().st_size < 0.6 * path.stat().st_size
    outputs = run_onnxruntime(onnxruntime_session(quantized), images)
    relative = np.abs(outputs["depth"] - reference["depth"]) / reference["depth"]
    assert np.all(np.isfinite(outputs["depth"])) and np.mean(relative) < 0.1
    np.testing.assert_allclose(outputs["membership"].sum(axis=1), 1.0, atol=1e-4)
    # The one INT8 file for ONNX Runtime and TensorRT: symmetric, zero points int8 0, passes the gate.
    assert check_tensorrt_compatibility(quantized).ok
    assert onnx_precision.file_precision(quantized) == "int8"
    assert onnx_precision.model_sha256(quantized) == file_sha256(path)
    graph = onnx.load(str(quantized)).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dequantize = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    zero_points = [constants[n.input[2]] for n in quantize + dequantize]
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
    weights = [n for n in dequantize if n.input[0] in constants and constants[n.input[0]].ndim == 4]  # Conv weights
    assert weights and all(constants[n.input[0]].dtype == np.int8 for n in weights)
    per_channel = [constants[n.input[1]].shape == (constants[n.input[0]].shape[0],) for n in weights]
    assert all(per_channel)  # one scale per output channel
    assert all(constants[n.input[1]].ndim == 0 for n in quantize)  # activations: one scale per tensor


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
