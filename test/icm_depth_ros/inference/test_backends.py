"""Backend selection, model validation, the TensorRT engine refusal rules, and the node's TensorRT path
(engine load, inference call sequence, rebuild) driven through the REAL TensorRT and cuda-python bindings
of each supported version (test/tensorrt_double/)."""
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from icm_depth_ros.inference import ModelLoadError, contract, open_backend
from icm_depth_ros.inference import fingerprint as fingerprints
from icm_depth_ros.inference.tensorrt_backend import engine_decision

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # test/: the tensorrt_double package
from tensorrt_double.models import HEIGHT, WIDTH, shipped_model_and_variants, write_model  # noqa: E402
from tensorrt_double.setup_bindings import run_scenario, skip_without_runtime  # noqa: E402

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


def camera_pixels(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def test_dynamic_batch_variant_runs_a_batch_as_the_demo_model_runs_each_image(onnx_model, dynamic_batch_model):
    """conftest's with_dynamic_batch: same outputs per image, any batch size, the contract says so."""
    static = open_backend("onnxruntime", str(onnx_model))
    dynamic = open_backend("onnxruntime", str(dynamic_batch_model))
    assert dynamic.info.dynamic_batch and not static.info.dynamic_batch
    assert static.info.pixel_format == contract.PIXEL_FORMAT_UINT8
    pixels = camera_pixels(3, 96, 320, seed=3)
    depth, cluster, firmness = dynamic.infer(pixels)
    assert depth.shape == (3, 1, 96, 320) and cluster.shape == firmness.shape == (3, 24, 80)
    assert (depth.dtype, cluster.dtype, firmness.dtype) == (np.float32, np.int32, np.float32)
    assert cluster.min() >= 0 and cluster.max() < static.info.num_clusters
    assert np.all(firmness >= 1.0 / static.info.num_clusters - 1e-6) and np.all(firmness <= 1.0 + 1e-6)
    for index in range(3):
        alone_depth, alone_cluster, alone_firmness = static.infer(pixels[index:index + 1])
        np.testing.assert_allclose(depth[index:index + 1], alone_depth, rtol=1e-4, atol=1e-4)
        assert np.mean(cluster[index:index + 1] != alone_cluster) <= 1e-3  # a near-tie may go either way
        np.testing.assert_allclose(firmness[index:index + 1], alone_firmness, atol=1e-5)


def test_onnxruntime_runs_an_old_float_input_file_and_reduces_its_membership(onnx_model, float_input_model):
    """A file of the older pixel format gives what the current one gives: its membership reduced on the host."""
    current = open_backend("onnxruntime", str(onnx_model))
    legacy = open_backend("onnxruntime", str(float_input_model))
    assert legacy.info.pixel_format == contract.PIXEL_FORMAT_FLOAT32 and legacy.info.input_dtype == np.float32
    pixels = camera_pixels(1, 96, 320, seed=4)
    depth, cluster, firmness = legacy.infer(contract.model_input(legacy.info, pixels))
    assert cluster.dtype == np.int32 and cluster.shape == firmness.shape == (1, 24, 80)
    expected = current.infer(pixels)
    np.testing.assert_array_equal(depth, expected[0])  # the same float32 products, on the same backend
    np.testing.assert_array_equal(cluster, expected[1])
    np.testing.assert_array_equal(firmness, expected[2])


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


def test_a_fingerprints_input_shape_is_that_of_the_models_pixel_format():
    pixels = {contract.META_PIXEL_FORMAT: contract.PIXEL_FORMAT_UINT8}
    assert fake_fingerprint(input_shape=[-1, 96, 320, 3], model_metadata=pixels)["input_shape"] == [-1, 96, 320, 3]
    legacy = {contract.META_PIXEL_FORMAT: contract.PIXEL_FORMAT_FLOAT32}
    assert fake_fingerprint(input_shape=[1, 3, 96, 320], model_metadata=legacy)["input_shape"] == [1, 3, 96, 320]
    with pytest.raises(ValueError, match=r"input_shape must be \[B, H, W, 3\] \(rgb_uint8_nhwc\) with B > 0 or -1 "
                                         r"\(dynamic\), got \[1, 3, 96, 320\]"):
        fake_fingerprint(input_shape=[1, 3, 96, 320], model_metadata=pixels)
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\] \(rgb_uint8_nhwc\) or \[B, 3, H, W\] "
                                         r"\(rgb_float32_nchw_0_1\) with B > 0 or -1 \(dynamic\), got \[0, 96, 320, 3\]"):
        fake_fingerprint(input_shape=[0, 96, 320, 3])  # no metadata: either layout, but a batch of 0 is none


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

    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(onnx_model, onnx_copy)
    trt = open_backend("tensorrt", str(onnx_copy), precision="fp32", allow_engine_build=True)
    ort = open_backend("onnxruntime", str(onnx_copy))
    pixels = camera_pixels(1, 96, 320)
    depth, cluster, _ = trt.infer(pixels)
    expected = ort.infer(pixels)
    np.testing.assert_allclose(depth, expected[0], rtol=1e-3)
    assert cluster.dtype == np.int32 and np.mean(cluster != expected[1]) <= 0.01
    again = open_backend("tensorrt", str(tmp_path / "m.engine"), precision="fp32")  # fingerprint now matches
    assert again.name == "tensorrt"


@pytest.mark.gpu
def test_tensorrt_batches_match_onnxruntime_frame_by_frame(dynamic_batch_model, tmp_path):
    """On a GPU: a dynamic-batch fp32 engine built for 3 cameras runs batches 1-3, each frame as ONNX Runtime alone."""
    pytest.importorskip("tensorrt")

    onnx_copy = tmp_path / "m.onnx"
    shutil.copy(dynamic_batch_model, onnx_copy)
    trt = open_backend("tensorrt", str(tmp_path / "m.engine"), onnx_path=str(onnx_copy), precision="fp32",
                       allow_engine_build=True, engine_max_batch=3)
    ort = open_backend("onnxruntime", str(onnx_copy))
    assert trt.max_batch == 3
    images = camera_pixels(3, 96, 320)
    alone = [ort.infer(images[i:i + 1])[0] for i in range(3)]
    for batch in (1, 2, 3):
        depth, cluster, firmness = trt.infer(images[:batch])
        assert depth.shape[0] == cluster.shape[0] == firmness.shape[0] == batch
        np.testing.assert_allclose(depth, np.concatenate(alone[:batch]), rtol=1e-3)
    with pytest.raises(ValueError, match="takes batches of 1 to 3"):
        trt.infer(np.concatenate([images, images[:1]]))


def copied(files: dict, folder: Path) -> Path:
    """``folder`` (made where missing) holding copies of ``files`` (a precision -> path set), under their names."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files.values():
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory):
    return shipped_model_and_variants(tmp_path_factory.mktemp("node_models"))


@pytest.fixture(scope="module", params=RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def node_runs(request, variant_files, tmp_path_factory):
    """The node's TensorRT path through one version pair: load, refuse, rebuild, infer."""
    version, cuda_version = request.param
    skip_without_runtime(version, cuda_version)
    folder = copied(variant_files, tmp_path_factory.mktemp(f"node_{version}_{cuda_version}"))
    engine, onnx = str(folder / "model.engine"), str(folder / "model.onnx")
    other = "10.3.0" if version.startswith("11.") else "11.4.0.106"
    shape = [1, HEIGHT, WIDTH, 3]
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


def ok(result):
    assert result["ok"], result.get("traceback")
    return result


def test_node_builds_loads_and_runs_an_engine_with_the_real_bindings(node_runs):
    version, cuda_version, folder, _, results = node_runs
    first = results["first_start"]
    assert not first["ok"] and first["error"] == f"ModelLoadError: model_path {str(folder / 'model.engine')!r}: no such file"
    built, loaded = results["built"], results["loaded"]
    assert built["ok"], built.get("traceback")
    assert calls(built, "OnnxParser.parse_from_file") == [{"model": str(folder / "model.fp16.onnx")}]  # the fp16 variant
    assert loaded["ok"], loaded.get("traceback")
    assert calls(loaded, "Builder.build_serialized_network") == []  # the fingerprint matched: no rebuild
    assert loaded["description"] == f"tensorrt {version} (model.engine, batch 1)" and loaded["max_batch"] == 1
    assert loaded["depth_max_error"] == 0.0 and loaded["depth_shape"] == [1, 1, HEIGHT, WIDTH]
    assert loaded["cluster_equal"] and loaded["firmness_max_error"] == 0.0  # reduced by the "engine" itself
    assert loaded["cluster_shape"] == loaded["firmness_shape"] == [1, HEIGHT // 4, WIDTH // 4]
    assert loaded["dtypes"] == ["float32", "int32", "float32"]
    assert loaded["input_bytes"] == HEIGHT * WIDTH * 3  # uint8 pixels: a quarter of float32's bytes
    # once at load (the buffers' size), once for the inference's batch
    assert calls(loaded, "IExecutionContext.set_input_shape") == [{"name": "image", "shape": [1, HEIGHT, WIDTH, 3]}] * 2
    assert sorted(args["name"] for args in calls(loaded, "IExecutionContext.set_tensor_address")) == \
        ["cluster", "depth", "firmness", "image"]
    assert [args["name"] for args in calls(loaded, "ICudaEngine.get_tensor_dtype")] == \
        ["image", "depth", "cluster", "firmness"]  # every I/O type read (io_dtype): UINT8 and INT32 accepted


def test_inference_call_sequence_with_cuda_python(node_runs):
    _, cuda_version, _, _, results = node_runs
    loaded = results["loaded"]
    sequence = [name for name, _ in loaded["cuda_calls"]]
    assert sequence[:2] == ["cudaSetDeviceFlags", "cudaStreamCreate"]  # blocking sync before the first CUDA work
    assert sequence.count("cudaMallocHost") == 4 and sequence.count("cudaMalloc") == 4
    tail = [name for name in sequence if name in ("cudaMemcpyAsync", "cudaStreamSynchronize")]
    assert tail == ["cudaMemcpyAsync"] * 4 + ["cudaStreamSynchronize"]  # in, depth, cluster, firmness, then wait
    kinds = [args["kind"] for name, args in loaded["cuda_calls"] if name == "cudaMemcpyAsync"]
    assert kinds == [1, 2, 2, 2]  # cudaMemcpyHostToDevice, then cudaMemcpyDeviceToHost (cuda_runtime_api.h values)
    sizes = [args["count"] for name, args in loaded["cuda_calls"] if name == "cudaMemcpyAsync"]
    cells = (HEIGHT // 4) * (WIDTH // 4)
    assert sizes == [HEIGHT * WIDTH * 3, HEIGHT * WIDTH * 4, cells * 4, cells * 4]  # uint8 in, int32 clusters out
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
    assert (folder / f"model.engine.tensorrt-{version}.NVIDIA-Stand-in-GPU.sm87.timing.cache").is_file()


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


# ---- both pixel formats, against ONNX Runtime on the same file ------------------------------------------------
@pytest.fixture(scope="module", params=RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def format_runs(request, variant_files, tmp_path_factory):
    """fp32 engines of the shipped (uint8-pixel) model and of the same network in the older float32 form."""
    version, cuda_version = request.param
    skip_without_runtime(version, cuda_version)
    folder = tmp_path_factory.mktemp(f"formats_{version}_{cuda_version}")
    shutil.copy(variant_files["fp32"], folder / "model.onnx")
    write_model(folder / "legacy.onnx", dynamic_batch=True, pixel_format=contract.PIXEL_FORMAT_FLOAT32)

    def engine(name, **fields):
        return {"kind": "open", "model_path": str(folder / f"{name}.engine"), "onnx_path": str(folder / f"{name}.onnx"),
                "precision": "fp32", **fields}

    actions = {
        "current": engine("model", allow_build=True, out=str(folder / "model.npz")),
        "legacy": engine("legacy", allow_build=True, engine_max_batch=2, out=str(folder / "legacy.npz")),
        "legacy_batches": {**engine("legacy"), "kind": "batches", "batches": [2, 1]},
        "legacy_given_pixels": {**engine("legacy"), "kind": "infer_failures", "frames": 1, "infer_dtype": "uint8"},
    }
    report = run_scenario(version, cuda_version, list(actions.values()))
    return folder, dict(zip(actions, report["results"]))


def onnxruntime_run(path: Path, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return open_backend("onnxruntime", str(path), onnxruntime_provider="cpu").infer(image)


def test_the_engine_and_onnxruntime_give_the_same_clusters_on_the_same_model(format_runs):
    folder, results = format_runs
    current = ok(results["current"])
    assert current["input_bytes"] == HEIGHT * WIDTH * 3 and current["dtypes"] == ["float32", "int32", "float32"]
    engine = np.load(folder / "model.npz")
    assert engine["image"].dtype == np.uint8 and engine["image"].shape == (1, HEIGHT, WIDTH, 3)
    depth, cluster, firmness = onnxruntime_run(folder / "model.onnx", engine["image"])
    np.testing.assert_array_equal(engine["cluster"], cluster)
    assert len(np.unique(cluster)) >= 2  # more than one cluster to agree on
    np.testing.assert_allclose(engine["depth"], depth, rtol=1e-6)
    np.testing.assert_allclose(engine["firmness"], firmness, rtol=1e-5)


def test_a_legacy_float_input_engine_still_runs_and_returns_the_reduced_maps(format_runs):
    folder, results = format_runs
    legacy = ok(results["legacy"])
    assert calls(legacy, "IOptimizationProfile.set_shape") == [{  # built over its own NCHW float input
        "input": "image", "min": [1, 3, HEIGHT, WIDTH], "opt": [2, 3, HEIGHT, WIDTH], "max": [2, 3, HEIGHT, WIDTH]}]
    assert legacy["input_bytes"] == 2 * 3 * HEIGHT * WIDTH * 4  # float32 [B, 3, H, W] for its batch of up to 2
    assert legacy["dtypes"] == ["float32", "int32", "float32"] and legacy["cluster_equal"]
    assert legacy["cluster_shape"] == legacy["firmness_shape"] == [1, HEIGHT // 4, WIDTH // 4]
    assert sorted(args["name"] for args in calls(legacy, "IExecutionContext.set_tensor_address")) == \
        ["depth", "image", "membership"]  # the engine returns the membership; the backend reduces it
    engine = np.load(folder / "legacy.npz")
    assert engine["image"].dtype == np.float32 and engine["image"].shape == (1, 3, HEIGHT, WIDTH)
    depth, cluster, firmness = onnxruntime_run(folder / "legacy.onnx", engine["image"])
    np.testing.assert_array_equal(engine["cluster"], cluster)
    np.testing.assert_allclose(engine["depth"], depth, rtol=1e-6)
    np.testing.assert_allclose(engine["firmness"], firmness, rtol=1e-5)
    current = np.load(folder / "model.npz")  # the same pixels through the uint8-pixel engine of the same network
    np.testing.assert_array_equal(engine["cluster"], current["cluster"])
    np.testing.assert_array_equal(engine["firmness"], current["firmness"])
    runs = ok(results["legacy_batches"])["runs"]
    assert [run["batch"] for run in runs] == [2, 1]
    assert all(run["ok"] and run["equal_to_frame_by_frame"] and run["cluster_equal"] for run in runs), runs


def test_pixels_given_to_a_legacy_engine_are_refused_naming_the_dtypes(format_runs):
    _, results = format_runs
    assert ok(results["legacy_given_pixels"])["outcomes"] == [
        "builtins.ValueError: TensorRT engine legacy.engine takes float32 input (pixel format rgb_float32_nchw_0_1), "
        "got uint8"]


# ---- batches: several cameras' frames through one engine call ----------------------------------------------
DYNAMIC_MAX = 3  # training/export.py --dynamic-batch --max-batch 3: three cameras


@pytest.fixture(scope="module")
def dynamic_files(tmp_path_factory):
    return shipped_model_and_variants(tmp_path_factory.mktemp("dynamic_models"), dynamic_batch=True)


@pytest.fixture(scope="module", params=RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def batch_runs(request, dynamic_files, variant_files, tmp_path_factory):
    """Dynamic-batch and static engines run with batches 1, 2, 3 (and above the maximum) through one version pair."""
    version, cuda_version = request.param
    skip_without_runtime(version, cuda_version)
    folder = copied(dynamic_files, tmp_path_factory.mktemp(f"batches_{version}_{cuda_version}"))
    static = copied(variant_files, folder / "static")
    engine, onnx, fp16 = str(folder / "model.engine"), str(folder / "model.onnx"), str(folder / "model.fp16.onnx")
    dynamic, fixed = [-1, HEIGHT, WIDTH, 3], [1, HEIGHT, WIDTH, 3]

    def profile(low, opt, high):
        return [[batch, HEIGHT, WIDTH, 3] for batch in (low, opt, high)]

    def hand_made(name, **fields):
        return {"kind": "engine", "engine": str(folder / name), "onnx": fp16, "input_shape": dynamic, **fields}

    def run(name, batches, **fields):
        return {"kind": "batches", "model_path": str(folder / name), "onnx_path": onnx, "precision": "fp16",
                "batches": batches, **fields}

    actions = {
        # the node's first start with allow_engine_build and three cameras: the profile 1..3 is built
        "built": run("model.engine", [1, 2, 3], allow_build=True, engine_max_batch=DYNAMIC_MAX, input_shape=dynamic),
        "loaded": run("model.engine", [3, 1, 2, DYNAMIC_MAX + 1]),
        "pipeline_max_batch": {"kind": "snippet", "code": (
            "from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig\n"
            f"pipeline = DepthPipeline.from_config(PipelineConfig(model_path={engine!r}, backend='tensorrt'))\n"
            f"assert pipeline.max_batch == {DYNAMIC_MAX}, pipeline.max_batch")},
        "odd_written": hand_made("odd.engine", profile=profile(1, 2, 4)),  # optimum 2, three cameras
        "odd": run("odd.engine", [3, 1, 4, 5]),
        "stale_written": hand_made("stale.engine", profile=profile(1, 3, 3), fingerprint_max_batch=2),
        "stale": run("stale.engine", [1]),
        "min_two_written": hand_made("min_two.engine", profile=profile(2, 3, 3)),
        "min_two": run("min_two.engine", [2]),
        "static": {**run("static/model.engine", [1, 2], allow_build=True, engine_max_batch=DYNAMIC_MAX,
                         input_shape=fixed), "onnx_path": str(static / "model.onnx")},
    }
    report = run_scenario(version, cuda_version, list(actions.values()))
    return version, folder, dict(zip(actions, report["results"]))


def test_a_dynamic_batch_engine_runs_batches_1_2_3_each_frame_as_alone(batch_runs):
    version, folder, results = batch_runs
    built = ok(results["built"])
    assert calls(built, "IOptimizationProfile.set_shape") == [{
        "input": "image", "min": [1, HEIGHT, WIDTH, 3], "opt": [DYNAMIC_MAX, HEIGHT, WIDTH, 3],
        "max": [DYNAMIC_MAX, HEIGHT, WIDTH, 3]}]  # rebuilt for the node's three cameras, NHWC pixels
    assert json.loads((folder / "model.engine.fingerprint.json").read_text())["max_batch"] == DYNAMIC_MAX
    for name in ("built", "loaded"):
        result = ok(results[name])
        assert result["max_batch"] == DYNAMIC_MAX and result["batch_range"] == [1, DYNAMIC_MAX, DYNAMIC_MAX]
        assert result["description"] == f"tensorrt {version} (model.engine, batch 1-3, opt 3)"
        for run in result["runs"][:3]:
            batch = run["batch"]
            assert run["ok"], run
            assert run["depth_shape"] == [batch, 1, HEIGHT, WIDTH]
            assert run["cluster_shape"] == run["firmness_shape"] == [batch, HEIGHT // 4, WIDTH // 4]
            assert run["equal_to_frame_by_frame"], run  # no frame sees another's data or offset
            assert run["depth_max_error"] == 0.0 and run["cluster_equal"] and run["firmness_max_error"] == 0.0
    assert ok(results["pipeline_max_batch"])  # DepthPipeline.max_batch follows the engine


def test_the_shape_is_set_per_call_and_buffers_are_sized_once(batch_runs):
    _, _, results = batch_runs
    loaded = results["loaded"]
    shapes = [args["shape"][0] for args in calls(loaded, "IExecutionContext.set_input_shape")]
    # at load the maximum (buffer sizes); then each call its batch: 3 (+3 alone), 1 (+1), 2 (+2); 4 is refused first
    assert shapes == [DYNAMIC_MAX, 3, 1, 1, 1, 1, 1, 2, 1, 1]
    assert [args["name"] for args in calls(loaded, "IExecutionContext.get_tensor_shape")][:4] == \
        ["image", "depth", "cluster", "firmness"]  # buffer sizes at the maximum
    output_queries = [args["name"] for args in calls(loaded, "IExecutionContext.get_tensor_shape")][4:]
    assert output_queries == ["depth", "cluster", "firmness"] * 9  # per call, for that call's batch
    cuda = [name for name, _ in loaded["cuda_calls"]]
    assert cuda.count("cudaMalloc") == 4 and cuda.count("cudaMallocHost") == 4  # once, for the maximum
    assert cuda.count("cudaStreamSynchronize") == 9  # one per call, whatever its batch
    assert len(calls(loaded, "IExecutionContext.execute_async_v3")) == 9
    sizes = [args["count"] for name, args in loaded["cuda_calls"] if name == "cudaMemcpyAsync"]
    frame, depth, cells = HEIGHT * WIDTH * 3, HEIGHT * WIDTH * 4, (HEIGHT // 4) * (WIDTH // 4) * 4  # bytes per frame
    assert sizes[:4] == [3 * frame, 3 * depth, 3 * cells, 3 * cells]  # batch 3: uint8 pixels, int32/float32 maps
    assert sizes[4:8] == [frame, depth, cells, cells]  # then 1 alone
    malloc = [args["size"] for name, args in loaded["cuda_calls"] if name == "cudaMalloc"]
    assert malloc == [DYNAMIC_MAX * frame, DYNAMIC_MAX * depth, DYNAMIC_MAX * cells, DYNAMIC_MAX * cells]
    pinned = [args["size"] for name, args in loaded["cuda_calls"] if name == "cudaMallocHost"]
    assert pinned == malloc  # the host buffers too: 3 x H x W x 3 bytes of pixels, a quarter of float32's


def test_a_batch_above_the_profile_maximum_is_refused_not_split(batch_runs):
    _, _, results = batch_runs
    refused = results["loaded"]["runs"][3]
    assert refused["batch"] == DYNAMIC_MAX + 1 and not refused["ok"]
    assert refused["error"] == (
        "ValueError: TensorRT engine model.engine takes batches of 1 to 3 (its optimisation profile) and was given 4 "
        "images: rebuild it with --max-batch 4, or pass at most 3 (DepthPipeline does: cameras beyond it take the "
        "next turn)")


def test_a_profile_whose_optimum_is_not_the_camera_count_is_still_correct(batch_runs):
    _, _, results = batch_runs
    ok(results["odd_written"])
    odd = ok(results["odd"])
    assert odd["batch_range"] == [1, 2, 4] and odd["max_batch"] == 4
    assert [run["ok"] for run in odd["runs"]] == [True, True, True, False]
    assert all(run["equal_to_frame_by_frame"] and run["depth_max_error"] == 0.0 for run in odd["runs"][:3])
    assert "takes batches of 1 to 4" in odd["runs"][3]["error"]


def test_engines_whose_batch_range_the_node_cannot_use_are_refused_at_load(batch_runs):
    _, folder, results = batch_runs
    stale = results["stale"]
    assert not stale["ok"] and stale["error"] == (
        f"ModelLoadError: {folder / 'stale.engine'}: its fingerprint says max_batch 2, the engine's largest batch is "
        "3: the fingerprint is not this engine's; rebuild it with training/export.py")
    min_two = results["min_two"]
    assert not min_two["ok"] and "the engine takes batches of 2 to 3; the node needs batch 1" in min_two["error"]


def test_a_static_engine_refuses_batch_2_by_name(batch_runs):
    version, _, results = batch_runs
    static = ok(results["static"])
    assert static["max_batch"] == 1 and static["description"] == f"tensorrt {version} (model.engine, batch 1)"
    assert calls(static, "IOptimizationProfile.set_shape") == []  # a static ONNX model: no profile
    assert calls(static, "ICudaEngine.get_tensor_profile_shape") == []  # its batch is its input shape's
    one, two = static["runs"]
    assert one["ok"] and one["equal_to_frame_by_frame"]
    assert not two["ok"] and two["error"] == (
        "ValueError: TensorRT engine model.engine has a fixed batch of 1 and was given 2 images: export the model with "
        "--dynamic-batch and build the engine with --max-batch N (N = cameras per node) to run several cameras' "
        "frames in one call")


# ---- GPU failures while opening and running an engine ---------------------------------------------------------
OUT_OF_MEMORY = {"cudaMalloc": "cudaErrorMemoryAllocation"}
IMAGE_BYTES = 1 * HEIGHT * WIDTH * 3  # the first device buffer the backend asks for: the uint8 input


@pytest.fixture(scope="module", params=RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def failure_runs(request, variant_files, tmp_path_factory):
    """Opening and running an engine while CUDA or TensorRT fails, through one version pair."""
    version, cuda_version = request.param
    skip_without_runtime(version, cuda_version)
    folder = copied(variant_files, tmp_path_factory.mktemp(f"failures_{version}_{cuda_version}"))
    engine = str(folder / "model.engine")
    shape = [1, HEIGHT, WIDTH, 3]

    def open_engine(**fields):
        return {"kind": "open", "model_path": engine, "precision": "fp16", "input_shape": shape, **fields}

    actions = {
        "built": open_engine(allow_build=True, close=True),
        "oom_tensorrt": open_engine(cuda_failures=OUT_OF_MEMORY),
        "oom_auto": open_engine(backend="auto", cuda_failures=OUT_OF_MEMORY),
        "bf16_tensorrt": open_engine(io_dtypes={"depth": "BF16"}),
        "bf16_auto": open_engine(backend="auto", io_dtypes={"depth": "BF16"}),
        "stream_tensorrt": open_engine(cuda_failures={"cudaStreamCreate": "cudaErrorInsufficientDriver"}),
        "shape_refused": open_engine(refuse_shapes=True),
        "unresolved_output": open_engine(unresolved_outputs=["depth"]),
        "lost_context": {**open_engine(), "kind": "infer_failures", "frames": 4,
                         "infer_cuda_failures": {"cudaStreamSynchronize": "cudaErrorLaunchFailure"},
                         "infer_cuda_failures_after": {"cudaStreamSynchronize": 1}},
        "unresolved_at_inference": {**open_engine(), "kind": "infer_failures", "frames": 1,
                                    "infer_unresolved_outputs": ["cluster"]},
        "float_given": {**open_engine(), "kind": "infer_failures", "frames": 1, "infer_dtype": "float32"},
        "float_input_engine": open_engine(io_dtypes={"image": "FLOAT"}),  # not built from this uint8-pixel model
        "half_outputs": open_engine(io_dtypes={"depth": "HALF", "firmness": "HALF"}),
        "corrupted": {"kind": "snippet", "code": f"open({engine!r}, 'wb').write(b'\\x00garbage')"},
        "corrupt_tensorrt": open_engine(),
        "corrupt_auto": open_engine(backend="auto"),
    }
    report = run_scenario(version, cuda_version, list(actions.values()))
    return version, engine, dict(zip(actions, report["results"]))


def cuda_call_names(result):
    return [name for name, _ in result["cuda_calls"]]


def test_blocking_sync_is_set_first_and_close_releases_what_was_created(failure_runs):
    _, _, results = failure_runs
    built = ok(results["built"])
    names = cuda_call_names(built)
    assert names[0] == "cudaSetDeviceFlags" and built["device_flags"] == 4  # cudaDeviceScheduleBlockingSync
    assert names.count("cudaFree") == names.count("cudaMalloc") == 4 and names.count("cudaFreeHost") == 4
    assert built["destroyed_streams"] == built["streams"][-1:]  # the stream it created, destroyed by close()


def test_out_of_memory_is_a_model_load_error_naming_the_cuda_error_and_bytes(failure_runs):
    _, engine, results = failure_runs
    refused = results["oom_tensorrt"]
    assert not refused["ok"]
    assert refused["error"] == (f"ModelLoadError: cannot load TensorRT engine {engine}: CUDA cudaMalloc asking for "
                                f"{IMAGE_BYTES} bytes (0.0 MiB) failed: cudaErrorMemoryAllocation")
    names = cuda_call_names(refused)
    assert names.count("cudaMallocHost") == 1 and names.count("cudaFreeHost") == 1  # the pinned buffer made first
    assert names.count("cudaStreamDestroy") == 1  # released before the error was raised


def test_auto_falls_back_to_onnxruntime_on_a_cuda_failure_and_logs_why(failure_runs):
    _, engine, results = failure_runs
    fallen = ok(results["oom_auto"])
    assert fallen["description"].startswith("onnxruntime")
    warnings = [text for level, text in fallen["log"] if level == "warning"]
    assert warnings == [f"backend auto: TensorRT unavailable (cannot load TensorRT engine {engine}: CUDA cudaMalloc "
                        f"asking for {IMAGE_BYTES} bytes (0.0 MiB) failed: cudaErrorMemoryAllocation); using onnxruntime"]


def test_bf16_engine_io_is_refused_by_name_and_auto_falls_back(failure_runs):
    _, engine, results = failure_runs
    refused = results["bf16_tensorrt"]
    assert not refused["ok"] and refused["error"].startswith(f"ModelLoadError: {engine}: tensor 'depth' is BF16; ")
    assert "the node exchanges FLOAT, HALF, UINT8, INT32 tensors with an engine" in refused["error"]
    assert "export the model with the contract's I/O" in refused["error"]
    assert cuda_call_names(refused) == ["cudaSetDeviceFlags"]  # refused before any allocation
    assert ok(results["bf16_auto"])["description"].startswith("onnxruntime")


def test_stream_creation_failure_names_the_cuda_error(failure_runs):
    _, engine, results = failure_runs
    refused = results["stream_tensorrt"]
    assert refused["error"] == (f"ModelLoadError: cannot load TensorRT engine {engine}: CUDA cudaStreamCreate failed: "
                                "cudaErrorInsufficientDriver")


def test_a_refused_input_shape_or_an_output_left_at_minus_one_is_a_model_load_error(failure_runs):
    _, engine, results = failure_runs
    assert results["shape_refused"]["error"] == (
        f"ModelLoadError: cannot load TensorRT engine {engine}: TensorRT engine model.engine refused input shape "
        f"(1, {HEIGHT}, {WIDTH}, 3) for 'image' (engine batch 1-1); see its log above")
    unresolved = results["unresolved_output"]
    assert unresolved["error"] == f"ModelLoadError: {engine}: tensor 'depth' has no size at batch 1: (-1, 1, {HEIGHT}, {WIDTH})"
    assert cuda_call_names(unresolved).count("cudaStreamDestroy") == 1  # the stream made before: destroyed


def test_a_cuda_error_while_running_is_an_inference_error_each_call(failure_runs):
    _, _, results = failure_runs
    outcomes = ok(results["lost_context"])["outcomes"]
    failed = ("icm_depth_ros.inference.tensorrt_backend.CudaError: CUDA cudaStreamSynchronize failed: "
              "cudaErrorLaunchFailure")
    assert outcomes == ["ok", failed, failed, failed]  # the first frame ran, then the context was lost


def test_an_output_shape_left_at_minus_one_while_running_is_an_inference_error(failure_runs):
    _, _, results = failure_runs
    assert ok(results["unresolved_at_inference"])["outcomes"] == [
        "icm_depth_ros.inference.contract.InferenceError: TensorRT engine model.engine: output 'cluster' has shape "
        f"(-1, {HEIGHT // 4}, {WIDTH // 4}) for a batch of 1 (buffer holds {HEIGHT * WIDTH // 16} values)"]


def test_input_of_the_other_pixel_format_is_refused_naming_the_dtypes(failure_runs):
    _, _, results = failure_runs
    assert ok(results["float_given"])["outcomes"] == [
        "builtins.ValueError: TensorRT engine model.engine takes uint8 input (pixel format rgb_uint8_nhwc), got float32"]


def test_an_engine_whose_input_type_is_not_the_models_pixel_format_is_refused_at_load(failure_runs):
    _, engine, results = failure_runs
    refused = results["float_input_engine"]
    assert refused["error"] == (f"ModelLoadError: {engine}: input 'image' is float32, but the model's pixel format is "
                                "'rgb_uint8_nhwc': the engine was not built from this model")
    assert cuda_call_names(refused) == ["cudaSetDeviceFlags"]  # refused before any allocation


def test_half_precision_outputs_are_read_and_returned_as_float32(failure_runs):
    _, _, results = failure_runs
    half = ok(results["half_outputs"])
    assert half["dtypes"] == ["float32", "int32", "float32"] and half["cluster_equal"]
    assert half["depth_max_error"] < 2e-3 and half["firmness_max_error"] < 1e-3  # float16 rounding of the double's
    sizes = [args["size"] for name, args in half["cuda_calls"] if name == "cudaMalloc"]
    assert sizes == [HEIGHT * WIDTH * 3, HEIGHT * WIDTH * 2, HEIGHT * WIDTH // 16 * 4, HEIGHT * WIDTH // 16 * 2]


def test_a_corrupt_engine_is_a_model_load_error_and_auto_falls_back(failure_runs):
    version, engine, results = failure_runs
    ok(results["corrupted"])
    refused = results["corrupt_tensorrt"]
    assert refused["error"] == (f"ModelLoadError: {engine}: TensorRT {version} cannot deserialize this engine (corrupt, "
                                "or built by another TensorRT version or GPU? rebuild it)")
    assert ok(results["corrupt_auto"])["description"].startswith("onnxruntime")


# ---- an engine (re)build that does not block the caller (the node's configure) --------------------------------
BUILD_S = 1.5  # the double's build time, standing in for minutes on a GPU


@pytest.fixture(scope="module", params=RUNTIMES, ids=lambda pair: f"tensorrt{pair[0]}-cuda{pair[1]}")
def background_runs(request, variant_files, tmp_path_factory):
    version, cuda_version = request.param
    skip_without_runtime(version, cuda_version)
    folder = copied(variant_files, tmp_path_factory.mktemp(f"background_{version}_{cuda_version}"))
    engine, failing = str(folder / "model.engine"), str(folder / "failing.engine")
    onnx = str(folder / "model.onnx")

    def open_engine(path, **fields):
        return {"kind": "open", "model_path": path, "onnx_path": onnx, "precision": "fp16", "allow_build": True,
                "background": True, "input_shape": [1, HEIGHT, WIDTH, 3], **fields}

    actions = {
        "started": open_engine(engine, build_s=BUILD_S),
        "still_building": open_engine(engine),
        "waited": {"kind": "wait_build", "engine": engine},
        "loaded": open_engine(engine),
        "failing_started": open_engine(failing, build_fails=True),
        "failing_waited": {"kind": "wait_build", "engine": failing},
        "failed": open_engine(failing),
        "auto_while_building": open_engine(str(folder / "auto.engine"), backend="auto", build_s=BUILD_S,
                                           build_fails=False),
        "auto_waited": {"kind": "wait_build", "engine": str(folder / "auto.engine")},
    }
    report = run_scenario(version, cuda_version, list(actions.values()))
    return version, folder, dict(zip(actions, report["results"]))


def test_a_background_build_fails_fast_then_the_engine_loads(background_runs):
    version, folder, results = background_runs
    engine, source = folder / "model.engine", folder / "model.fp16.onnx"
    for name in ("started", "still_building"):
        result = results[name]
        assert not result["ok"] and result["elapsed_s"] < BUILD_S / 2  # the caller is not held for the build
        assert result["error"].startswith(f"EngineBuilding: building TensorRT engine {engine} from {source} (fp16) in "
                                          "the background: ")
        assert result["error"].endswith(" s so far; configure again when it is done (with autostart the node "
                                        "retries by itself)")
    assert [level for level, _ in results["started"]["log"]] == ["warning"]  # one line when the build starts
    assert results["still_building"]["log"] == []
    # one build in all (the background thread's calls land in whichever action runs meanwhile)
    assert sum(len(calls(results[name], "Builder.build_serialized_network"))
               for name in ("started", "still_building", "waited", "loaded")) == 1
    assert results["waited"]["still_running"] is False
    loaded = ok(results["loaded"])
    assert loaded["description"] == f"tensorrt {version} (model.engine, batch 1)" and loaded["depth_max_error"] == 0.0
    assert calls(loaded, "Builder.build_serialized_network") == []  # it loads what the background build wrote
    (line,) = [text for level, text in loaded["log"] if level == "info"]
    assert line.startswith(f"TensorRT engine {engine} from {source} (fp16) built in the background in ")


def test_a_failed_background_build_is_reported_on_the_next_open(background_runs):
    version, folder, results = background_runs
    assert results["failing_started"]["error"].startswith("EngineBuilding: ")
    failed = results["failed"]
    assert failed["error"] == (
        f"ModelLoadError: cannot rebuild TensorRT engine {folder / 'failing.engine'} from {folder / 'model.fp16.onnx'} "
        f"(fp16): RuntimeError: TensorRT {version} failed to build an engine from {folder / 'model.fp16.onnx'} (fp16); "
        "see its log above")
    (warning,) = [text for level, text in failed["log"] if level == "warning"]
    assert "failed:\nTraceback (most recent call last)" in warning


def test_auto_runs_onnxruntime_while_the_engine_builds(background_runs):
    _, folder, results = background_runs
    fallen = ok(results["auto_while_building"])
    assert fallen["description"].startswith("onnxruntime")
    assert any(text.startswith(f"backend auto: TensorRT unavailable (building TensorRT engine {folder / 'auto.engine'}")
               for _, text in fallen["log"])
    assert results["auto_waited"]["still_running"] is False


def test_an_onnxruntime_failure_while_running_is_an_inference_error(onnx_model):
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

    from icm_depth_ros.inference import InferenceError

    backend = open_backend("onnxruntime", onnx_model, onnxruntime_provider="cpu")

    class FailingSession:  # what a CUDA provider error looks like from session.run
        def __init__(self, error):
            self.error = error

        def run(self, outputs, feeds):
            raise self.error

    backend.session = FailingSession(Fail("CUDA failure 700: an illegal memory access was encountered"))
    with pytest.raises(InferenceError, match=r"^onnxruntime \(CPUExecutionProvider\) failed: Fail: CUDA failure 700"):
        backend.infer(None)
    backend.session = FailingSession(InvalidArgument("Got invalid dimensions for input: image"))
    with pytest.raises(InvalidArgument):  # an input the model does not take: not a backend failure
        backend.infer(None)
