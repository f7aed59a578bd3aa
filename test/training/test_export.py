"""ONNX export: contract I/O and metadata, checkpoint loading, parity with PyTorch on rendered scenes, CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import icm_depth_ros
from icm_depth_ros.inference import contract
from icm_depth_ros.inference.fingerprint import file_sha256
from training.exporting.onnx_export import (
    export_onnx,
    graph_input,
    load_model_from_checkpoint,
    onnxruntime_session,
    read_model_info,
    run_onnxruntime,
)
from training.model import ICMDepthNet
from training.exporting.operator_check import check_tensorrt_compatibility

ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH = 96, 320
MODEL_CONFIG = {
    "encoder": "resnet18", "img_size": [HEIGHT, WIDTH], "num_clusters": 32, "dim": 256,
    "update": "sequential", "iterations": 2, "min_depth": 1e-3, "max_depth": 80.0,
}


def random_model(seed: int = 0) -> ICMDepthNet:
    """A randomly initialised net whose depth varies over the image (the head starts at a constant)."""
    torch.manual_seed(seed)
    model = ICMDepthNet(**MODEL_CONFIG, pretrained_path=None)
    torch.nn.init.normal_(model.predictors[0].head.weight, std=0.05)
    return model.eval()


def write_checkpoint(path: Path, model: ICMDepthNet, name: str = "synthetic_resnet18_test_96x320") -> Path:
    torch.save({"model": model.state_dict(), "config": {"name": name, "model": dict(MODEL_CONFIG)}, "step": 0}, path)
    return path


def rendered_scenes(count: int, seed: int = 0) -> np.ndarray:
    from training.data import SyntheticRoadScenes

    scenes = SyntheticRoadScenes(count, size=(HEIGHT, WIDTH), seed=seed)
    return np.stack([scenes[index]["image"].numpy() for index in range(count)])  # [B, 3, H, W]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, dynamic-batch ONNX path, ModelInfo), exported once for the module."""
    model = random_model()
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    info = export_onnx(model, path, HEIGHT, WIDTH, config_name="unit", checkpoint_sha256="ab" * 32, dynamic_batch=True)
    return model, path, info


def test_checkpoint_round_trip(tmp_path):
    model = random_model(seed=3)
    path = write_checkpoint(tmp_path / "best.pt", model)
    loaded, config = load_model_from_checkpoint(path)
    assert config["name"] == "synthetic_resnet18_test_96x320"
    assert not loaded.training
    assert loaded.encoder.img_size == (HEIGHT, WIDTH) and loaded.num_clusters == 32
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_checkpoint_with_ddp_prefix_loads(tmp_path):
    model = random_model()
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"model": state, "config": {"name": "x", "model": MODEL_CONFIG}}, tmp_path / "ddp.pt")
    loaded, _ = load_model_from_checkpoint(tmp_path / "ddp.pt")
    assert torch.equal(loaded.clusters[0].clusters, model.clusters[0].clusters)


def test_checkpoint_errors_name_the_file(tmp_path):
    torch.save({"model": random_model().state_dict()}, tmp_path / "no_config.pt")
    with pytest.raises(ValueError, match="no_config.pt.*'config'"):
        load_model_from_checkpoint(tmp_path / "no_config.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model_from_checkpoint(tmp_path / "missing.pt")


def test_graph_io_follows_the_contract(exported):
    _, path, _ = exported
    graph = onnx.load(str(path)).graph

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [i.name for i in graph.input] == [contract.INPUT_NAME]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8  # the camera's pixels
    assert dims(graph.input[0]) == ["batch", HEIGHT, WIDTH, 3]
    outputs = {o.name: (o.type.tensor_type.elem_type, dims(o)) for o in graph.output}
    assert outputs == {
        contract.DEPTH_OUTPUT: (onnx.TensorProto.FLOAT, ["batch", 1, HEIGHT, WIDTH]),
        contract.CLUSTER_OUTPUT: (onnx.TensorProto.INT32, ["batch", HEIGHT // 4, WIDTH // 4]),
        contract.FIRMNESS_OUTPUT: (onnx.TensorProto.FLOAT, ["batch", HEIGHT // 4, WIDTH // 4]),
    }
    first = [node.op_type for node in graph.node if contract.INPUT_NAME in node.input]
    assert first == ["Transpose"]  # the layout, then Cast and the scaling, on the device


def test_metadata_travels_in_the_file(exported):
    _, path, info = exported
    assert read_model_info(path) == info
    assert (info.input_height, info.input_width, info.num_clusters) == (HEIGHT, WIDTH, 32)
    assert (info.min_depth, info.max_depth) == (1e-3, 80.0)
    assert info.package_version == icm_depth_ros.__version__ and info.dynamic_batch
    # The node reads it through ONNX Runtime, without the onnx package.
    metadata = onnxruntime_session(path).get_modelmeta().custom_metadata_map
    assert metadata[contract.META_CHECKPOINT_SHA256] == "ab" * 32
    assert metadata[contract.META_CONFIG_NAME] == "unit"
    assert metadata[contract.META_PIXEL_FORMAT] == contract.PIXEL_FORMAT


def test_exported_graph_passes_the_tensorrt_check(exported):
    report = check_tensorrt_compatibility(exported[1])
    assert report.ok, report.errors
    assert report.op_counts["Conv"] > 0 and report.op_counts["Softmax"] > 0


def test_parity_with_pytorch_on_rendered_scenes(exported):
    model, path, _ = exported
    images = rendered_scenes(3)
    outputs = run_onnxruntime(onnxruntime_session(path), images)  # the images' uint8 pixels go in
    with torch.no_grad():
        reference = model(torch.from_numpy(images))  # the network on the float images, as in training
    depth = reference["depth"].numpy()
    assert depth.std() > 0.1  # the scenes give the model something to disagree on
    assert np.max(np.abs(outputs["depth"] - depth) / depth) <= 1e-3
    membership = reference["attn"][2].numpy()  # [B, N, h, w]
    assert np.max(np.abs(outputs["firmness"] - membership.max(axis=1))) <= 1e-4
    runner_up = np.sort(membership, axis=1)[:, -2]
    decided = membership.max(axis=1) - runner_up > 1e-4  # cells whose arg-max float noise cannot flip
    assert decided.mean() > 0.3  # random weights: a near-uniform membership, many close calls
    np.testing.assert_array_equal(outputs["cluster"][decided], membership.argmax(axis=1)[decided])
    assert outputs["cluster"].dtype == np.int32 and np.all(outputs["firmness"] >= 1.0 / 32 - 1e-6)


def test_dynamic_batch_matches_single_images(exported):
    _, path, _ = exported
    session = onnxruntime_session(path)
    images = np.random.default_rng(0).integers(0, 256, (3, HEIGHT, WIDTH, 3), dtype=np.uint8)  # pixels
    batched = run_onnxruntime(session, images)["depth"]
    single = np.concatenate([run_onnxruntime(session, image[None])["depth"] for image in images])
    assert batched.shape == (3, 1, HEIGHT, WIDTH)
    np.testing.assert_allclose(batched, single, rtol=1e-4)


def test_graph_input_gives_each_pixel_format_what_it_takes():
    """run_onnxruntime / run_engine: dataset images or camera pixels, fed to either pixel format's graph."""
    pixels = np.random.default_rng(2).integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    images = pixels.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)  # as the datasets give them
    legacy = contract.ModelInfo(8, 12, contract.PIXEL_FORMAT_FLOAT32, 0.5, 80.0, 4, 4, "t", "none", "0")
    assert graph_input(pixels, takes_pixels=True) is pixels
    np.testing.assert_array_equal(graph_input(images, takes_pixels=True), pixels)  # exact: they came from pixels
    from_pixels = graph_input(pixels, takes_pixels=False)
    assert from_pixels.dtype == np.float32 and from_pixels.flags.c_contiguous
    np.testing.assert_array_equal(from_pixels, contract.model_input(legacy, pixels))  # the node's conversion
    np.testing.assert_array_equal(graph_input(images, takes_pixels=False), images)


def test_fixed_batch_export_keeps_the_models_mode(tmp_path):
    # torch.onnx.export restores the wrapper's mode recursively, so the model's own mode must be put
    # back explicitly (the module fixture covers eval: its parity check would fail in training mode).
    model = random_model().train()
    info = export_onnx(model, tmp_path / "fixed.onnx", 64, 192)
    assert model.training
    graph = onnx.load(str(tmp_path / "fixed.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert not info.dynamic_batch and info.input_height == 64


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "training" / "export.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@pytest.mark.slow  # a fresh interpreter imports PyTorch, exports and runs the parity check: ~10 s
def test_cli_exports_a_checkpoint(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "best.pt", random_model())
    result = run_cli("--checkpoint", str(checkpoint), "--out", str(tmp_path / "model.onnx"),
                     "--height", "64", "--width", "192", "--fp16-out", str(tmp_path / "model.fp16.onnx"),
                     "--int8-out", str(tmp_path / "model.int8.onnx"), "--int8-scenes", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("TensorRT operator and Q/DQ check passed") == 3  # fp32 and both variants
    assert "no --calib DIR: calibrating INT8 on 2 synthetic scenes" in result.stderr
    from icm_depth_ros.inference.onnx_precision import file_precision, model_sha256

    assert [file_precision(tmp_path / f"model{s}.onnx") for s in ("", ".fp16", ".int8")] == ["fp32", "fp16", "int8"]
    assert model_sha256(tmp_path / "model.int8.onnx") == file_sha256(tmp_path / "model.onnx")
    assert "max_rel_depth_error" in result.stdout  # the parity check ran
    info = read_model_info(tmp_path / "model.onnx")
    assert info.checkpoint_sha256 == file_sha256(checkpoint)
    assert info.config_name == "synthetic_resnet18_test_96x320"
    assert (info.input_height, info.input_width) == (64, 192)


def test_cli_engine_fails_at_once_without_tensorrt(tmp_path):
    from training.exporting.tensorrt_build import missing_requirements

    if not missing_requirements():
        pytest.skip("TensorRT and a GPU are present: the engine build would run")
    checkpoint = write_checkpoint(tmp_path / "best.pt", random_model())
    start = time.monotonic()
    result = run_cli("--checkpoint", str(checkpoint), "--out", str(tmp_path / "model.onnx"),
                     "--engine", str(tmp_path / "model.engine"), "--precision", "fp16")
    assert result.returncode == 2
    assert "missing:" in result.stderr and ("tensorrt" in result.stderr or "NVIDIA" in result.stderr)
    assert not (tmp_path / "model.onnx").exists()  # it failed before exporting anything
    assert time.monotonic() - start < 30


def test_cli_names_a_calibration_folder_that_is_not_one(tmp_path):
    result = run_cli("--onnx", str(tmp_path / "m.onnx"), "--engine", str(tmp_path / "m.engine"), "--precision", "int8",
                     "--calib", str(tmp_path / "no_such_folder"))
    assert result.returncode == 2 and f"--calib {tmp_path / 'no_such_folder'}: not a directory" in result.stderr


def test_cli_names_a_missing_checkpoint(tmp_path):
    result = run_cli("--checkpoint", str(tmp_path / "nowhere.pt"), "--out", str(tmp_path / "m.onnx"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"error: --checkpoint {tmp_path / 'nowhere.pt'}: no such file")


def test_module_imports_as_training_export():
    import training.export as export

    assert export.export_onnx is export_onnx
    assert export.load_model_from_checkpoint is load_model_from_checkpoint
