"""Drive the project's real TensorRT code through the bindings doubles, in a process of its own.

    python -m tensorrt_double.scenario < request.json > results.json

The request names the TensorRT and cuda-bindings versions the process was started with (see
setup_bindings.environment), the fake driver (GPU name, compute capability, CUDA version) and a list
of actions: "build" (icm_depth_ros.inference.engine_builder.build_engine), "open" (the node's
open_backend("tensorrt", ...) and one inference), "export" (training/export.py's main), "snippet" (code run with ``trt`` and ``cudart``, to
prove the doubles catch mistakes). For each action the result holds the calls made on the doubles.
Only the driver (libcuda) is faked outright: the GPU queries in fingerprint.py.
"""
from __future__ import annotations

import json
import sys
import traceback

import numpy as np

NUM_CLUSTERS = 4  # the scenario models' membership channels (test_tensorrt_bindings.py writes them)


def main() -> int:
    request = json.load(sys.stdin)
    import cuda.bindings
    import tensorrt_bindings
    from cuda.bindings import runtime as real_runtime

    from tensorrt_double.checked_cuda import CheckedCudaRuntime
    from tensorrt_double.checked_tensorrt import CheckedTensorRT, StandIn

    if tensorrt_bindings.__version__ != request["tensorrt"] or cuda.bindings.__version__ != request["cuda_bindings"]:
        raise SystemExit(f"started with tensorrt {tensorrt_bindings.__version__}, cuda-bindings "
                         f"{cuda.bindings.__version__}; the request wants {request['tensorrt']}, {request['cuda_bindings']}")
    cudart = CheckedCudaRuntime(real_runtime, cuda.bindings.__version__)
    state = {"addresses": {}, "shapes": {}}
    trt = CheckedTensorRT(tensorrt_bindings, behaviour(tensorrt_bindings, cudart, state, StandIn))
    trt._behaviour.update(behaviour_with_double(trt, tensorrt_bindings, StandIn, state))
    sys.modules["tensorrt"] = trt
    sys.modules["cuda.bindings.runtime"] = cudart
    cuda.bindings.runtime = cudart

    from icm_depth_ros.inference import fingerprint

    gpu_name, capability = request["gpu"]
    fingerprint.query_gpu = lambda device=0: (gpu_name, capability)
    results = []
    for action in request["actions"]:
        driver_cuda = action.get("driver_cuda", request["driver_cuda"])
        fingerprint.driver_cuda_version = lambda version=driver_cuda: version
        trt.calls.clear()
        cudart.calls.clear()
        result = {"kind": action["kind"]}
        try:
            result.update(run_action(action, trt, cudart, state))
            result["ok"] = True
        except Exception as error:  # reported to the test, which asserts on it
            result.update(ok=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=4))
        result["calls"] = [[name, plain(arguments)] for name, arguments in trt.calls]
        result["cuda_calls"] = [[name, plain(arguments)] for name, arguments in cudart.calls]
        result["streams"] = list(cudart.streams)  # handles of every stream cudaStreamCreate made so far
        results.append(result)
    json.dump({"tensorrt": trt.__version__, "strongly_typed_flag": flag_value(tensorrt_bindings),
               "results": results}, sys.stdout)
    return 0


def flag_value(real) -> int | None:
    flag = getattr(real.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return None if flag is None else int(flag)


def behaviour(real, cudart, state: dict, StandIn) -> dict:  # noqa: N803 - a class passed in
    """The values the code needs to go on; everything else is a stand-in of the documented type."""

    def read(address: int, shape) -> np.ndarray:
        buffer = cudart.buffers[address]
        return np.frombuffer(buffer, dtype=np.float32, count=int(np.prod(shape))).reshape(shape)

    def execute(context, stream_handle):
        if stream_handle not in cudart.streams:
            raise ValueError(f"execute_async_v3 got stream handle {stream_handle:#x}, not a stream cudaStreamCreate made "
                             f"({[hex(s) for s in cudart.streams]})")
        image = read(state["addresses"]["image"], state["shapes"]["image"])  # [1, 3, H, W]
        depth = read(state["addresses"]["depth"], state["shapes"]["depth"])
        membership = read(state["addresses"]["membership"], state["shapes"]["membership"])
        depth[...] = 1.0 + image.mean(axis=1, keepdims=True)  # the "network": metres from pixels
        membership[...] = 1.0 / membership.shape[1]
        return True

    def set_address(context, name, memory):
        state["addresses"][name] = memory
        return True

    def set_input_shape(context, name, shape):
        batch, _, height, width = tuple(shape)
        stride = 4
        state["shapes"] = {"image": (batch, 3, height, width), "depth": (batch, 1, height, width),
                           "membership": (batch, NUM_CLUSTERS, height // stride, width // stride)}
        return True

    names = ["image", "depth", "membership"]
    return {
        "OnnxParser.parse_from_file": lambda parser, model: True,
        "OnnxParser.num_errors": lambda parser: 0,
        "INetworkDefinition.num_inputs": lambda network: 1,
        "ICudaEngine.num_io_tensors": lambda engine: len(names),
        "ICudaEngine.get_tensor_name": lambda engine, index: names[index],
        "ICudaEngine.get_tensor_mode": lambda engine, name: real.TensorIOMode.INPUT if name == "image" else real.TensorIOMode.OUTPUT,
        "ICudaEngine.get_tensor_dtype": lambda engine, name: real.DataType.FLOAT,
        "IExecutionContext.set_input_shape": set_input_shape,
        "IExecutionContext.get_tensor_shape": lambda context, name: real.Dims(state["shapes"][name]),
        "IExecutionContext.set_tensor_address": set_address,
        "IExecutionContext.execute_async_v3": execute,
    }


def behaviour_with_double(trt, real, StandIn, state: dict) -> dict:  # noqa: N803
    def host_memory(data: bytes):
        memory = StandIn(trt, real.IHostMemory)
        memory.values["__bytes__"] = data
        return memory

    def get_input(network, index):
        tensor = StandIn(trt, real.ITensor)
        tensor.values.update(name="image", shape=real.Dims(state["network_input_shape"]))
        return tensor

    def build(builder, network, config):
        return host_memory(f"serialized engine, TensorRT {real.__version__}".encode())

    def deserialize(runtime, serialized_engine):
        if not bytes(serialized_engine).startswith(b"serialized engine"):
            return None  # what TensorRT does with bytes that are not an engine of its version
        return StandIn(trt, real.ICudaEngine)

    return {
        "INetworkDefinition.get_input": get_input,
        "Builder.build_serialized_network": build,
        "ITimingCache.serialize": lambda cache: host_memory(f"timing cache, TensorRT {real.__version__}".encode()),
        "Runtime.deserialize_cuda_engine": deserialize,
    }


def run_action(action: dict, trt, cudart, state: dict) -> dict:
    if action["kind"] == "build":
        from icm_depth_ros.inference.engine_builder import build_engine

        state["network_input_shape"] = action["input_shape"]
        fingerprint = build_engine(action["onnx"], action["engine"], action.get("precision"),
                                   max_batch=action.get("max_batch", 1))
        return {"fingerprint": fingerprint}
    if action["kind"] == "open":
        from icm_depth_ros.inference import open_backend

        state["network_input_shape"] = action.get("input_shape", [1, 3, 8, 8])
        backend = open_backend("tensorrt", action["model_path"], onnx_path=action.get("onnx_path", ""),
                               precision=action["precision"], allow_engine_build=action.get("allow_build", False),
                               logger=Quiet())
        height, width = backend.info.input_height, backend.info.input_width
        image = np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32)
        depth, membership = backend.infer(image)
        expected = 1.0 + image.mean(axis=1, keepdims=True)
        return {"description": backend.description, "depth_max_error": float(np.max(np.abs(depth - expected))),
                "membership_sum": float(membership.sum(axis=1).mean()), "depth_shape": list(depth.shape)}
    if action["kind"] == "export":  # the command: training/export.py's main with these arguments
        import contextlib
        import io

        from training import export

        state["network_input_shape"] = action["input_shape"]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = export.main(action["argv"])
        return {"exit_code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    if action["kind"] == "snippet":
        exec(action["code"], {"trt": trt, "cudart": cudart, "np": np})  # noqa: S102 - the test's own code
        return {}
    raise ValueError(f"unknown action {action['kind']!r}")


class Quiet:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)

    info = warning


def plain(value):
    """JSON-able form of call arguments: numbers and strings as they are, the rest as text."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (tuple, list)) or type(value).__name__.startswith("Dims"):
        return [plain(item) for item in value]
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
