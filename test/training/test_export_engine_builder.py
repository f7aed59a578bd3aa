"""The engine-build flow against a stand-in ``tensorrt`` module, so it runs without a GPU.

It checks what the one builder (icm_depth_ros/inference/engine_builder.py, called by training/exporting/tensorrt_build.py and
by the node's engine rebuild) asks of TensorRT (workspace, flags, profile, timing cache) and what it writes
(engine, cache, fingerprint). Whether TensorRT accepts it is test_export_tensorrt.py's job.
"""
from __future__ import annotations

import importlib.machinery
import sys
import types

import onnx
import pytest
from onnx import TensorProto, helper

from icm_depth_ros.inference import ModelLoadError, engine_builder
from icm_depth_ros.inference import fingerprint as fingerprints
from training.exporting import tensorrt_build

HEIGHT, WIDTH = 32, 64


class FakeConfig:
    def __init__(self):
        self.flags, self.cleared, self.pools, self.profiles = set(), set(), {}, []
        self.timing_cache_seed = None

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def create_timing_cache(self, data):
        self.timing_cache_seed = bytes(data)
        return types.SimpleNamespace(serialize=lambda: bytearray(b"timing:" + bytes(data)))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache

    def get_timing_cache(self):
        return self.cache

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.cleared.add(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)


class FakeProfile:
    def set_shape(self, name, minimum, optimum, maximum):
        self.shapes = (name, minimum, optimum, maximum)


def fake_tensorrt(record: dict, parse_ok: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importers probing find_spec need one
    trt.__version__ = "10.3.0"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32")

    class Network:
        def __init__(self):
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, index):
            return self.inputs[index]

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0 if parse_ok else 1

        def parse_from_file(self, path):
            for value in onnx.load(path).graph.input:
                shape = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
                self.network.inputs.append(types.SimpleNamespace(name=value.name, shape=shape))
            return parse_ok

        def get_error(self, index):
            return "In node 3 (Unique): unsupported operator"

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            record["network_flags"] = flags
            return Network()

        def create_builder_config(self):
            record["config"] = FakeConfig()
            return record["config"]

        def create_optimization_profile(self):
            return FakeProfile()

        def build_serialized_network(self, network, config):
            return bytearray(b"serialized engine")

    trt.OnnxParser, trt.Builder = OnnxParser, Builder
    return trt


@pytest.fixture
def trt_record(monkeypatch):
    record: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(record))
    monkeypatch.setattr(fingerprints, "query_gpu", lambda device=0: ("NVIDIA Stand-in", "8.7"))
    return record


def write_onnx(path, batch="batch"):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["depth"]), helper.make_node("Sigmoid", ["image"], ["membership"])],
        "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, HEIGHT, WIDTH])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [batch, 3, HEIGHT, WIDTH]),
         helper.make_tensor_value_info("membership", TensorProto.FLOAT, [batch, 3, HEIGHT, WIDTH])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"icm.input_height": str(HEIGHT)})
    onnx.save(model, str(path))
    return path


def test_fp16_dynamic_batch_build(trt_record, tmp_path):
    onnx_path = write_onnx(tmp_path / "model.onnx")
    engine = tmp_path / "model.engine"
    written = tensorrt_build.build_engine(onnx_path, engine, "fp16", workspace_gib=2, max_batch=3)
    config = trt_record["config"]
    assert trt_record["network_flags"] == 0
    assert config.pools == {"workspace": 2 << 30}
    assert config.flags == {"FP16"} and not config.cleared
    assert config.profiles[0].shapes == ("image", (1, 3, HEIGHT, WIDTH), (3, 3, HEIGHT, WIDTH), (3, 3, HEIGHT, WIDTH))
    assert engine.read_bytes() == b"serialized engine"
    assert (tmp_path / "model.engine.timing.cache").read_bytes() == b"timing:"
    assert fingerprints.read_fingerprint(engine) == written
    assert written["input_shape"] == [-1, 3, HEIGHT, WIDTH] and written["max_batch"] == 3
    assert written["model_metadata"] == {"icm.input_height": str(HEIGHT)}
    expected = fingerprints.expected_fingerprint(onnx_path, "fp16", [-1, 3, HEIGHT, WIDTH], max_batch=3)
    assert expected["gpu_name"] == "NVIDIA Stand-in" and expected["tensorrt_version"] == "10.3.0"
    assert fingerprints.compare_fingerprint(written, expected) == []


def test_fp32_build_disables_tf32_and_reuses_the_timing_cache(trt_record, tmp_path):
    onnx_path = write_onnx(tmp_path / "model.onnx", batch=1)
    cache = tmp_path / "shared.cache"
    cache.write_bytes(b"earlier")
    written = tensorrt_build.build_engine(onnx_path, tmp_path / "model.engine", "fp32", timing_cache_path=cache)
    config = trt_record["config"]
    assert config.cleared == {"TF32"} and not config.flags and not config.profiles
    assert config.timing_cache_seed == b"earlier" and cache.read_bytes() == b"timing:earlier"
    assert written["input_shape"] == [1, 3, HEIGHT, WIDTH] and written["max_batch"] == 1


def test_parser_errors_are_reported(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt({}, parse_ok=False))
    monkeypatch.setattr(fingerprints, "query_gpu", lambda device=0: ("NVIDIA Stand-in", "8.7"))
    with pytest.raises(RuntimeError, match="parser rejected the graph: In node 3 \\(Unique\\)"):
        tensorrt_build.build_engine(write_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp16")


def test_int8_without_images_is_refused_before_tensorrt(tmp_path):
    with pytest.raises(ValueError, match="--calib"):
        tensorrt_build.build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "int8")


def test_cli_builds_from_an_existing_onnx(trt_record, tmp_path, capsys):
    from training.export import main

    onnx_path = write_onnx(tmp_path / "model.onnx")
    assert main(["--onnx", str(onnx_path), "--engine", str(tmp_path / "model.engine"), "--precision", "fp16"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert fingerprints.read_fingerprint(tmp_path / "model.engine")["onnx_sha256"] == fingerprints.file_sha256(onnx_path)


def test_int8_without_a_calibrator_is_refused_by_the_shared_builder(tmp_path):
    with pytest.raises(ValueError, match="--precision int8 --calib DIR"):
        engine_builder.build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "int8")


def test_training_reexports_the_shared_builder_names():
    for name in ("DEFAULT_WORKSPACE_GIB", "TensorRTUnavailable", "missing_requirements", "require_tensorrt"):
        assert getattr(tensorrt_build, name) is getattr(engine_builder, name)


def open_rebuilding_node_backend(monkeypatch, onnx_path, precision):
    """TensorRTBackend.open with allow_build on a machine with no engine yet; returns what it would load."""
    pytest.importorskip("cuda.bindings.runtime", reason="the node's TensorRT backend imports cuda-python first")
    from icm_depth_ros.inference.tensorrt_backend import TensorRTBackend

    loaded = {}

    def record_init(self, engine_path, onnx_file="", model_metadata=None):
        loaded.update(engine_path=engine_path, onnx_path=onnx_file, model_metadata=model_metadata)

    monkeypatch.setattr(TensorRTBackend, "__init__", record_init)  # deserialising needs the real TensorRT
    logger = types.SimpleNamespace(warning=lambda text: None)
    TensorRTBackend.open(str(onnx_path), onnx_path=str(onnx_path), precision=precision, allow_build=True, logger=logger)
    return loaded


def test_the_node_rebuilds_with_the_shared_builder(trt_record, monkeypatch, tmp_path):
    onnx_path = write_onnx(tmp_path / "model.onnx")
    loaded = open_rebuilding_node_backend(monkeypatch, onnx_path, "fp16")
    engine = tmp_path / "model.engine"
    config = trt_record["config"]
    assert config.pools == {"workspace": int(engine_builder.DEFAULT_WORKSPACE_GIB * (1 << 30))}
    assert config.flags == {"FP16"}
    assert config.profiles[0].shapes == ("image", (1, 3, HEIGHT, WIDTH), (1, 3, HEIGHT, WIDTH), (1, 3, HEIGHT, WIDTH))
    assert engine.read_bytes() == b"serialized engine"
    assert (tmp_path / "model.engine.timing.cache").read_bytes() == b"timing:"
    written = fingerprints.read_fingerprint(engine)
    assert written["precision"] == "fp16" and written["max_batch"] == 1
    assert written["onnx_sha256"] == fingerprints.file_sha256(onnx_path)
    assert loaded == {"engine_path": engine, "onnx_path": str(onnx_path), "model_metadata": {"icm.input_height": str(HEIGHT)}}


def test_the_node_refuses_to_rebuild_int8_without_calibration_images(trt_record, monkeypatch, tmp_path):
    onnx_path = write_onnx(tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match="cannot rebuild TensorRT engine .*model.engine.*--calib DIR"):
        open_rebuilding_node_backend(monkeypatch, onnx_path, "int8")
    assert not (tmp_path / "model.engine").exists()
