"""The bindings doubles catch what the real bindings would reject: removed attributes, wrong keywords,
wrong argument counts and types, implicit conversions, and they do not reject what is valid."""
from __future__ import annotations

import numpy as np
import pytest

from icm_depth_ros.inference import contract
from tensorrt_double.checked_cuda import documented_return_count
from tensorrt_double.models import (
    HEIGHT, NUM_CLUSTERS, PRECISIONS, WIDTH, shipped_model_and_variants, write_model, write_model_and_variants,
)
from tensorrt_double.scenario import network
from tensorrt_double.setup_bindings import run_scenario
from tensorrt_double.signatures import parse_signature_line, split_top_level

SETUP = """
logger = trt.Logger(trt.Logger.WARNING)
builder = trt.Builder(logger)
network = builder.create_network(0)
config = builder.create_builder_config()
"""
SNIPPETS = {
    "fp16_flag": SETUP + "config.set_flag(trt.BuilderFlag.FP16)",  # the pre-11 fp16 build
    "int8_calibrator_property": SETUP + "config.int8_calibrator = None",
    "calibrator_class": "trt.IInt8EntropyCalibrator2",
    "calibration_profile": SETUP + "config.set_calibration_profile(builder.create_optimization_profile())",
    "wrong_keyword": SETUP + "config.set_timing_cache(config.create_timing_cache(b''), ignore_mismatches=False)",
    "right_keyword": SETUP + "config.set_timing_cache(config.create_timing_cache(b''), ignore_mismatch=False)",
    "too_many_arguments": SETUP + "builder.create_network(0, 1)",
    "wrong_class": SETUP + "trt.OnnxParser(config, logger)",
    "missing_argument": SETUP + "trt.OnnxParser(network)",
    "implicit_stream_conversion": (
        "engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(b'serialized engine')\n"
        "context = engine.create_execution_context()\n"
        "context.execute_async_v3(cudart.cudaStreamCreate()[1])"),
    "read_only_property": SETUP + "network.num_inputs = 3",
    "cuda_wrong_keyword": "cudart.cudaMalloc(nbytes=16)",
    "cuda_missing_function": "cudart.cudaStreamCreateWithFlagsAndMore",
    "profile_behaviour": (  # the engine double follows its optimisation profile as TensorRT does
        "from tensorrt_double.scenario import serialize_engine\n"
        "runtime = trt.Runtime(trt.Logger())\n"
        "engine = runtime.deserialize_cuda_engine(serialize_engine(trt.__version__, [-1, 16, 32, 3], "
        "[[1, 16, 32, 3], [2, 16, 32, 3], [3, 16, 32, 3]]))\n"
        "assert tuple(engine.get_tensor_shape('image')) == (-1, 16, 32, 3)\n"
        "assert [tuple(d)[0] for d in engine.get_tensor_profile_shape('image', 0)] == [1, 2, 3]\n"
        "context = engine.create_execution_context()\n"
        "assert tuple(context.get_tensor_shape('depth')) == (-1, 1, 16, 32)  # not set yet\n"
        "assert context.set_input_shape('image', (4, 16, 32, 3)) is False  # above the profile\n"
        "assert context.set_input_shape('image', (2, 16, 16, 3)) is False  # not the engine's size\n"
        "assert context.set_input_shape('image', (2, 16, 32, 3)) is True\n"
        "assert tuple(context.get_tensor_shape('cluster')) == (2, 4, 8)\n"
        "stream = cudart.cudaStreamCreate()[1]\n"
        "handle = __import__('icm_depth_ros.inference.tensorrt_backend', fromlist=['x']).stream_handle(stream)\n"
        "assert context.execute_async_v3(handle) is False  # no tensor addresses set\n"
        "static = runtime.deserialize_cuda_engine(serialize_engine(trt.__version__, [1, 16, 32, 3], None))\n"
        "static_context = static.create_execution_context()\n"
        "assert static_context.set_input_shape('image', (2, 16, 32, 3)) is False\n"
        "assert static_context.set_input_shape('image', (1, 16, 32, 3)) is True"),
    "io_types": (  # an engine's I/O types are its graph's: uint8 pixels and int32 clusters, or float32 throughout
        "from tensorrt_double.scenario import serialize_engine\n"
        "runtime = trt.Runtime(trt.Logger())\n"
        "def io(engine):\n"
        "    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]\n"
        "    return {name: engine.get_tensor_dtype(name).name for name in names}\n"
        "pixels = runtime.deserialize_cuda_engine(serialize_engine(trt.__version__, [1, 16, 32, 3], None))\n"
        "assert io(pixels) == {'image': 'UINT8', 'depth': 'FLOAT', 'cluster': 'INT32', 'firmness': 'FLOAT'}, io(pixels)\n"
        "assert trt.nptype(pixels.get_tensor_dtype('image')) is np.uint8\n"
        "legacy = runtime.deserialize_cuda_engine(serialize_engine(trt.__version__, [1, 3, 16, 32], None, "
        "'rgb_float32_nchw_0_1'))\n"
        "assert io(legacy) == {'image': 'FLOAT', 'depth': 'FLOAT', 'membership': 'FLOAT'}, io(legacy)\n"
        "assert tuple(legacy.get_tensor_shape('membership')) == (1, 4, 4, 8)"),
    "cuda_stream_as_int": (
        "error, host = cudart.cudaMallocHost(16)\n"
        "cudart.cudaMemcpyAsync(host, host, 16, cudart.cudaMemcpyKind.cudaMemcpyHostToHost, 0x5000)"),
}


@pytest.fixture(scope="module", params=[("10.3.0", "12.9.6"), ("11.4.0.106", "13.5.0")], ids=lambda p: p[0])
def snippet_results(request):
    version, cuda_version = request.param
    actions = [{"kind": "snippet", "code": code} for code in SNIPPETS.values()]
    report = run_scenario(version, cuda_version, actions)
    return version, cuda_version, dict(zip(SNIPPETS, report["results"]))


def error_of(results, name) -> str:
    result = results[name]
    assert not result["ok"], f"{name} was accepted"
    return result["error"]


def test_apis_removed_in_tensorrt_11_are_caught_there_and_only_there(snippet_results):
    version, _, results = snippet_results
    removed = ("fp16_flag", "int8_calibrator_property", "calibrator_class", "calibration_profile")
    if version.startswith("11."):
        assert error_of(results, "fp16_flag") == "AttributeError: type object 'tensorrt_bindings.tensorrt.BuilderFlag' has no attribute 'FP16'"
        assert error_of(results, "int8_calibrator_property") == \
            "AttributeError: TensorRT 11.4.0.106: IBuilderConfig has no property 'int8_calibrator'"
        assert error_of(results, "calibrator_class") == \
            "AttributeError: TensorRT 11.4.0.106: module 'tensorrt' has no attribute 'IInt8EntropyCalibrator2'"
        assert "IBuilderConfig has no attribute 'set_calibration_profile'" in error_of(results, "calibration_profile")
    else:  # still there (deprecated) in 10.3: the double is not stricter than the real bindings
        assert all(results[name]["ok"] for name in removed), [results[name].get("error") for name in removed]


def test_wrong_keywords_counts_and_types_are_caught(snippet_results):
    version, _, results = snippet_results
    assert "unexpected keyword 'ignore_mismatches'" in error_of(results, "wrong_keyword")
    assert results["right_keyword"]["ok"], results["right_keyword"].get("error")
    assert f"TensorRT {version}: Builder.create_network call does not fit: 2 positional arguments" in \
        error_of(results, "too_many_arguments")
    assert "OnnxParser.__init__(network=...) expects a INetworkDefinition (got <stand-in IBuilderConfig>)" in \
        error_of(results, "wrong_class")
    assert "missing logger" in error_of(results, "missing_argument")
    assert "INetworkDefinition.num_inputs is read-only" in error_of(results, "read_only_property")


def test_a_stream_object_where_tensorrt_takes_an_int_is_caught(snippet_results):
    _, _, results = snippet_results
    assert ("execute_async_v3(stream_handle=...) expects an int (got cudaStream_t; implicit int() conversion is not "
            "relied on)") in error_of(results, "implicit_stream_conversion")


def test_the_cuda_double_checks_against_the_real_cuda_bindings(snippet_results):
    _, cuda_version, results = snippet_results
    assert error_of(results, "cuda_wrong_keyword").startswith(f"TypeError: cuda-bindings {cuda_version}: cudaMalloc(size)")
    assert error_of(results, "cuda_missing_function") == (f"AttributeError: cuda-bindings {cuda_version}: "
                                                         "cuda.bindings.runtime has no attribute 'cudaStreamCreateWithFlagsAndMore'")
    assert "cudaMemcpyAsync stream must be a cudaStream_t, got 20480" in error_of(results, "cuda_stream_as_int")


def test_the_engine_double_follows_its_optimisation_profile(snippet_results):
    _, _, results = snippet_results
    assert results["profile_behaviour"]["ok"], results["profile_behaviour"].get("traceback")


def test_the_engine_double_has_its_graphs_io_types(snippet_results):
    _, _, results = snippet_results
    assert results["io_types"]["ok"], results["io_types"].get("traceback")


def test_pybind_signature_lines_are_parsed():
    line = ("2. create_execution_context(self: tensorrt_bindings.tensorrt.ICudaEngine, strategy: "
            "tensorrt_bindings.tensorrt.ExecutionContextAllocationStrategy = <ExecutionContextAllocationStrategy.STATIC: 0>,"
            " shape: tuple[int, int] = (1, 2)) -> tensorrt_bindings.tensorrt.IExecutionContext")
    signature = parse_signature_line(line, "create_execution_context")
    assert [p.name for p in signature.parameters] == ["strategy", "shape"]
    assert signature.parameters[0].annotation == "tensorrt_bindings.tensorrt.ExecutionContextAllocationStrategy"
    assert signature.parameters[1].annotation == "tuple[int, int]" and signature.parameters[1].has_default
    assert signature.returns == "tensorrt_bindings.tensorrt.IExecutionContext"
    assert signature.bind((), {}) == {}
    with pytest.raises(TypeError, match="unexpected keyword 'strategi'"):
        signature.bind((), {"strategi": 0})
    assert split_top_level("a: x[1, 2], b: y = <E.A: 0>") == ["a: x[1, 2]", "b: y = <E.A: 0>"]
    assert parse_signature_line("other(self: X) -> None", "create_execution_context") is None


def test_documented_return_counts_of_cuda_functions():
    def stand_in():
        """f(size_t size)

        Returns
        -------
        cudaError_t
            the status
        devPtr : Any
            the pointer

        See Also
        """

    assert documented_return_count(stand_in) == 2


@pytest.mark.parametrize("dynamic_batch", [False, True], ids=["batch1", "dynamic"])
def test_shipped_contract_models_are_what_models_py_writes(tmp_path, dynamic_batch):
    """The node-side tests copy contract_models/ instead of writing it (the INT8 export needs the training side)."""
    written = write_model_and_variants(tmp_path / "written", dynamic_batch=dynamic_batch)
    shipped = shipped_model_and_variants(tmp_path / "shipped", dynamic_batch=dynamic_batch)
    for precision in PRECISIONS:
        assert shipped[precision].read_bytes() == written[precision].read_bytes(), (
            f"{shipped[precision].name} differs from what tensorrt_double/models.py writes: "
            "regenerate with python -m tensorrt_double.models (from test/)")


def onnxruntime_outputs(path, pixels: np.ndarray) -> tuple[contract.ModelInfo, list[np.ndarray]]:
    """(the file's ModelInfo, ONNX Runtime's outputs for camera ``pixels`` fed as the file's graph takes them)."""
    import onnxruntime

    from icm_depth_ros.inference.onnx_precision import onnx_metadata

    info = contract.ModelInfo.from_metadata(onnx_metadata(path), str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return info, session.run(list(info.outputs), {contract.INPUT_NAME: contract.model_input(info, pixels)})


PIXELS = np.random.default_rng(11).integers(0, 256, (3, HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.mark.parametrize("pixel_format", contract.PIXEL_FORMATS)
def test_the_engine_doubles_network_is_what_onnxruntime_computes_on_the_contract_model(tmp_path, pixel_format):
    """The double stands for an engine built from the file: same clusters, depth and firmness to float rounding."""
    info, expected = onnxruntime_outputs(write_model(tmp_path / "model.onnx", True, pixel_format), PIXELS)
    computed = network(contract.model_input(info, PIXELS))
    assert [name for name in info.outputs] == list(contract.OUTPUTS[pixel_format]) and len(computed) == len(expected)
    for name, ours, theirs in zip(info.outputs, computed, expected):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, name
    np.testing.assert_allclose(computed[0], expected[0], rtol=1e-6)  # depth
    if pixel_format == contract.PIXEL_FORMAT_UINT8:
        np.testing.assert_array_equal(computed[1], expected[1])  # cluster: no ties to break differently
        assert len(np.unique(computed[1])) >= 2  # the comparison sees more than one cluster
        np.testing.assert_allclose(computed[2], expected[2], rtol=1e-5)  # firmness
    else:
        np.testing.assert_allclose(computed[1], expected[1], rtol=1e-5)  # membership


def test_both_pixel_formats_of_the_contract_model_give_the_same_maps(tmp_path):
    """The legacy file's membership, reduced on the host, is the current file's cluster and firmness."""
    _, current = onnxruntime_outputs(write_model(tmp_path / "uint8.onnx", False), PIXELS[:1])
    _, legacy = onnxruntime_outputs(write_model(tmp_path / "float.onnx", False, contract.PIXEL_FORMAT_FLOAT32),
                                    PIXELS[:1])
    assert legacy[1].shape == (1, NUM_CLUSTERS, HEIGHT // 4, WIDTH // 4)
    np.testing.assert_array_equal(current[0], legacy[0])
    cluster, firmness = contract.reduce_membership(legacy[1])
    np.testing.assert_array_equal(current[1], cluster)
    np.testing.assert_array_equal(current[2], firmness)


def test_the_variants_keep_the_contracts_io_and_their_results(tmp_path):
    """write_float16 keeps uint8 pixels in and int32 clusters out, and its maps are the fp32 file's; the INT8 file's
    clusters differ in few cells (8-bit activations)."""
    import onnx

    files = write_model_and_variants(tmp_path, dynamic_batch=True)
    outputs = {precision: onnxruntime_outputs(path, PIXELS)[1] for precision, path in files.items()}
    for precision, path in files.items():
        graph = onnx.load(str(path)).graph
        assert [(value.name, value.type.tensor_type.elem_type) for value in [*graph.input, *graph.output]] == [
            ("image", onnx.TensorProto.UINT8), ("depth", onnx.TensorProto.FLOAT), ("cluster", onnx.TensorProto.INT32),
            ("firmness", onnx.TensorProto.FLOAT)], precision
    depth, cluster, firmness = outputs["fp32"]
    np.testing.assert_allclose(outputs["fp16"][0], depth, rtol=1e-3)
    np.testing.assert_array_equal(outputs["fp16"][1], cluster)
    np.testing.assert_allclose(outputs["fp16"][2], firmness, atol=1e-3)
    np.testing.assert_allclose(outputs["int8"][0], depth, rtol=1e-2)
    assert np.mean(outputs["int8"][1] != cluster) <= 0.05
    np.testing.assert_allclose(outputs["int8"][2], firmness, atol=2e-2)
