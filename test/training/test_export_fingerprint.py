"""Engine fingerprints: file naming, read/write, and the comparison the node relies on (pure Python)."""
from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest

from icm_depth_ros.inference import fingerprint as fingerprints


def fingerprint(**overrides) -> dict:
    fields = dict(
        tensorrt_version="10.3.0", gpu_name="NVIDIA Jetson AGX Orin", compute_capability="8.7", precision="fp16",
        input_shape=[1, 3, 192, 640], max_batch=1, onnx_sha256="a" * 64, model_metadata={"icm.input_height": "192"},
    )
    fields.update(overrides)
    return fingerprints.make_fingerprint(**fields)


def test_path_sits_beside_the_engine(tmp_path):
    assert fingerprints.fingerprint_path(tmp_path / "model.engine") == tmp_path / "model.engine.fingerprint.json"


def test_write_read_round_trip(tmp_path):
    written = fingerprint()
    path = fingerprints.write_fingerprint(tmp_path / "model.engine", written)
    assert json.loads(path.read_text())["precision"] == "fp16"
    assert fingerprints.read_fingerprint(tmp_path / "model.engine") == written
    assert written["format"] == fingerprints.FORMAT_VERSION and written["built_at"].endswith("+00:00")


def test_identical_fingerprints_match():
    assert fingerprints.compare_fingerprint(fingerprint(), fingerprint()) == []


def test_mismatches_are_listed_by_field_in_a_fixed_order():
    found = fingerprint()
    expected = fingerprint(onnx_sha256="b" * 64, tensorrt_version="10.7.0", input_shape=[1, 3, 352, 1216])
    assert fingerprints.compare_fingerprint(found, expected) == ["tensorrt_version", "input_shape", "onnx_sha256"]
    text = fingerprints.describe_mismatch(found, expected)
    assert "tensorrt_version: engine has '10.3.0', expected '10.7.0'" in text


def test_only_expected_fields_are_compared_and_missing_ones_count():
    found = fingerprint()
    expected = {"precision": "fp16", "compute_capability": "8.7"}  # e.g. the node knows no ONNX file
    assert fingerprints.compare_fingerprint(found, expected) == []
    del found["precision"]
    assert fingerprints.compare_fingerprint(found, expected) == ["precision"]


def test_values_compare_after_normalising_json_types():
    found = json.loads(json.dumps(fingerprint()))
    expected = {"input_shape": (1, 3, 192, 640), "max_batch": "1", "compute_capability": "8.7"}
    assert fingerprints.compare_fingerprint(found, expected) == []


def test_gpu_and_precision_mismatch():
    found = fingerprint()
    expected = fingerprint(gpu_name="NVIDIA H200", compute_capability="9.0", precision="int8")
    assert fingerprints.compare_fingerprint(found, expected) == ["gpu_name", "compute_capability", "precision"]


def test_invalid_fingerprints_are_refused():
    with pytest.raises(ValueError, match="precision"):
        fingerprint(precision="tf32")
    with pytest.raises(ValueError, match="input_shape"):
        fingerprint(input_shape=[1, 192, 640])
    assert fingerprint(input_shape=[-1, 3, 192, 640], max_batch=4)["input_shape"][0] == -1


def test_missing_or_broken_fingerprint_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="model.engine.fingerprint.json: no fingerprint"):
        fingerprints.read_fingerprint(tmp_path / "model.engine")
    fingerprints.fingerprint_path(tmp_path / "model.engine").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON"):
        fingerprints.read_fingerprint(tmp_path / "model.engine")


def test_file_sha256(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x" * 3_000_000)
    assert fingerprints.file_sha256(tmp_path / "m.onnx") == hashlib.sha256(b"x" * 3_000_000).hexdigest()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_machine_fingerprint_says_tensorrt_is_missing():
    with pytest.raises(RuntimeError, match="'tensorrt' is not importable"):
        fingerprints.machine_fingerprint()
