"""The self-test (icm_depth_ros/inference/self_test.py): the reference input, the reference in the model's
metadata, the comparison and its tolerances, the policies the node and replay_eval apply, the command; and
ONNX Runtime's CUDA provider checked after the session is made (a stub session). No PyTorch."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_MODEL, MODEL_SIZE
from icm_depth_ros.inference import ModelLoadError, contract, open_backend, self_test
from icm_depth_ros.inference.contract import META_SELF_TEST

# sha256 of reference_image(96, 320, 0)'s uint8 pixels: the same on NumPy 1.21 (Humble), 1.26 (Jazzy) and 2.x,
# because it is drawn with integer arithmetic only. A change here makes every shipped reference unusable.
DEMO_INPUT_SHA256 = "55efc162530da8e8554d4219d936079c22bbad93b8fea7ca473224130776de7b"


class Lines:
    """A logger that keeps what it is given, by level."""

    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(("info", text))

    def warning(self, text):
        self.lines.append(("warning", text))

    def error(self, text):
        self.lines.append(("error", text))


def test_the_reference_input_is_the_same_road_scene_everywhere():
    image = self_test.reference_image(*MODEL_SIZE)
    assert image.shape == (*MODEL_SIZE, 3) and image.dtype == np.uint8
    assert self_test.image_sha256(image) == DEMO_INPUT_SHA256
    assert np.array_equal(image, self_test.reference_image(*MODEL_SIZE))
    assert not np.array_equal(image, self_test.reference_image(*MODEL_SIZE, seed=1))  # the seed moves the noise
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 500  # texture, not a few flat colour fields
    tensor = self_test.to_input(image)  # the older float32 pixel format
    assert tensor.shape == (1, 3, *MODEL_SIZE) and tensor.dtype == np.float32
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0
    np.testing.assert_array_equal(self_test.model_input(image, contract.PIXEL_FORMAT_UINT8), image[None])
    np.testing.assert_array_equal(self_test.model_input(image, contract.PIXEL_FORMAT_FLOAT32), tensor)
    with pytest.raises(ValueError, match="pixel format 'bgr8' is not one of"):
        self_test.model_input(image, "bgr8")
    for size in ((16, 32), (352, 1216)):
        assert self_test.reference_image(*size).shape == (*size, 3)
    with pytest.raises(ValueError, match="at least 8x8"):
        self_test.reference_image(4, 320)


def test_the_shipped_demo_model_carries_its_reference_and_passes_in_onnxruntime():
    backend = open_backend("onnxruntime", str(DEMO_MODEL))
    reference = self_test.read_reference(backend.metadata, str(DEMO_MODEL))
    assert reference is not None and (reference.height, reference.width) == MODEL_SIZE
    assert reference.input_sha256 == DEMO_INPUT_SHA256 and reference.depth_stride == 1
    assert reference.argmax.shape == (24, 80) and reference.num_clusters == backend.info.num_clusters
    assert len(backend.metadata[META_SELF_TEST]) <= 200_000
    assert backend.precision == "fp32"
    result = self_test.run(backend, reference, backend.precision, str(DEMO_MODEL))
    assert result.passed, result.line()
    # what is left is the float16 storage of the reference depth (at most 2^-11 relative)
    assert result.figures.max_rel <= 5e-4 and result.figures.agreement == 1.0
    assert result.line().startswith("self-test passed: depth abs_rel ")
    assert "onnxruntime 1." in result.line() and "precision fp32" in result.line()


def test_a_reference_is_compact_at_the_papers_size_even_for_incompressible_outputs():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 80.0, (1, 1, 352, 1216)).astype(np.float32)
    cluster = rng.integers(0, 300, (1, 88, 304)).astype(np.int32)  # > 255 clusters: uint16 arg-max
    reference = self_test.make_reference(depth, cluster, 300)
    text = reference.to_json()
    assert len(text) <= 200_000
    assert reference.depth_stride == 4 and reference.depth.shape == (88, 304)
    again = self_test.Reference.from_json(text)
    assert again.argmax.dtype == np.uint16 and np.array_equal(again.argmax, cluster[0])
    figures = self_test.compare(again, depth, cluster, 300)
    assert figures.agreement == 1.0 and figures.max_rel <= 2.0 ** -11


def test_compare_counts_depth_errors_and_cluster_disagreement():
    rng = np.random.default_rng(1)
    depth = rng.uniform(2.0, 50.0, (1, 1, 32, 64)).astype(np.float32)
    cluster = rng.integers(0, 5, (1, 8, 16)).astype(np.int32)
    reference = self_test.make_reference(depth, cluster, 5)
    scaled = self_test.compare(reference, depth * 1.1, cluster, 5)
    assert scaled.abs_rel == pytest.approx(0.1, abs=1e-3) and scaled.max_rel == pytest.approx(0.1, abs=1e-3)
    assert scaled.agreement == 1.0
    shifted = cluster.copy()
    shifted[0, :4] = (shifted[0, :4] + 1) % 5  # half the cells in another cluster
    assert self_test.compare(reference, depth, shifted, 5).agreement == pytest.approx(0.5)
    broken = depth.copy()
    broken[0, 0, 3, 3] = np.nan
    assert self_test.compare(reference, broken, cluster, 5).max_rel == np.inf
    assert not self_test.compare(reference, broken, cluster, 5).within(self_test.TOLERANCES["int8"])
    assert self_test.compare(reference, depth, cluster, 4).agreement == 0.0  # another cluster count
    with pytest.raises(ValueError, match="do not fit the reference"):
        self_test.compare(reference, depth[:, :, :16], cluster, 5)


def test_tolerances_are_ordered_by_precision():
    fp32, fp16, int8 = (self_test.TOLERANCES[p] for p in ("fp32", "fp16", "int8"))
    assert fp32.abs_rel < fp16.abs_rel < int8.abs_rel and fp32.max_rel < fp16.max_rel < int8.max_rel
    assert fp32.agreement > fp16.agreement > int8.agreement


def test_unreadable_or_misfitting_references_are_named(tmp_path):
    metadata = {"icm.input_height": "96", "icm.input_width": "320"}
    assert self_test.read_reference(metadata) is None
    with pytest.raises(ValueError, match="m.onnx: metadata icm.self_test is not a readable self-test reference"):
        self_test.read_reference({**metadata, META_SELF_TEST: "{not json"}, "m.onnx")
    reference = self_test.make_reference(np.ones((1, 1, 32, 64), np.float32), np.ones((1, 8, 16), np.int32), 3)
    with pytest.raises(ValueError, match="reference is for 32x64, the model's input is 96x320"):
        self_test.read_reference({**metadata, META_SELF_TEST: reference.to_json()})
    stored = json.loads(reference.to_json())
    stored["format"] = 99
    with pytest.raises(ValueError, match="format 99"):
        self_test.Reference.from_json(json.dumps(stored))
    stored = json.loads(reference.to_json())
    stored["input"]["sha256"] = "0" * 64  # as if this machine rendered the input differently
    with pytest.raises(ValueError, match="renders differently here"):
        self_test.Reference.from_json(json.dumps(stored)).input()


def test_policies_pass_refuse_warn_and_off(onnx_model, perturbed_model, unreferenced_model):
    good, bad, old = (open_backend("onnxruntime", str(path)) for path in (onnx_model, perturbed_model, unreferenced_model))
    lines = Lines()
    assert self_test.check_backend(good, "refuse", lines, model=str(onnx_model)).passed
    assert len(lines.lines) == 1 and lines.lines[0][0] == "info" and lines.lines[0][1].startswith("self-test passed: ")

    lines = Lines()
    with pytest.raises(self_test.SelfTestFailed) as refused:
        self_test.check_backend(bad, "refuse", lines, model=str(perturbed_model))
    assert lines.lines == []  # the caller logs the one line
    line = str(refused.value)
    assert line.startswith("self-test failed: depth abs_rel ") and "cluster agreement" in line
    assert "tolerance for fp32: abs_rel <= 0.005, max relative error <= 0.05, cluster agreement >= 98.0%" in line
    assert "onnxruntime 1." in line and "precision fp32" in line and "icm_perturbed.onnx" in line
    assert "Try: " in line and "\n" not in line
    assert isinstance(refused.value, ModelLoadError)

    lines = Lines()
    result = self_test.check_backend(bad, "warn", lines, model=str(perturbed_model))
    assert not result.passed and len(lines.lines) == 1
    assert lines.lines[0][0] == "warning" and lines.lines[0][1].startswith("self-test failed: ")
    assert lines.lines[0][1].endswith("(self_test: warn, so the model runs anyway)")

    lines = Lines()
    assert self_test.check_backend(bad, "off", lines) is None and lines.lines == []

    lines = Lines()
    assert self_test.check_backend(old, "refuse", lines, model=str(unreferenced_model)) is None
    assert len(lines.lines) == 1 and lines.lines[0][0] == "warning"
    assert "carries no reference" in lines.lines[0][1] and "cannot be verified" in lines.lines[0][1]

    with pytest.raises(ValueError, match="self_test 'strict' is not one of refuse, warn, off"):
        self_test.check_backend(good, "strict", Lines())


class FakeBackend:
    """A backend with the demo model's metadata whose inference does what ``infer`` says."""

    name, description, precision = "tensorrt", "tensorrt 10.3.0 (model.engine, batch 1)", None

    def __init__(self, infer):
        demo = open_backend("onnxruntime", str(DEMO_MODEL))
        self.metadata, self.info = demo.metadata, demo.info
        self.infer = infer


def test_a_backend_failing_on_the_reference_input_is_a_load_error_and_odd_outputs_are_not_verified():
    def cuda_error(image):
        raise RuntimeError("CUDA error cudaErrorIllegalAddress")

    for policy in ("refuse", "warn"):
        with pytest.raises(ModelLoadError, match="self-test: tensorrt 10.3.0 .* failed on the reference input: "
                                                 "RuntimeError: CUDA error cudaErrorIllegalAddress"):
            self_test.check_backend(FakeBackend(cuda_error), policy, Lines(), precision="fp16")

    def programming_error(image):
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):  # never swallowed
        self_test.check_backend(FakeBackend(programming_error), "refuse", Lines(), precision="fp16")

    lines = Lines()
    wrong_size = FakeBackend(lambda image: (np.ones((1, 1, 8, 8), np.float32), np.ones((1, 2, 2), np.int32),
                                            np.ones((1, 2, 2), np.float32)))
    assert self_test.check_backend(wrong_size, "refuse", lines, precision="fp16") is None
    ((level, line),) = lines.lines
    assert level == "warning" and "do not fit the reference" in line and "cannot be verified" in line

    lines = Lines()
    exact = open_backend("onnxruntime", str(DEMO_MODEL))
    result = self_test.check_backend(FakeBackend(exact.infer), "refuse", lines, precision="int8")
    assert result.passed and result.precision == "int8"  # TensorRT: the engine's precision, as requested
    assert "tensorrt 10.3.0 (model.engine, batch 1), precision int8" in lines.lines[0][1]


def test_a_perturbed_model_fails_every_precisions_tolerance(perturbed_model):
    """The copy with changed weights is far outside even the INT8 tolerance: what the self-test is for."""
    backend = open_backend("onnxruntime", str(perturbed_model))
    reference = self_test.read_reference(backend.metadata)
    for precision in ("fp32", "fp16", "int8"):
        assert not self_test.run(backend, reference, precision).passed, precision


def run_command(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "icm_depth_ros.inference.self_test", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_the_command_exits_0_1_2(onnx_model, perturbed_model, unreferenced_model, tmp_path):
    passed = run_command(onnx_model)
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.startswith("self-test passed: depth abs_rel ") and "tolerance abs_rel <= 0.005" in passed.stdout

    failed = run_command(perturbed_model, "--backend", "onnxruntime")
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.startswith("self-test failed: depth abs_rel ") and "tolerance for fp32" in failed.stdout

    missing = run_command(unreferenced_model)
    assert missing.returncode == 2 and "carries no reference (icm.self_test)" in missing.stderr

    absent = run_command(tmp_path / "nothing.onnx")
    assert absent.returncode == 2 and absent.stderr.strip() == f"self_test: error: {tmp_path / 'nothing.onnx'}: no such file"
    unreadable = tmp_path / "text.onnx"
    unreadable.write_text("not a model")
    broken = run_command(unreadable)
    assert broken.returncode == 2 and broken.stderr.startswith("self_test: error: ") and len(broken.stderr.splitlines()) == 1
    ignored = run_command(onnx_model, "--out", tmp_path / "x.onnx")
    assert ignored.returncode == 2 and "--out applies to --write-reference only" in ignored.stderr


def test_write_reference_gives_an_old_file_its_reference_and_keeps_the_rest(unreferenced_model, tmp_path):
    import onnx

    out = tmp_path / "given.onnx"
    written = run_command(unreferenced_model, "--write-reference", "--out", out)
    assert written.returncode == 0, written.stderr
    assert "wrote the self-test reference into" in written.stdout
    before, after = onnx.load(str(unreferenced_model)), onnx.load(str(out))
    assert before.graph.SerializeToString() == after.graph.SerializeToString()  # weights untouched
    old = {p.key: p.value for p in before.metadata_props}
    new = {p.key: p.value for p in after.metadata_props}
    assert {k: v for k, v in new.items() if k != META_SELF_TEST} == old
    given = self_test.Reference.from_json(new[META_SELF_TEST])
    shipped = self_test.read_reference({p.key: p.value for p in onnx.load(str(DEMO_MODEL)).metadata_props})
    assert given.computed_with.startswith("onnxruntime ")  # the version of wherever this runs
    assert given.input_sha256 == shipped.input_sha256 and np.array_equal(given.argmax, shipped.argmax)
    np.testing.assert_allclose(given.depth, shipped.depth, rtol=1e-3)  # float16: equal, or one step apart
    assert run_command(out).returncode == 0
    refused = run_command(unreferenced_model, "--write-reference", "--backend", "tensorrt")
    assert refused.returncode == 2 and "would be ignored" in refused.stderr


# ---- ONNX Runtime: the provider that actually runs (point 4 of issue 20) ----------------------------------


class StubSession:
    """An InferenceSession that was asked for CUDA and, as ONNX Runtime does when the provider cannot load
    (cuDNN missing), runs on the CPU: the real session underneath, with get_providers() saying so."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    @staticmethod
    def get_providers():
        return ["CPUExecutionProvider"]


@pytest.fixture
def cuda_that_does_not_start(monkeypatch):
    """onnxruntime offering CUDAExecutionProvider, whose sessions then run on the CPU only."""
    import onnxruntime

    real_session = onnxruntime.InferenceSession
    asked = []

    def session(path, options=None, providers=None, **kwargs):
        asked.append(list(providers or []))
        return StubSession(real_session(path, options, providers=["CPUExecutionProvider"], **kwargs))

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    return asked


def test_cuda_asked_but_cpu_given_is_refused_by_name(onnx_model, cuda_that_does_not_start):
    with pytest.raises(ModelLoadError) as refused:
        open_backend("onnxruntime", str(onnx_model), onnxruntime_provider="cuda")
    assert cuda_that_does_not_start == [["CUDAExecutionProvider", "CPUExecutionProvider"]]
    message = str(refused.value)
    assert message.startswith("onnxruntime_provider 'cuda': ONNX Runtime ") and "['CPUExecutionProvider']" in message
    assert "the provider did not start (CUDA or cuDNN libraries" in message and "onnxruntime_provider:=cpu" in message


def test_cuda_asked_but_cpu_given_falls_back_with_a_line_under_auto(onnx_model, cuda_that_does_not_start, caplog):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed: auto would pick it")
    except ImportError:
        pass
    for backend_name, provider in (("auto", "cuda"), ("onnxruntime", "auto"), ("auto", "auto")):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            backend = open_backend(backend_name, str(onnx_model), onnxruntime_provider=provider,
                                   logger=logging.getLogger("test"))
        assert backend.name == "onnxruntime" and backend.device == "cpu"
        assert backend.description == "onnxruntime (CPUExecutionProvider)"
        fallback = [r.message for r in caplog.records if "did not start" in r.message]
        assert len(fallback) == 1 and fallback[0].startswith(f"onnxruntime_provider {provider!r}: ONNX Runtime ")
        assert fallback[0].endswith("running on the CPU"), fallback[0]
        pixels = self_test.model_input(self_test.reference_image(*MODEL_SIZE), backend.info.pixel_format)
        assert backend.infer(pixels)[0].shape == (1, 1, *MODEL_SIZE)


def test_cuda_not_offered_at_all_names_onnxruntime_gpu(onnx_model, monkeypatch, caplog):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelLoadError, match="install onnxruntime-gpu"):
        open_backend("onnxruntime", str(onnx_model), onnxruntime_provider="cuda")
    try:
        import tensorrt  # noqa: F401
        return
    except ImportError:
        pass
    with caplog.at_level(logging.INFO):
        backend = open_backend("auto", str(onnx_model), onnxruntime_provider="cuda", logger=logging.getLogger("test"))
    assert backend.device == "cpu" and "backend auto: running ONNX Runtime on the CPU" in caplog.text


def test_a_cpu_session_is_not_warned_about(onnx_model, caplog):
    with caplog.at_level(logging.INFO):
        backend = open_backend("onnxruntime", str(onnx_model), onnxruntime_provider="cpu", logger=logging.getLogger("t"))
    assert backend.device == "cpu" and "did not start" not in caplog.text
