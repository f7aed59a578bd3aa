"""TensorRT 10.3+/11.x engines: build, fingerprint, parity with ONNX Runtime. Needs an NVIDIA GPU with TensorRT.

fp16 and int8 engines are built from the fp16 and INT8 Q/DQ variants (strongly typed networks) and
compared with ONNX Runtime running the same file. The exports take uint8 pixels [B, H, W, 3] and return
depth, cluster (int32) and firmness (contract.py, rgb_uint8_nhwc): the engines' input shape is NHWC. The API each call uses is checked on every machine
against the real bindings (test_export_engine_builder.py); these tests are what a GPU adds.

Skipped (with the reason) where TensorRT or a GPU is missing; the fail-fast CLI test for that case is
in test_export.py and runs everywhere.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from icm_depth_ros.inference import fingerprint as fingerprints
from icm_depth_ros.inference.engine_builder import timing_cache_path_for
from icm_depth_ros.inference.onnx_precision import variant_path
from training.exporting.onnx_export import export_onnx, onnxruntime_session, run_onnxruntime
from training.exporting.tensorrt_build import build_engine, missing_requirements, run_engine
from training.exporting.variants import write_float16, write_int8
from training.model import ICMDepthNet

MISSING = missing_requirements()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(bool(MISSING), reason="; ".join(MISSING) or "TensorRT and GPU present"),
]
HEIGHT, WIDTH = 96, 320


def scenes(count: int, seed: int = 0) -> np.ndarray:
    from training.data import SyntheticRoadScenes

    data = SyntheticRoadScenes(count, size=(HEIGHT, WIDTH), seed=seed)
    return np.stack([data[index]["image"].numpy() for index in range(count)])


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict[str, Path]:
    torch.manual_seed(0)
    model = ICMDepthNet("resnet18", img_size=(HEIGHT, WIDTH), pretrained_path=None).eval()
    torch.nn.init.normal_(model.predictors[0].head.weight, std=0.05)
    folder = tmp_path_factory.mktemp("trt")
    files = {"fixed": folder / "fixed.onnx", "dynamic": folder / "dynamic.onnx"}
    export_onnx(model, files["fixed"], HEIGHT, WIDTH)
    export_onnx(model, files["dynamic"], HEIGHT, WIDTH, dynamic_batch=True)
    files["fixed_fp16"] = write_float16(files["fixed"], variant_path(files["fixed"], "fp16"))
    files["dynamic_fp16"] = write_float16(files["dynamic"], variant_path(files["dynamic"], "fp16"))
    return files


def test_fp32_engine_matches_onnxruntime_and_its_fingerprint(onnx_files, tmp_path):
    engine = tmp_path / "model.engine"
    written = build_engine(onnx_files["fixed"], engine, "fp32", workspace_gib=2)
    assert engine.stat().st_size > 0 and timing_cache_path_for(
        engine, written["tensorrt_version"], written["gpu_name"], written["compute_capability"]).stat().st_size > 0
    assert fingerprints.read_fingerprint(engine) == written
    assert written["input_shape"] == [1, HEIGHT, WIDTH, 3] and written["precision"] == "fp32"
    expected = fingerprints.expected_fingerprint(onnx_files["fixed"], "fp32", [1, HEIGHT, WIDTH, 3], max_batch=1)
    assert fingerprints.compare_fingerprint(written, expected) == []
    assert fingerprints.compare_fingerprint(written, {**expected, "precision": "fp16"}) == ["precision"]
    assert written["model_metadata"]["icm.input_height"] == str(HEIGHT)

    image = scenes(1)
    reference = run_onnxruntime(onnxruntime_session(onnx_files["fixed"]), image)
    outputs = run_engine(engine, image)  # given the scene's uint8 pixels, as ONNX Runtime was
    assert sorted(outputs) == ["cluster", "depth", "firmness"] and outputs["cluster"].dtype == np.int32
    assert outputs["cluster"].shape == (1, HEIGHT // 4, WIDTH // 4)
    assert np.max(np.abs(outputs["depth"] - reference["depth"]) / reference["depth"]) <= 1e-3
    assert np.mean(outputs["cluster"] != reference["cluster"]) <= 0.01  # only near-ties may go the other way
    assert np.max(np.abs(outputs["firmness"] - reference["firmness"])) <= 1e-3


def test_fp16_engine_with_dynamic_batch(onnx_files, tmp_path):
    engine = tmp_path / "model.engine"
    written = build_engine(onnx_files["dynamic_fp16"], engine, "fp16", max_batch=2)
    assert written["input_shape"] == [-1, HEIGHT, WIDTH, 3] and written["max_batch"] == 2
    assert written["onnx_sha256"] == fingerprints.file_sha256(onnx_files["dynamic"])  # the fp32 export's identity
    images = scenes(2)
    reference = run_onnxruntime(onnxruntime_session(onnx_files["dynamic"]), images)
    outputs = run_engine(engine, images)
    assert outputs["depth"].shape == (2, 1, HEIGHT, WIDTH) and outputs["cluster"].shape == (2, HEIGHT // 4, WIDTH // 4)
    assert np.mean(np.abs(outputs["depth"] - reference["depth"]) / reference["depth"]) < 1e-2
    assert np.mean(outputs["cluster"] != reference["cluster"]) < 0.05


def test_int8_engine_from_the_qdq_variant_calibrated_on_an_image_folder(onnx_files, tmp_path):
    import cv2

    from training.exporting.tensorrt_build import load_calibration_images

    folder = tmp_path / "calib"
    folder.mkdir()
    for index, image in enumerate(scenes(4, seed=50)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), (image.transpose(1, 2, 0)[..., ::-1] * 255).round().astype(np.uint8))
    images = load_calibration_images(folder, HEIGHT, WIDTH)
    assert len(images) == 4 and images[0].shape == (3, HEIGHT, WIDTH)
    quantized = write_int8(onnx_files["fixed"], tmp_path / "model.int8.onnx", images)
    engine = tmp_path / "model.engine"
    assert build_engine(quantized, engine, "int8")["precision"] == "int8"
    image = scenes(1)
    outputs = run_engine(engine, image)
    reference = run_onnxruntime(onnxruntime_session(quantized), image)  # the same Q/DQ file on the CPU
    assert np.all(np.isfinite(outputs["depth"])) and np.all(outputs["depth"] > 0)
    assert np.mean(np.abs(outputs["depth"] - reference["depth"]) / reference["depth"]) < 2e-2


def test_second_build_reuses_the_timing_cache(onnx_files, tmp_path):
    cache = tmp_path / "shared.timing.cache"
    build_engine(onnx_files["fixed_fp16"], tmp_path / "a.engine", "fp16", timing_cache_path=cache)
    size = cache.stat().st_size
    build_engine(onnx_files["fixed_fp16"], tmp_path / "b.engine", "fp16", timing_cache_path=cache)
    assert cache.stat().st_size >= size > 0
