"""The one engine builder (icm_depth_ros/inference/engine_builder.py) against the REAL TensorRT bindings.

For TensorRT 10.3 (JetPack 6), 10.13 (JetPack 7) and 11.4 (pip, DRIVE Thor), the real
``tensorrt_bindings`` of that version is imported in a process of its own (test/tensorrt_double/):
every attribute the builder touches must exist there and every call must fit the real signature.
fp32 / fp16 / int8 engines are built from the ONNX file of that precision, with a static and a
dynamic batch. Whether TensorRT then accepts the network is test_export_tensorrt.py's job (GPU).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/: the tensorrt_double package

from icm_depth_ros.inference import fingerprint as fingerprints  # noqa: E402
from icm_depth_ros.inference.engine_builder import tensorrt_version_supported, timing_cache_path_for  # noqa: E402
from tensorrt_double.models import HEIGHT, WIDTH, write_model_and_variants  # noqa: E402
from tensorrt_double.setup_bindings import TENSORRT_VERSIONS, run_scenario  # noqa: E402

CUDA_BINDINGS_FOR = {"10.3.0": "12.9.6", "10.13.3.9": "13.5.0", "11.4.0.106": "13.5.0"}
PRECISIONS = ("fp32", "fp16", "int8")
BATCHES = ("static", "dynamic")
MAX_BATCH = 3
REMOVED_IN_11 = ("FP16", "INT8", "int8_calibrator", "set_calibration_profile", "IInt8")
STAND_IN_GPU = ("NVIDIA Stand-in GPU", "8.7")  # run_scenario's default device
FOREIGN_CACHE = "timing cache, TensorRT {version}, NVIDIA H200 9.0"  # the same TensorRT, another device's cache
CORRUPT_CACHE = "\x00\x01 not a cache"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bindings_models")
    return {batch: write_model_and_variants(folder / batch, batch == "dynamic") for batch in BATCHES}


@pytest.fixture(scope="module", params=TENSORRT_VERSIONS)
def builds(request, models, tmp_path_factory):
    """Every precision x batch built once with one TensorRT version, then the dynamic fp16 one rebuilt."""
    version = request.param
    folder = tmp_path_factory.mktemp(f"engines_{version}")
    actions, keys = [], []
    for batch in BATCHES:
        for precision in PRECISIONS:
            shape = [-1 if batch == "dynamic" else 1, HEIGHT, WIDTH, 3]
            actions.append({"kind": "build", "onnx": str(models[batch][precision]), "precision": precision,
                            "engine": str(folder / f"{batch}_{precision}.engine"), "max_batch": MAX_BATCH,
                            "input_shape": shape})
            keys.append((precision, batch))
    dynamic_fp16 = dict(actions[-2])
    actions.append(dict(dynamic_fp16))  # dynamic fp16 again: the timing cache of the first build is read
    keys.append(("rebuild", "dynamic"))
    cache = str(timing_cache_path_for(folder / "dynamic_fp16.engine", version, *STAND_IN_GPU))
    for name, content in (("foreign", FOREIGN_CACHE.format(version=version)), ("corrupt", CORRUPT_CACHE)):
        actions.append({"kind": "snippet", "code": f"open({cache!r}, 'w').write({content!r})"})
        keys.append((f"{name}_written", "dynamic"))
        actions.append(dict(dynamic_fp16))  # the same build with that cache file beside the engine
        keys.append((name, "dynamic"))
    actions.append({"kind": "snippet", "code": (
        "from icm_depth_ros.inference.engine_builder import missing_requirements\n"
        "assert missing_requirements() == [], missing_requirements()")})
    keys.append(("requirements", ""))
    report = run_scenario(version, CUDA_BINDINGS_FOR[version], actions)
    return version, folder, report, dict(zip(keys, report["results"]))


def names(result) -> list[str]:
    return [name for name, _ in result["calls"]]


def arguments(result, name: str) -> list[dict]:
    return [args for call, args in result["calls"] if call == name]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_strongly_typed_engine_from_the_variant_of_its_precision(builds, models, precision, batch):
    version, folder, report, results = builds
    result = results[(precision, batch)]
    assert result["ok"], result.get("traceback")
    assert report["tensorrt"] == version
    flags = arguments(result, "Builder.create_network")[0]["flags"]
    assert report["strongly_typed_flag"] is not None and flags == 1 << report["strongly_typed_flag"]
    assert arguments(result, "OnnxParser.parse_from_file") == [{"model": str(models[batch][precision])}]
    assert "IBuilderConfig.set_flag" not in names(result)  # no precision flag: the graph's types decide
    assert not any(removed in name for name in names(result) for removed in REMOVED_IN_11)
    cleared = [str(args["flag"]) for args in arguments(result, "IBuilderConfig.clear_flag")]
    assert cleared == (["BuilderFlag.TF32"] if precision == "fp32" else [])
    assert arguments(result, "IBuilderConfig.set_memory_pool_limit")[0]["pool_size"] == 4 << 30
    profiles = arguments(result, "IOptimizationProfile.set_shape")
    if batch == "dynamic":
        assert profiles == [{"input": "image", "min": [1, HEIGHT, WIDTH, 3], "opt": [MAX_BATCH, HEIGHT, WIDTH, 3],
                             "max": [MAX_BATCH, HEIGHT, WIDTH, 3]}]
        assert len(arguments(result, "IBuilderConfig.add_optimization_profile")) == 1
    else:
        assert profiles == []
    engine = folder / f"{batch}_{precision}.engine"
    header, description = engine.read_bytes().split(b"\n", 1)  # the double's engine: what it was built for
    assert header == f"serialized engine, TensorRT {version}".encode()
    assert json.loads(description) == {"pixel_format": "rgb_uint8_nhwc", **(  # uint8 NHWC pixels: the profile's shape
        {"input_shape": [-1, HEIGHT, WIDTH, 3], "profile": [[1, HEIGHT, WIDTH, 3], *[[MAX_BATCH, HEIGHT, WIDTH, 3]] * 2]}
        if batch == "dynamic" else {"input_shape": [1, HEIGHT, WIDTH, 3], "profile": None})}
    fingerprint = fingerprints.read_fingerprint(engine)
    assert fingerprint["tensorrt_version"] == version and fingerprint["precision"] == precision
    assert fingerprint["gpu_name"] == "NVIDIA Stand-in GPU" and fingerprint["compute_capability"] == "8.7"
    assert fingerprint["input_shape"] == [-1 if batch == "dynamic" else 1, HEIGHT, WIDTH, 3]
    assert fingerprint["max_batch"] == (MAX_BATCH if batch == "dynamic" else 1)
    assert fingerprint["onnx_sha256"] == fingerprints.file_sha256(models[batch]["fp32"])  # the model, any variant
    assert fingerprint["model_metadata"]["icm.input_width"] == str(WIDTH)


def test_timing_cache_is_per_tensorrt_version_and_device_and_read_on_rebuild(builds):
    version, folder, _, results = builds
    cache = timing_cache_path_for(folder / "dynamic_fp16.engine", version, *STAND_IN_GPU)
    assert cache.name == f"dynamic_fp16.engine.tensorrt-{version}.NVIDIA-Stand-in-GPU.sm87.timing.cache"
    assert cache.read_bytes() == f"timing cache, TensorRT {version}, NVIDIA Stand-in GPU 8.7".encode()
    first, second = results[("fp16", "dynamic")], results[("rebuild", "dynamic")]
    assert second["ok"], second.get("traceback")
    assert arguments(first, "IBuilderConfig.create_timing_cache") == [{"serialized_timing_cache": "<0 bytes>"}]
    read_back = arguments(second, "IBuilderConfig.create_timing_cache")[0]["serialized_timing_cache"]
    assert read_back == f"<{len(cache.read_bytes())} bytes>"
    assert arguments(second, "IBuilderConfig.set_timing_cache")[0]["ignore_mismatch"] is False
    assert second["log"] == []  # the device's own cache: accepted, nothing said


def test_same_tensorrt_string_on_two_devices_gives_two_caches():
    """JetPack 6 and an x86 machine both report TensorRT 10.3.0: their caches must not be one file."""
    orin = timing_cache_path_for("m.engine", "10.3.0", "Orin", "8.7")
    desktop = timing_cache_path_for("m.engine", "10.3.0", "NVIDIA GeForce RTX 4090", "8.9")
    assert orin.name == "m.engine.tensorrt-10.3.0.Orin.sm87.timing.cache"
    assert desktop.name == "m.engine.tensorrt-10.3.0.NVIDIA-GeForce-RTX-4090.sm89.timing.cache"


@pytest.mark.parametrize("kind", ["foreign", "corrupt"])
def test_a_foreign_or_corrupt_timing_cache_is_discarded_and_the_build_goes_on(builds, kind):
    version, folder, _, results = builds
    assert results[(f"{kind}_written", "dynamic")]["ok"]
    result = results[(kind, "dynamic")]
    assert result["ok"], result.get("traceback")
    cache = timing_cache_path_for(folder / "dynamic_fp16.engine", version, *STAND_IN_GPU)
    written = len(FOREIGN_CACHE.format(version=version) if kind == "foreign" else CORRUPT_CACHE.encode())
    offered = [args["serialized_timing_cache"] for args in arguments(result, "IBuilderConfig.create_timing_cache")]
    assert offered == [f"<{written} bytes>", "<0 bytes>"]  # the file's cache, then an empty one instead
    set_calls = arguments(result, "IBuilderConfig.set_timing_cache")
    assert len(set_calls) == (2 if kind == "foreign" else 1)  # a corrupt file gives no cache object to set
    assert result["log"] == [["warning", (
        f"timing cache {cache} ({written} bytes) is not usable by TensorRT {version} on NVIDIA Stand-in GPU "
        "(compute capability 8.7) (corrupt, or another device's): deleted; the engine is built without it and a "
        "new cache is written")]]
    assert cache.read_bytes() == f"timing cache, TensorRT {version}, NVIDIA Stand-in GPU 8.7".encode()  # replaced
    assert fingerprints.read_fingerprint(folder / "dynamic_fp16.engine")["tensorrt_version"] == version


def test_missing_requirements_accepts_the_installed_version(builds):
    _, _, _, results = builds
    assert results[("requirements", "")]["ok"], results[("requirements", "")].get("error")


@pytest.mark.parametrize("version, supported", [
    ("10.3.0", True), ("10.13.3.9", True), ("10.16.1.11", True), ("11.0.0", True), ("11.4.0.106", True),
    ("10.2.0.19", False), ("10.0.1", False), ("8.6.1", False), ("12.0.0", False), ("garbage", False),
])
def test_version_policy(version, supported):
    assert tensorrt_version_supported(version) is supported


def test_an_fp32_file_is_refused_for_an_fp16_engine_before_tensorrt_is_needed(models, tmp_path):
    from icm_depth_ros.inference.engine_builder import build_engine

    with pytest.raises(ValueError, match=r"carries fp32, not fp16.*model\.fp16\.onnx"):
        build_engine(models["static"]["fp32"], tmp_path / "m.engine", "fp16")
    assert not (tmp_path / "m.engine").exists()


@pytest.fixture(scope="module")
def export_runs(models, tmp_path_factory):
    """training/export.py --onnx ... --engine ... --precision fp16 | int8 with TensorRT 11.4's bindings."""
    import shutil

    import cv2
    import numpy as np

    folder = tmp_path_factory.mktemp("export_cli")
    shutil.copy(models["static"]["fp32"], folder / "model.onnx")  # no variants beside it yet
    calib = folder / "calib"
    calib.mkdir()
    for index in range(3):
        cv2.imwrite(str(calib / f"{index}.png"), np.random.default_rng(index).integers(0, 255, (40, 70, 3), np.uint8))
    shape = [1, HEIGHT, WIDTH, 3]
    actions = [
        {"kind": "export", "input_shape": shape, "argv": ["--onnx", str(folder / "model.onnx"), "--engine",
                                                          str(folder / "fp16.engine"), "--precision", "fp16"]},
        {"kind": "export", "input_shape": shape, "argv": ["--onnx", str(folder / "model.onnx"), "--engine",
                                                          str(folder / "int8.engine"), "--precision", "int8",
                                                          "--calib", str(calib)]},
        {"kind": "export", "input_shape": shape, "argv": ["--onnx", str(folder / "model.onnx"), "--engine",
                                                          str(folder / "again.engine"), "--precision", "fp16"]},
        {"kind": "export", "input_shape": shape, "argv": ["--onnx", str(folder / "model.onnx"), "--engine",
                                                          str(folder / "three.engine"), "--max-batch", "3"]},
    ]
    report = run_scenario("11.4.0.106", "13.5.0", actions)
    return folder, report["results"]


def test_export_command_writes_the_variant_and_builds_from_it(export_runs):
    from icm_depth_ros.inference.onnx_precision import file_precision, model_sha256

    folder, (fp16, int8, again, _) = export_runs
    for result in (fp16, int8, again):
        assert result["ok"] and result["exit_code"] == 0, (result.get("traceback"), result.get("stderr"))
    assert arguments(fp16, "OnnxParser.parse_from_file") == [{"model": str(folder / "model.fp16.onnx")}]
    assert arguments(int8, "OnnxParser.parse_from_file") == [{"model": str(folder / "model.int8.onnx")}]
    assert "calibrated on 3 images" in int8["stdout"] and "TensorRT operator and Q/DQ check passed" in int8["stdout"]
    assert f"building from the existing fp16 variant {folder / 'model.fp16.onnx'}" in again["stdout"]
    assert file_precision(folder / "model.int8.onnx") == "int8"
    for name, precision in (("fp16", "fp16"), ("int8", "int8")):
        fingerprint = fingerprints.read_fingerprint(folder / f"{name}.engine")
        assert fingerprint["precision"] == precision and fingerprint["tensorrt_version"] == "11.4.0.106"
        assert fingerprint["onnx_sha256"] == model_sha256(folder / "model.onnx")


def test_max_batch_on_a_fixed_batch_model_is_refused(export_runs):
    from training.export import parse_args

    folder, results = export_runs
    three = results[3]
    assert three["ok"] and three["exit_code"] == 1, three.get("traceback")
    assert (f"error: --max-batch 3: {folder / 'model.onnx'} has a fixed batch of 1; export it with --dynamic-batch"
            in three["stderr"])
    assert not (folder / "three.engine").exists()
    checkpoint = str(folder / "model.onnx")  # any existing file: only the arguments are checked here
    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", checkpoint, "--out", "m.onnx", "--engine", "m.engine", "--max-batch", "3"])
    args = parse_args(["--checkpoint", checkpoint, "--out", "m.onnx", "--dynamic-batch", "--engine", "m.engine",
                       "--max-batch", "3"])
    assert args.max_batch == 3 and args.dynamic_batch
