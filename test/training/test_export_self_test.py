"""The self-test reference on the export side: export_onnx writes it, the fp16 / INT8 variants inherit it and
pass it in ONNX Runtime (the shipped demo model's too), and ``training/export.py --engine`` self-tests every
engine it builds through the node's backend (TensorRT through the bindings doubles, test/tensorrt_double/)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from icm_depth_ros.inference import open_backend, self_test
from icm_depth_ros.inference.contract import META_SELF_TEST
from icm_depth_ros.inference.onnx_precision import onnx_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/: the tensorrt_double package

from tensorrt_double.models import HEIGHT, NUM_CLUSTERS, WIDTH, shipped_model_and_variants  # noqa: E402
from tensorrt_double.scenario import network  # noqa: E402
from tensorrt_double.setup_bindings import run_scenario  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "demo" / "icm_demo.onnx"


def small_model():
    from training.model import ICMDepthNet

    torch.manual_seed(0)
    model = ICMDepthNet(encoder="resnet18", img_size=(64, 128), num_clusters=8, dim=64, iterations=1,
                        min_depth=1e-3, max_depth=80.0, pretrained_path=None)
    torch.nn.init.normal_(model.predictors[0].head.weight, std=0.05)
    return model.eval()


def test_every_export_carries_its_reference_which_is_what_pytorch_computes(tmp_path):
    from training.exporting.onnx_export import export_onnx

    model = small_model()
    path = tmp_path / "model.onnx"
    export_onnx(model, path, 64, 128, config_name="unit", dynamic_batch=True)
    reference = self_test.read_reference(onnx_metadata(path), str(path))
    assert reference is not None and (reference.height, reference.width) == (64, 128)
    assert reference.computed_with.startswith("onnxruntime ") and reference.computed_with.endswith("fp32 graph")
    with torch.no_grad():
        outputs = model(torch.from_numpy(self_test.to_input(reference.pixels())))  # the network on float input
    cluster = outputs["attn"][-1].argmax(dim=1).numpy()
    figures = self_test.compare(reference, outputs["depth"].numpy(), cluster, model.num_clusters)
    assert figures.within(self_test.TOLERANCES["fp32"]) and figures.max_rel <= 1e-3, figures
    backend = open_backend("onnxruntime", str(path))
    assert self_test.run(backend, reference, backend.precision).passed
    again = tmp_path / "again.onnx"
    export_onnx(model, again, 64, 128, config_name="unit", dynamic_batch=True)
    assert onnx_metadata(again)[META_SELF_TEST] == onnx_metadata(path)[META_SELF_TEST]  # deterministic


@pytest.fixture(scope="module")
def demo_variants(tmp_path_factory):
    """The shipped demo model's fp16 and INT8 variants, written as training/export.py writes them (INT8
    calibrated on its default 16 synthetic train scenes)."""
    from training.export import DEFAULT_INT8_SCENES, synthetic_images
    from training.exporting.variants import write_float16, write_int8

    folder = tmp_path_factory.mktemp("demo_variants")
    return {"fp32": DEMO_MODEL,
            "fp16": write_float16(DEMO_MODEL, folder / "icm_demo.fp16.onnx"),
            "int8": write_int8(DEMO_MODEL, folder / "icm_demo.int8.onnx",
                               synthetic_images(DEFAULT_INT8_SCENES, 96, 320, split="train"))}


@pytest.mark.parametrize("precision", ("fp32", "fp16", "int8"))
def test_the_demo_models_variants_inherit_the_reference_and_pass_in_onnxruntime(demo_variants, precision):
    path = demo_variants[precision]
    assert onnx_metadata(path)[META_SELF_TEST] == onnx_metadata(DEMO_MODEL)[META_SELF_TEST]
    backend = open_backend("onnxruntime", str(path))
    assert backend.precision == precision
    lines = []

    class Log:
        info = warning = staticmethod(lines.append)

    result = self_test.check_backend(backend, "refuse", Log(), model=str(path))
    assert result.passed and result.precision == precision, result.line()
    assert lines == [result.line()] and lines[0].startswith("self-test passed: ")
    assert f"precision {precision}" in lines[0]


@pytest.fixture(scope="module")
def export_runs(tmp_path_factory):
    """training/export.py --onnx model.onnx --engine E --precision P with TensorRT 11.4's bindings doubles, for
    the contract model given as reference the double's own outputs, the ONNX Runtime reference (the double
    computes the contract model's function: the same to float rounding), another model's, and none."""
    folder = tmp_path_factory.mktemp("export_self_test")
    depth, cluster, _ = network(self_test.model_input(self_test.reference_image(HEIGHT, WIDTH), "rgb_uint8_nhwc"))
    references = {"double": self_test.make_reference(depth, cluster, NUM_CLUSTERS),
                  "other": self_test.make_reference(depth * 1.2, (cluster + 1) % NUM_CLUSTERS, NUM_CLUSTERS)}
    files = {name: shipped_model_and_variants(folder / name) for name in ("double", "onnxruntime", "other", "none")}
    references["onnxruntime"] = self_test.compute_reference(files["onnxruntime"]["fp32"])
    for name, reference in references.items():
        for path in files[name].values():
            self_test.write_reference(path, reference=reference)
    shape = [1, HEIGHT, WIDTH, 3]
    runs = {}
    actions = []
    for name in files:
        for precision in ("fp32", "fp16"):
            runs[(name, precision)] = len(actions)
            actions.append({"kind": "export", "input_shape": shape, "argv": [
                "--onnx", str(files[name]["fp32"]), "--engine", str(folder / name / f"{precision}.engine"),
                "--precision", precision]})
    report = run_scenario("11.4.0.106", "13.5.0", actions)
    return folder, {key: report["results"][index] for key, index in runs.items()}


@pytest.mark.parametrize("precision", ("fp32", "fp16"))
def test_export_self_tests_the_engine_it_built(export_runs, precision):
    folder, runs = export_runs
    for name in ("double", "onnxruntime"):
        passed = runs[(name, precision)]
        assert passed["ok"] and passed["exit_code"] == 0, (passed.get("traceback"), passed.get("stderr"))
        assert f"{META_SELF_TEST}': '<" in passed["stdout"]  # the fingerprint is printed without the reference's text
        (line,) = [text for text in passed["stdout"].splitlines() if text.startswith("self-test passed: ")]
        assert f"tensorrt 11.4.0.106 ({precision}.engine, batch 1), precision {precision}" in line
        assert "cluster agreement 100.0%" in line, line

    failed = runs[("other", precision)]
    assert failed["ok"] and failed["exit_code"] == 1, (failed.get("traceback"), failed.get("stderr"))
    (line,) = [text for text in failed["stderr"].splitlines() if text.startswith("self-test failed: ")]
    assert f"tolerance for {precision}" in line and "tensorrt 11.4.0.106" in line
    assert "it was kept for inspection, but a node with self_test: refuse" in failed["stderr"]
    assert (folder / "other" / f"{precision}.engine").is_file()

    unverified = runs[("none", precision)]
    assert unverified["ok"] and unverified["exit_code"] == 0, unverified.get("stderr")
    assert "warning: self-test: " in unverified["stderr"] and "carries no reference" in unverified["stderr"]
    assert "self-test passed" not in unverified["stdout"]
