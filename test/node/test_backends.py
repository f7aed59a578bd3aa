"""Backend selection, model validation and the TensorRT engine refusal rules (fake fingerprints here)."""
import logging
import shutil

import pytest

from icm_depth_ros.inference import fingerprint as fingerprints
from icm_depth_ros.inference import ModelLoadError, open_backend
from icm_depth_ros.inference.tensorrt_backend import engine_decision


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="no_model.onnx.*no such file"):
        open_backend("onnxruntime", str(tmp_path / "no_model.onnx"))


def test_model_without_contract_metadata_is_refused(onnx_model, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_model))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelLoadError, match="metadata lacks icm.input_height"):
        open_backend("onnxruntime", str(bare))


def test_bad_backend_name_lists_the_choices(onnx_model):
    with pytest.raises(ModelLoadError, match="'cuda' is not one of .*onnxruntime"):
        open_backend("cuda", str(onnx_model))


def test_auto_falls_back_to_onnxruntime_and_says_why(onnx_model, caplog):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed: auto would pick it")
    except ImportError:
        pass
    with caplog.at_level(logging.INFO):
        backend = open_backend("auto", str(onnx_model), logger=logging.getLogger("test"))
    assert backend.name == "onnxruntime"
    assert "TensorRT unavailable" in caplog.text and "using onnxruntime" in caplog.text


def test_explicit_tensorrt_without_tensorrt_is_an_error(onnx_model):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed")
    except ImportError:
        pass
    with pytest.raises(ModelLoadError, match="tensorrt"):
        open_backend("tensorrt", str(onnx_model))


def fake_fingerprint(**changes):
    values = dict(tensorrt_version="10.3.0", gpu_name="NVIDIA H200", compute_capability="9.0", precision="fp16",
                  input_shape=[1, 3, 96, 320], max_batch=1, onnx_sha256="ab" * 32)
    values.update(changes)
    return fingerprints.make_fingerprint(**values)


def test_matching_engine_is_used(tmp_path):
    expected = fake_fingerprint()
    assert engine_decision(tmp_path / "m.engine", fake_fingerprint(), [], "", allow_build=False) == "use"
    assert fingerprints.compare_fingerprint(fake_fingerprint(), expected) == []


def test_mismatched_engine_is_refused_with_the_differences(tmp_path):
    found, expected = fake_fingerprint(gpu_name="NVIDIA Orin", tensorrt_version="10.1.0"), fake_fingerprint()
    fields = fingerprints.compare_fingerprint(found, expected)
    mismatches = [fingerprints.describe_mismatch(found, expected, [f]) for f in fields]
    with pytest.raises(ModelLoadError, match="tensorrt_version: engine has '10.1.0'.*gpu_name.*allow_engine_build"):
        engine_decision(tmp_path / "m.engine", found, mismatches, "", allow_build=False)


def test_mismatched_engine_is_rebuilt_only_when_allowed_and_the_onnx_exists(tmp_path, onnx_model):
    found = fake_fingerprint(precision="fp32")
    mismatches = ["precision: engine has 'fp32', expected 'fp16'"]
    with pytest.raises(ModelLoadError, match="cannot rebuild: ONNX file"):
        engine_decision(tmp_path / "m.engine", found, mismatches, str(tmp_path / "gone.onnx"), allow_build=True)
    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(onnx_model, onnx_copy)
    assert engine_decision(tmp_path / "m.engine", found, mismatches, str(onnx_copy), allow_build=True) == "build"


def test_engine_without_fingerprint_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no fingerprint file"):
        engine_decision(tmp_path / "m.engine", None, [], "", allow_build=False)


@pytest.mark.gpu
def test_tensorrt_backend_matches_onnxruntime(onnx_model, tmp_path):
    pytest.importorskip("tensorrt")
    import numpy as np

    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(onnx_model, onnx_copy)
    trt = open_backend("tensorrt", str(onnx_copy), precision="fp32", allow_engine_build=True)
    ort = open_backend("onnxruntime", str(onnx_copy))
    image = np.random.default_rng(0).random((1, 3, 96, 320), dtype=np.float32)
    np.testing.assert_allclose(trt.infer(image)[0], ort.infer(image)[0], rtol=1e-3)
    again = open_backend("tensorrt", str(tmp_path / "m.engine"), precision="fp32")  # fingerprint now matches
    assert again.name == "tensorrt"
