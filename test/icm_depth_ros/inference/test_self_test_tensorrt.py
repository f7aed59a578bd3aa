"""The self-test on the TensorRT path, through the bindings doubles (test/tensorrt_double/): the node's
backend opens an fp32 / fp16 / int8 engine of the contract models and runs the same comparison
(self_test.check_backend) on what the engine double computes.

The engine double does not run the ONNX graph: its "network" (scenario.network) computes depth, cluster and
firmness from the pixels by the formula the contract models are written with (test_double.py checks it
against ONNX Runtime on them). Two sets of the contract models are used:

- "double": each file's reference is what the double computes for the reference input (its fp32 run,
  scenario.network): the engines of every precision pass, with figures 0 / 0 / 100 %, as an engine that
  computes what the reference says must;
- "other": the reference of another model (depth 20 % further, the clusters numbered differently): the
  double's engine computes something else than the reference says, as a wrong engine would, and is refused
  with the line naming the figures, the tolerance, TensorRT's version and the precision. (The reference
  ONNX Runtime computes on the contract graph, which training/export.py would write, is the double's to float
  rounding: test/training/test_export_self_test.py checks that it passes.)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from icm_depth_ros.inference import contract, self_test

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # test/: the tensorrt_double package
from tensorrt_double.models import HEIGHT, NUM_CLUSTERS, WIDTH, shipped_model_and_variants  # noqa: E402
from tensorrt_double.scenario import network  # noqa: E402
from tensorrt_double.setup_bindings import run_scenario, skip_without_runtime  # noqa: E402

RUNTIMES = [("10.3.0", "12.9.6"), ("11.4.0.106", "13.5.0")]  # JetPack 6; pip on a CUDA 13 machine
PRECISIONS = ("fp32", "fp16", "int8")

CHECK = """
import json
from icm_depth_ros.inference import open_backend
from icm_depth_ros.inference.self_test import SelfTestFailed, check_backend

class Lines:
    def __init__(self):
        self.lines = []
    def info(self, text):
        self.lines.append(["info", text])
    warning = info

results = {}
for name, engine, onnx, precision in CASES:
    backend = open_backend("tensorrt", engine, onnx_path=onnx, precision=precision, allow_engine_build=True,
                           logger=Lines())
    lines = Lines()
    try:
        result = check_backend(backend, "refuse", lines, model=engine, precision=precision)
        results[name] = {"passed": result.passed, "figures": result.figures.__dict__, "lines": lines.lines}
    except SelfTestFailed as error:
        results[name] = {"passed": False, "refused": str(error), "lines": lines.lines}
with open(OUT, "w") as out:
    json.dump(results, out)
"""


def with_reference(files: dict, reference: self_test.Reference) -> dict:
    for path in files.values():
        self_test.write_reference(path, reference=reference)
    return files


@pytest.fixture(scope="module", params=RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def checks(request, tmp_path_factory):
    version, cuda_version = request.param
    skip_without_runtime(version, cuda_version)
    folder = tmp_path_factory.mktemp(f"self_test_{version}")
    pixels = self_test.model_input(self_test.reference_image(HEIGHT, WIDTH), contract.PIXEL_FORMAT_UINT8)
    depth, cluster, _ = network(pixels)
    sets = {
        "double": with_reference(shipped_model_and_variants(folder / "double"), self_test.make_reference(
            depth, cluster, NUM_CLUSTERS, computed_with="the engine double's network (its fp32 run)")),
        "other": with_reference(shipped_model_and_variants(folder / "other"), self_test.make_reference(
            depth * 1.2, (cluster + 1) % NUM_CLUSTERS, NUM_CLUSTERS, computed_with="another model")),
    }
    cases = [(f"{name}_{precision}", str(files["fp32"].with_name(f"{precision}.engine")), str(files["fp32"]), precision)
             for name, files in sets.items() for precision in PRECISIONS]
    out = folder / "results.json"
    code = f"CASES = {cases!r}\nOUT = {str(out)!r}\n{CHECK}"
    report = run_scenario(version, cuda_version, [{"kind": "snippet", "code": code}])
    (result,) = report["results"]
    assert result["ok"], result.get("traceback")
    return version, json.loads(out.read_text())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_an_engine_that_computes_the_reference_passes(checks, precision):
    version, results = checks
    result = results[f"double_{precision}"]
    assert result["passed"], result
    assert result["figures"]["agreement"] == 1.0 and result["figures"]["max_rel"] <= 2.0 ** -11
    ((level, line),) = result["lines"]
    assert level == "info" and line.startswith("self-test passed: ")
    assert f"tensorrt {version} ({precision}.engine, batch 1), precision {precision}" in line
    assert f"tolerance {self_test.TOLERANCES[precision].describe()}" in line


@pytest.mark.parametrize("precision", PRECISIONS)
def test_an_engine_that_computes_something_else_is_refused(checks, precision):
    version, results = checks
    result = results[f"other_{precision}"]
    assert not result["passed"] and result["lines"] == []
    line = result["refused"]
    assert line.startswith("self-test failed: depth abs_rel ")
    assert f"tolerance for {precision}: {self_test.TOLERANCES[precision].describe()}" in line
    assert f"(tensorrt {version} ({precision}.engine, batch 1), precision {precision}, model {precision}.engine)" in line
    tip = {"fp32": "rebuild it", "fp16": "precision:=fp32", "int8": "precision:=fp16"}[precision]
    assert "Try: " in line and tip in line
