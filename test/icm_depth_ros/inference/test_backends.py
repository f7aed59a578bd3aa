"""Backend selection, model validation, the TensorRT engine refusal rules, and the node's TensorRT path
(engine load, inference call sequence, rebuild) driven through the REAL TensorRT and cuda-python bindings
of each supported version (test/tensorrt_double/)."""
import json
import logging
import shutil
import sys
from pathlib import Path

import pytest

from icm_depth_ros.inference import ModelLoadError, open_backend
from icm_depth_ros.inference import fingerprint as fingerprints
from icm_depth_ros.inference.tensorrt_backend import engine_decision

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # test/: the tensorrt_double package
from tensorrt_double.models import HEIGHT, NUM_CLUSTERS, WIDTH, shipped_model_and_variants  # noqa: E402
from tensorrt_double.setup_bindings import run_scenario, runtime_missing_wheel  # noqa: E402

# (TensorRT, cuda-python) as installed on: JetPack 6, JetPack 7, pip on a CUDA 13 and on a CUDA 12 machine
RUNTIMES = [("10.3.0", "12.9.6"), ("10.13.3.9", "13.5.0"), ("11.4.0.106", "13.5.0"), ("11.4.0.106", "12.9.6")]


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


def test_dynamic_batch_variant_runs_a_batch_as_the_demo_model_runs_each_image(onnx_model, dynamic_batch_model):
    """conftest's with_dynamic_batch: same outputs per image, any batch size, the contract says so."""
    import numpy as np

    static = open_backend("onnxruntime", str(onnx_model))
    dynamic = open_backend("onnxruntime", str(dynamic_batch_model))
    assert dynamic.info.dynamic_batch and not static.info.dynamic_batch
    images = np.random.default_rng(3).random((3, 3, 96, 320), dtype=np.float32)
    depth, membership = dynamic.infer(images)
    assert depth.shape == (3, 1, 96, 320) and membership.shape == (3, static.info.num_clusters, 24, 80)
    for index in range(3):
        alone_depth, alone_membership = static.infer(images[index:index + 1])
        np.testing.assert_allclose(depth[index:index + 1], alone_depth, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(membership[index:index + 1], alone_membership, atol=1e-5)


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


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory):
    return shipped_model_and_variants(tmp_path_factory.mktemp("node_models"))


@pytest.fixture(scope="module", params=RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def node_runs(request, variant_files, tmp_path_factory):
    """The node's TensorRT path through one version pair: load, refuse, rebuild, infer."""
    version, cuda_version = request.param
    reason = runtime_missing_wheel(version, cuda_version)
    if reason is not None:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp(f"node_{version}_{cuda_version}")
    for path in variant_files.values():
        shutil.copy(path, folder / path.name)
    engine, onnx = str(folder / "model.engine"), str(folder / "model.onnx")
    other = "10.3.0" if version.startswith("11.") else "11.4.0.106"
    shape = [1, 3, HEIGHT, WIDTH]
    actions = {
        "first_start": {"kind": "open", "model_path": engine, "precision": "fp16", "input_shape": shape},
        "built": {"kind": "open", "model_path": engine, "precision": "fp16", "allow_build": True, "input_shape": shape},
        "loaded": {"kind": "open", "model_path": engine, "precision": "fp16", "input_shape": shape},
        "int8_refused": {"kind": "open", "model_path": engine, "precision": "int8", "input_shape": shape},
        "int8_rebuilt": {"kind": "open", "model_path": engine, "onnx_path": onnx, "precision": "int8",
                         "allow_build": True, "input_shape": shape},
        "aged": {"kind": "snippet", "code": (
            "import json, pathlib\n"
            f"path = pathlib.Path({engine!r} + '.fingerprint.json')\n"
            f"data = json.loads(path.read_text()); data['tensorrt_version'] = {other!r}\n"
            "path.write_text(json.dumps(data))")},
        "other_version_refused": {"kind": "open", "model_path": engine, "precision": "int8", "input_shape": shape},
        "other_version_rebuilt": {"kind": "open", "model_path": engine, "precision": "int8", "allow_build": True,
                                  "input_shape": shape},
        "old_driver": {"kind": "open", "model_path": engine, "precision": "int8", "input_shape": shape,
                       "driver_cuda": "12.6"},
    }
    report = run_scenario(version, cuda_version, list(actions.values()))
    return version, cuda_version, folder, other, dict(zip(actions, report["results"]))


def calls(result, name):
    return [args for call, args in result["calls"] if call == name]


def test_node_builds_loads_and_runs_an_engine_with_the_real_bindings(node_runs):
    version, cuda_version, folder, _, results = node_runs
    first = results["first_start"]
    assert not first["ok"] and first["error"] == f"ModelLoadError: model_path {str(folder / 'model.engine')!r}: no such file"
    built, loaded = results["built"], results["loaded"]
    assert built["ok"], built.get("traceback")
    assert calls(built, "OnnxParser.parse_from_file") == [{"model": str(folder / "model.fp16.onnx")}]  # the fp16 variant
    assert loaded["ok"], loaded.get("traceback")
    assert calls(loaded, "Builder.build_serialized_network") == []  # the fingerprint matched: no rebuild
    assert loaded["description"] == f"tensorrt {version} (model.engine)"
    assert loaded["depth_max_error"] == 0.0 and loaded["depth_shape"] == [1, 1, HEIGHT, WIDTH]
    assert loaded["membership_sum"] == pytest.approx(1.0)
    assert calls(loaded, "IExecutionContext.set_input_shape") == [{"name": "image", "shape": [1, 3, HEIGHT, WIDTH]}]
    assert sorted(args["name"] for args in calls(loaded, "IExecutionContext.set_tensor_address")) == \
        ["depth", "image", "membership"]


def test_inference_call_sequence_with_cuda_python(node_runs):
    _, cuda_version, _, _, results = node_runs
    loaded = results["loaded"]
    sequence = [name for name, _ in loaded["cuda_calls"]]
    assert sequence[:1] == ["cudaStreamCreate"]
    assert sequence.count("cudaMallocHost") == 3 and sequence.count("cudaMalloc") == 3
    tail = [name for name in sequence if name in ("cudaMemcpyAsync", "cudaStreamSynchronize")]
    assert tail == ["cudaMemcpyAsync"] * 3 + ["cudaStreamSynchronize"]  # in, depth, membership, then wait
    kinds = [args["kind"] for name, args in loaded["cuda_calls"] if name == "cudaMemcpyAsync"]
    assert kinds == [1, 2, 2]  # cudaMemcpyHostToDevice, then cudaMemcpyDeviceToHost twice (cuda_runtime_api.h values)
    (execute,) = calls(loaded, "IExecutionContext.execute_async_v3")
    assert execute["stream_handle"] == loaded["streams"][-1]  # the stream this backend created, as a plain int


def test_node_rebuilds_from_the_variant_of_the_requested_precision(node_runs):
    version, _, folder, _, results = node_runs
    refused = results["int8_refused"]
    assert not refused["ok"] and "precision: engine has 'fp16', expected 'int8'" in refused["error"]
    rebuilt = results["int8_rebuilt"]
    assert rebuilt["ok"], rebuilt.get("traceback")
    assert calls(rebuilt, "OnnxParser.parse_from_file") == [{"model": str(folder / "model.int8.onnx")}]
    assert "IBuilderConfig.set_flag" not in [name for name, _ in rebuilt["calls"]]
    assert (folder / f"model.engine.tensorrt-{version}.timing.cache").is_file()


def test_engine_of_another_tensorrt_version_is_refused_by_name_or_rebuilt(node_runs):
    version, _, folder, other, results = node_runs
    refused = results["other_version_refused"]
    assert not refused["ok"]
    assert (f"tensorrt_version: engine has '{other}', expected '{version}' (an engine runs only on the TensorRT "
            "version that built it)") in refused["error"]
    assert "rebuild it, or set allow_engine_build:=true" in refused["error"]
    assert results["other_version_rebuilt"]["ok"], results["other_version_rebuilt"].get("traceback")
    assert json.loads((folder / "model.engine.fingerprint.json").read_text())["tensorrt_version"] == version


def test_cuda_python_newer_than_the_driver_is_named(node_runs):
    version, cuda_version, _, _, results = node_runs
    old_driver = results["old_driver"]
    if cuda_version.startswith("12."):
        assert old_driver["ok"], old_driver.get("traceback")  # cuda-python 12 on a CUDA 12.6 driver fits
    else:
        assert not old_driver["ok"]
        assert (f"cuda-python (cuda-bindings) {cuda_version} needs a CUDA 13 driver, this driver supports CUDA 12.6: "
                "install cuda-python 12.x") in old_driver["error"]
        assert f"tensorrt {version}" in old_driver["error"]


def test_scenario_models_have_the_doubles_cluster_count():
    from tensorrt_double import scenario

    assert scenario.NUM_CLUSTERS == NUM_CLUSTERS
