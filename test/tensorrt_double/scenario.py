"""Drive the project's real TensorRT code through the bindings doubles, in a process of its own.

    python -m tensorrt_double.scenario < request.json > results.json

The request names the TensorRT and cuda-bindings versions the process was started with (see
setup_bindings.environment), the fake driver (GPU name, compute capability, CUDA version) and a list
of actions: "build" (icm_depth_ros.inference.engine_builder.build_engine), "open" (the node's
open_backend("tensorrt", ...) and one inference, its input and outputs saved to "out" when given), "batches" (open, then infer batches of the given sizes and
each frame alone), "engine" (write an engine and fingerprint by hand: any optimisation profile), "pipeline"
(DepthPipeline.process frame by frame, images in and depths out as .npz), "export" (training/export.py's
main), "snippet" (code run with ``trt`` and ``cudart``, to prove the doubles catch mistakes). For each
action the result holds the calls made on the doubles. Only the driver (libcuda) is faked outright: the
GPU queries in fingerprint.py.

The timing cache double: ``serialize`` writes ``timing cache, TensorRT <version>, <gpu> <capability>``;
``create_timing_cache`` returns None for bytes that are no cache, and ``set_timing_cache`` returns False
for another version's or device's cache unless ``ignore_mismatch``.

The engine double: a serialized engine is ``serialized engine, TensorRT <version>`` and a JSON line with
what the builder was given (the network's input shape, the optimisation profile set on it, the pixel format
of the ONNX file it parsed), so an engine deserialized later has the batch range and the I/O it was built
with: an engine of a rgb_uint8_nhwc file has input ``image`` UINT8 [B, H, W, 3] and outputs ``depth``
FLOAT, ``cluster`` INT32 and ``firmness`` FLOAT; one of a rgb_float32_nchw_0_1 file has ``image`` FLOAT
[B, 3, H, W] and ``depth``, ``membership`` FLOAT (``get_tensor_dtype``; an action's ``io_dtypes`` overrides
one, as an engine of some other file would have it). Its execution context behaves as TensorRT's does for
what the project uses: ``set_input_shape`` returns False for a batch outside the profile (or other than a
static engine's), ``get_tensor_shape`` gives -1 where the input shape is not set yet and the outputs' shapes
for the batch set, ``execute_async_v3`` fails until every address and the input shape are set, and computes
``network`` (the function the contract models of models.py compute) frame by frame from the input buffer into
the output buffers, reading each as its engine type (and exactly as many values as the shapes need: a buffer
too small is an error). The actions feed a backend its graph's input (``contract.model_input`` of random
camera pixels) and compare its (depth, cluster, firmness) with ``network``'s.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from icm_depth_ros.inference import contract
from tensorrt_double.models import CLUSTER_GAINS, DEPTH_OFFSET, HEIGHT, NUM_CLUSTERS, WIDTH, cluster_bias


def install_doubles(request: dict):
    """Put the doubles in place of ``tensorrt`` and ``cuda.bindings.runtime`` and fake the driver: (trt, cudart, state)."""
    import cuda.bindings
    import tensorrt_bindings
    from cuda.bindings import runtime as real_runtime

    from tensorrt_double.checked_cuda import CheckedCudaRuntime
    from tensorrt_double.checked_tensorrt import CheckedTensorRT, StandIn

    if tensorrt_bindings.__version__ != request["tensorrt"] or cuda.bindings.__version__ != request["cuda_bindings"]:
        raise SystemExit(f"started with tensorrt {tensorrt_bindings.__version__}, cuda-bindings "
                         f"{cuda.bindings.__version__}; the request wants {request['tensorrt']}, {request['cuda_bindings']}")
    cudart = CheckedCudaRuntime(real_runtime, cuda.bindings.__version__)
    state = {"contexts": {}, "engines": {}, "executed_batches": [], "on_execute": None, "io_dtypes": {}, "log": [],
             "gpu": request["gpu"], "refuse_shapes": False, "unresolved": [], "build_fails": False,
             "build_s": float(request.get("build_s", 0.0))}  # node_process.py: how long an engine build takes
    cudart.failures = dict(request.get("cuda_failures", {}))  # for node_process.py: the whole process's run
    cudart.failures_after = dict(request.get("cuda_failures_after", {}))
    trt = CheckedTensorRT(tensorrt_bindings, behaviour(tensorrt_bindings, cudart, state, StandIn))
    trt._behaviour.update(behaviour_with_double(trt, tensorrt_bindings, StandIn, state))
    sys.modules["tensorrt"] = trt
    sys.modules["cuda.bindings.runtime"] = cudart
    cuda.bindings.runtime = cudart

    from icm_depth_ros.inference import fingerprint

    gpu_name, capability = request["gpu"]
    fingerprint.query_gpu = lambda device=0: (gpu_name, capability)
    fingerprint.driver_cuda_version = lambda version=request["driver_cuda"]: version
    return trt, cudart, state


def main() -> int:
    request = json.load(sys.stdin)
    trt, cudart, state = install_doubles(request)
    from icm_depth_ros.inference import fingerprint

    results = []
    for action in request["actions"]:
        driver_cuda = action.get("driver_cuda", request["driver_cuda"])
        fingerprint.driver_cuda_version = lambda version=driver_cuda: version
        trt.calls.clear()
        cudart.calls.clear()
        cudart.failures = dict(action.get("cuda_failures", {}))  # {"cudaMalloc": "cudaErrorMemoryAllocation"}
        cudart.failures_after, cudart.succeeded = dict(action.get("cuda_failures_after", {})), {}
        state["io_dtypes"] = dict(action.get("io_dtypes", {}))  # {"depth": "BF16"}: the engine's I/O types
        state["refuse_shapes"] = bool(action.get("refuse_shapes"))  # set_input_shape returns False (TensorRT's error)
        state["unresolved"] = list(action.get("unresolved_outputs", []))  # outputs whose shape stays [-1, ...]
        for key in ("build_s", "build_fails"):  # kept until an action changes them: a background build reads them late
            state[key] = type(state[key])(action.get(key, state[key]))
        state["log"] = []
        result = {"kind": action["kind"]}
        started = time.monotonic()
        try:
            result.update(run_action(action, trt, cudart, state))
            result["ok"] = True
        except Exception as error:  # reported to the test, which asserts on it
            result.update(ok=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=4))
        result["elapsed_s"] = time.monotonic() - started
        result["calls"] = [[name, plain(arguments)] for name, arguments in trt.calls]
        result["cuda_calls"] = [[name, plain(arguments)] for name, arguments in cudart.calls]
        result["streams"] = list(cudart.streams)  # handles of every stream cudaStreamCreate made so far
        result["destroyed_streams"] = list(cudart.destroyed_streams)
        result["device_flags"] = cudart.device_flags
        result["live_buffers"] = len(cudart.buffers)  # allocations not freed yet (host and "device")
        result["log"] = list(state["log"])  # what the project logged through the scenario's logger
        results.append(result)
    json.dump({"tensorrt": trt.__version__, "strongly_typed_flag": flag_value(sys.modules["tensorrt"]._real),
               "results": results}, sys.stdout)
    return 0


def network(image: np.ndarray) -> tuple[np.ndarray, ...]:
    """What the engine double computes, frame by frame: the graph's outputs for its input (contract.py), the
    function the contract models compute (models.py writes its weights into them).

    uint8 pixels [B, H, W, 3] (rgb_uint8_nhwc) -> (depth [B, 1, H, W], cluster int32 [B, H/4, W/4], firmness
    [B, H/4, W/4]); float32 [B, 3, H, W] in [0, 1] (rgb_float32_nchw_0_1) -> (depth, membership [B, N, H/4, W/4]):
    depth = 1 + the channels' mean, membership = a softmax over N clusters of 4x4-pooled colours."""
    image = np.asarray(image)
    pixels = image.dtype == np.uint8
    if pixels:  # what the graph's Cast, Mul and Transpose do (contiguous: the sums below in the same order)
        image = contract.unit_float(image)
    batch, _, height, width = image.shape
    depth = np.float32(DEPTH_OFFSET) + image.mean(axis=1, keepdims=True)
    pooled = image.reshape(batch, 3, height // 4, 4, width // 4, 4).mean(axis=(3, 5))  # [B, 3, h, w]
    logits = np.stack([pooled[:, c % 3] * np.float32(gain) for c, gain in enumerate(CLUSTER_GAINS)], axis=1)
    logits += cluster_bias()[None, :, None, None]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    membership = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)  # [B, N, h, w]
    if pixels:
        return (depth.astype(np.float32), *contract.reduce_membership(membership))
    return depth.astype(np.float32), membership


def reduced_outputs(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth, cluster, firmness) the double computes for ``image`` (either format), as the backends return them."""
    pixel_format = contract.PIXEL_FORMAT_UINT8 if np.asarray(image).dtype == np.uint8 else contract.PIXEL_FORMAT_FLOAT32
    return contract.reduced_outputs(pixel_format, network(image))


def serialize_engine(version: str, input_shape, profile, pixel_format: str = contract.PIXEL_FORMAT_UINT8) -> bytes:
    """The double's serialized engine: what it was built for (profile None for a static engine) and the pixel
    format of the graph it came from (its I/O tensors: contract.OUTPUTS)."""
    description = {"input_shape": [int(d) for d in input_shape], "pixel_format": pixel_format,
                   "profile": None if profile is None else [[int(d) for d in dims] for dims in profile]}
    return f"serialized engine, TensorRT {version}\n{json.dumps(description)}".encode()


def engine_description(data: bytes) -> dict | None:
    """serialize_engine's description, None for bytes that are not an engine (a bare header: a static batch-1
    rgb_uint8_nhwc engine of the scenario models' size)."""
    if not data.startswith(b"serialized engine"):
        return None
    header, _, description = data.partition(b"\n")
    if not description:
        return {"input_shape": [1, HEIGHT, WIDTH, 3], "profile": None, "pixel_format": contract.PIXEL_FORMAT_UINT8}
    return json.loads(description)


def tensor_shapes(input_shape, pixel_format: str) -> dict[str, tuple]:
    """Every I/O tensor's shape for the input shape (B = -1 while unset) of an engine of ``pixel_format``."""
    if pixel_format == contract.PIXEL_FORMAT_UINT8:
        batch, height, width, _ = input_shape
    else:
        batch, _, height, width = input_shape
    cells = (height // 4, width // 4)
    shapes = {contract.INPUT_NAME: tuple(input_shape), contract.DEPTH_OUTPUT: (batch, 1, height, width),
              contract.CLUSTER_OUTPUT: (batch, *cells), contract.FIRMNESS_OUTPUT: (batch, *cells),
              contract.MEMBERSHIP_OUTPUT: (batch, NUM_CLUSTERS, *cells)}
    return {name: shapes[name] for name in (contract.INPUT_NAME, *contract.OUTPUTS[pixel_format])}


def image_input(model):
    """The contract's input (a ValueInfoProto) of an ONNX ModelProto."""
    (image,) = [value for value in model.graph.input if value.name == contract.INPUT_NAME]
    return image


def pixel_format_of(image) -> str:
    """The pixel format of a graph with input ``image`` (an ONNX ValueInfoProto), from its element type, as
    TensorRT takes an engine's I/O types from the graph: uint8 is rgb_uint8_nhwc, anything else the float form."""
    from onnx import TensorProto

    uint8 = image.type.tensor_type.elem_type == TensorProto.UINT8
    return contract.PIXEL_FORMAT_UINT8 if uint8 else contract.PIXEL_FORMAT_FLOAT32


def engine_io_types(pixel_format: str) -> dict[str, str]:
    """The TensorRT DataType names of an engine's I/O as built from a contract file of ``pixel_format``."""
    types = {name: "FLOAT" for name in (contract.INPUT_NAME, *contract.OUTPUTS[pixel_format])}
    if pixel_format == contract.PIXEL_FORMAT_UINT8:
        types.update({contract.INPUT_NAME: "UINT8", contract.CLUSTER_OUTPUT: "INT32"})
    return types


def flag_value(real) -> int | None:
    flag = getattr(real.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return None if flag is None else int(flag)


def behaviour(real, cudart, state: dict, StandIn) -> dict:  # noqa: N803 - a class passed in
    """The values the code needs to go on; everything else is a stand-in of the documented type."""

    def engine_of(engine) -> dict:
        description = state["engines"].get(id(engine))
        if description is None:
            raise RuntimeError("engine double: this engine was not deserialized by the double")
        return description

    def names_of(engine) -> list[str]:
        return [contract.INPUT_NAME, *contract.OUTPUTS[engine_of(engine)["pixel_format"]]]

    def io_type(description: dict, name: str) -> str:
        """The engine's DataType name of tensor ``name``: its graph's, or what the action says (``io_dtypes``)."""
        return state["io_dtypes"].get(name, engine_io_types(description["pixel_format"])[name])

    def read(description: dict, address: int, name: str, shape) -> np.ndarray:
        dtype = np.dtype(real.nptype(getattr(real.DataType, io_type(description, name))))
        buffer = cudart.buffers[address]
        return np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)  # too small: error

    def context_of(context) -> dict:
        return state["contexts"][id(context)]

    def create_context(engine, **_):
        context = StandIn(state["trt"], real.IExecutionContext)
        description = engine_of(engine)
        dynamic = description["input_shape"][0] == -1
        state["contexts"][id(context)] = {"engine": description, "addresses": {}, "object": context,
                                          "input_shape": None if dynamic else tuple(description["input_shape"])}
        state["last_context"] = context
        return context

    def engine_tensor_shape(engine, name):
        description = engine_of(engine)
        return real.Dims(tensor_shapes(description["input_shape"], description["pixel_format"])[name])

    def profile_shape(engine, name, profile_index):
        description = engine_of(engine)
        if description["profile"] is None:
            raise RuntimeError("engine double: get_tensor_profile_shape of a static engine is not modelled; "
                               "read the batch from get_tensor_shape")
        if name != contract.INPUT_NAME or profile_index != 0:
            raise RuntimeError(f"engine double: one profile (index 0) over input 'image', asked {name!r}, {profile_index}")
        return [real.Dims(dims) for dims in description["profile"]]

    def set_input_shape(context, name, shape):
        entry = context_of(context)
        description = entry["engine"]
        shape = tuple(int(d) for d in shape)
        if state["refuse_shapes"]:
            return False
        if name != contract.INPUT_NAME or len(shape) != 4 or list(shape[1:]) != description["input_shape"][1:]:
            return False
        if description["profile"] is None:
            if shape[0] != description["input_shape"][0]:
                return False  # TensorRT: a static dimension cannot be set to another value
        elif not description["profile"][0][0] <= shape[0] <= description["profile"][2][0]:
            return False  # outside optimisation profile 0 (TensorRT logs an error and returns false)
        entry["input_shape"] = shape
        return True

    def context_tensor_shape(context, name):
        entry = context_of(context)
        input_shape = entry["input_shape"] or tuple(entry["engine"]["input_shape"])  # -1 until set
        shape = tensor_shapes(input_shape, entry["engine"]["pixel_format"])[name]
        return real.Dims((-1, *shape[1:]) if name in state["unresolved"] else shape)

    def set_address(context, name, memory):
        context_of(context)["addresses"][name] = memory
        return True

    def execute(context, stream_handle):
        if stream_handle not in cudart.streams:
            raise ValueError(f"execute_async_v3 got stream handle {stream_handle:#x}, not a stream cudaStreamCreate made "
                             f"({[hex(s) for s in cudart.streams]})")
        entry = context_of(context)
        description = entry["engine"]
        shapes = tensor_shapes(entry["input_shape"] or description["input_shape"], description["pixel_format"])
        if entry["input_shape"] is None or sorted(entry["addresses"]) != sorted(shapes):
            return False  # TensorRT: input shape not specified, or an address not set
        buffers = {name: read(description, entry["addresses"][name], name, shape) for name, shape in shapes.items()}
        outputs = network(buffers.pop(contract.INPUT_NAME))  # the "network", on exactly the batch that was set
        for name, values in zip(contract.OUTPUTS[description["pixel_format"]], outputs):
            buffers[name][...] = values
        state["executed_batches"].append(shapes[contract.INPUT_NAME][0])
        if state["on_execute"] is not None:
            state["on_execute"](shapes[contract.INPUT_NAME][0])
        return True

    def set_profile_shape(profile, input, min, opt, max):  # noqa: A002 - the real parameter names
        state["profile"] = [list(min), list(opt), list(max)]
        return None

    def parse(parser, model):
        import onnx  # the network's input is the file's: its shape (a named batch -> -1) and its pixel format

        image = image_input(onnx.load(model, load_external_data=False))
        state["network_input_shape"] = [d.dim_value if d.HasField("dim_value") else -1
                                        for d in image.type.tensor_type.shape.dim]
        state["network_pixel_format"] = pixel_format_of(image)
        return True

    return {
        "OnnxParser.parse_from_file": parse,
        "OnnxParser.num_errors": lambda parser: 0,
        "INetworkDefinition.num_inputs": lambda network: 1,
        "IOptimizationProfile.set_shape": set_profile_shape,
        "ICudaEngine.num_io_tensors": lambda engine: len(names_of(engine)),
        "ICudaEngine.get_tensor_name": lambda engine, index: names_of(engine)[index],
        "ICudaEngine.get_tensor_mode": lambda engine, name: (
            real.TensorIOMode.INPUT if name == contract.INPUT_NAME else real.TensorIOMode.OUTPUT),
        "ICudaEngine.get_tensor_dtype": lambda engine, name: getattr(real.DataType, io_type(engine_of(engine), name)),
        "ICudaEngine.get_tensor_shape": engine_tensor_shape,
        "ICudaEngine.get_tensor_profile_shape": profile_shape,
        "ICudaEngine.create_execution_context": create_context,
        "IExecutionContext.set_input_shape": set_input_shape,
        "IExecutionContext.get_tensor_shape": context_tensor_shape,
        "IExecutionContext.set_tensor_address": set_address,
        "IExecutionContext.execute_async_v3": execute,
    }


def behaviour_with_double(trt, real, StandIn, state: dict) -> dict:  # noqa: N803
    state["trt"] = trt

    def host_memory(data: bytes):
        memory = StandIn(trt, real.IHostMemory)
        memory.values["__bytes__"] = data
        return memory

    def get_input(network, index):
        tensor = StandIn(trt, real.ITensor)
        tensor.values.update(name="image", shape=real.Dims(state["network_input_shape"]))
        return tensor

    def build(builder, network, config):
        shape, profile = state["network_input_shape"], state.get("profile")
        fails, seconds = state["build_fails"], state["build_s"]
        time.sleep(seconds)  # a build takes minutes on a GPU; the scenario's "build_s" stands in for that
        if fails:
            return None  # what TensorRT returns when the build fails (its log says why)
        if shape[0] == -1 and profile is None:
            return None  # TensorRT: a network with dynamic dimensions needs an optimisation profile
        return host_memory(serialize_engine(real.__version__, shape, profile if shape[0] == -1 else None,
                                            state["network_pixel_format"]))

    def deserialize(runtime, serialized_engine):
        description = engine_description(bytes(serialized_engine))
        if description is None:
            return None  # what TensorRT does with bytes that are not an engine of its version
        engine = StandIn(trt, real.ICudaEngine)
        state["engines"][id(engine)] = description
        state.setdefault("engine_objects", []).append(engine)  # keeps ids unique while the scenario runs
        return engine

    def timing_cache_bytes() -> bytes:  # what this TensorRT on this device writes
        gpu_name, capability = state["gpu"]
        return f"timing cache, TensorRT {real.__version__}, {gpu_name} {capability}".encode()

    def create_timing_cache(config, serialized_timing_cache):
        data = bytes(serialized_timing_cache)
        if data and not data.startswith(b"timing cache, TensorRT "):
            return None  # bytes that are no timing cache (TensorRT logs an error)
        cache = StandIn(trt, real.ITimingCache)
        state.setdefault("timing_caches", {})[id(cache)] = data
        state.setdefault("timing_cache_objects", []).append(cache)  # keeps ids unique
        return cache

    def set_timing_cache(config, cache, ignore_mismatch):
        data = state["timing_caches"][id(cache)]
        return not data or ignore_mismatch or data == timing_cache_bytes()  # another device/version: refused

    return {
        "INetworkDefinition.get_input": get_input,
        "Builder.build_serialized_network": build,
        "IBuilderConfig.create_timing_cache": create_timing_cache,
        "IBuilderConfig.set_timing_cache": set_timing_cache,
        "ITimingCache.serialize": lambda cache: host_memory(timing_cache_bytes()),
        "Runtime.deserialize_cuda_engine": deserialize,
    }


def run_action(action: dict, trt, cudart, state: dict) -> dict:
    if action["kind"] == "build":
        from icm_depth_ros.inference.engine_builder import build_engine

        state["network_input_shape"], state["profile"] = action["input_shape"], None
        fingerprint = build_engine(action["onnx"], action["engine"], action.get("precision"),
                                   max_batch=action.get("max_batch", 1), logger=Quiet(state["log"]))
        return {"fingerprint": fingerprint}
    if action["kind"] == "open":
        backend = open_action(action, state)
        image = model_inputs(backend, 1, seed=0)
        outputs = backend.infer(image)
        result = {"description": backend.description, "max_batch": backend.max_batch, **compared(outputs, image)}
        if backend.name == "tensorrt":  # the pinned host buffer the input is copied through, sized for max_batch
            result["input_bytes"] = int(backend.host[contract.INPUT_NAME].nbytes)
        if action.get("out"):  # the input and what the backend returned, for the test to compare elsewhere
            np.savez(action["out"], image=image, **dict(zip(("depth", "cluster", "firmness"), outputs)))
        if action.get("close"):
            backend.close()
        return result
    if action["kind"] == "infer_failures":  # open, then infer ``frames`` times: each call's outcome
        backend = open_action(action, state)
        image = np.zeros(backend.info.input_shape(1), backend.info.input_dtype)
        if "infer_dtype" in action:  # the graph input of another pixel format's dtype
            image = image.astype(action["infer_dtype"])
        state["unresolved"] = list(action.get("infer_unresolved_outputs", []))  # after the load: at inference
        cudart.failures = dict(action.get("infer_cuda_failures", {}))
        cudart.failures_after, cudart.succeeded = dict(action.get("infer_cuda_failures_after", {})), {}
        outcomes = []
        for _ in range(action["frames"]):
            try:
                backend.infer(image)
                outcomes.append("ok")
            except Exception as error:  # noqa: BLE001 - reported per frame
                outcomes.append(f"{type(error).__module__}.{type(error).__name__}: {error}")
        return {"outcomes": outcomes}
    if action["kind"] == "batches":  # open, then each batch of action["batches"], then every frame alone
        backend = open_action(action, state)
        images = model_inputs(backend, max(action["batches"]), seed=7)
        runs = []
        for size in action["batches"]:
            run = {"batch": size}
            try:
                outputs = backend.infer(images[:size])
            except Exception as error:  # noqa: BLE001 - a refusal is reported per batch
                run.update(ok=False, error=f"{type(error).__name__}: {error}")
            else:
                alone = [backend.infer(images[index:index + 1]) for index in range(size)]
                run.update(ok=True, **compared(outputs, images[:size]), equal_to_frame_by_frame=all(
                    np.array_equal(output, np.concatenate([frame[index] for frame in alone]))
                    for index, output in enumerate(outputs)))
            runs.append(run)
        return {"description": backend.description, "max_batch": backend.max_batch,
                "batch_range": [backend.min_batch, backend.opt_batch, backend.max_batch], "runs": runs}
    if action["kind"] == "engine":  # an engine and fingerprint written by hand: any profile
        from icm_depth_ros.inference import fingerprint as fingerprints
        from icm_depth_ros.inference import onnx_precision

        profile = action.get("profile")
        graph = onnx_precision.load_graph(action["onnx"])
        Path(action["engine"]).write_bytes(serialize_engine(trt.__version__, action["input_shape"], profile,
                                                            pixel_format_of(image_input(graph))))
        fingerprints.write_fingerprint(action["engine"], fingerprints.make_fingerprint(
            **fingerprints.machine_fingerprint(), precision=onnx_precision.file_precision(action["onnx"]),
            input_shape=action["input_shape"],
            max_batch=action.get("fingerprint_max_batch", profile[2][0] if profile else action["input_shape"][0]),
            onnx_sha256=onnx_precision.model_sha256(action["onnx"]),
            model_metadata={prop.key: prop.value for prop in graph.metadata_props}))
        return {}
    if action["kind"] == "pipeline":  # DepthPipeline.process frame by frame on images from an .npz
        from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

        pipeline = DepthPipeline.from_config(PipelineConfig(
            model_path=action["model_path"], backend="tensorrt", precision=action["precision"],
            onnx_path=action.get("onnx_path", "")))
        frames = np.load(action["frames"])
        depths = {name: pipeline.process(frames[name]).depth for name in frames.files}
        np.savez(action["out"], **depths)
        return {"max_batch": pipeline.max_batch, "executed_batches": list(state["executed_batches"])}
    if action["kind"] == "export":  # the command: training/export.py's main with these arguments
        import contextlib
        import io

        from training import export

        state["network_input_shape"], state["profile"] = action["input_shape"], None
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = export.main(action["argv"])
        return {"exit_code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    if action["kind"] == "wait_build":  # until the background build of action["engine"] has finished
        from icm_depth_ros.inference.tensorrt_backend import BUILDS

        deadline = time.monotonic() + 60
        while BUILDS.running(Path(action["engine"])) and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"still_running": BUILDS.running(Path(action["engine"]))}
    if action["kind"] == "snippet":
        exec(action["code"], {"trt": trt, "cudart": cudart, "np": np})  # noqa: S102 - the test's own code
        return {}
    raise ValueError(f"unknown action {action['kind']!r}")


def model_inputs(backend, batch: int, seed: int) -> np.ndarray:
    """Random camera pixels for ``batch`` frames as the backend's graph takes them (contract.model_input)."""
    info = backend.info
    pixels = np.random.default_rng(seed).integers(0, 256, (batch, info.input_height, info.input_width, 3), np.uint8)
    return contract.model_input(info, pixels)


def compared(outputs: tuple[np.ndarray, np.ndarray, np.ndarray], image: np.ndarray) -> dict:
    """A backend's (depth, cluster, firmness) for ``image`` against what the double's network computes for it."""
    depth, cluster, firmness = outputs
    expected = reduced_outputs(image)
    return {"depth_shape": list(depth.shape), "cluster_shape": list(cluster.shape),
            "firmness_shape": list(firmness.shape), "dtypes": [str(output.dtype) for output in outputs],
            "depth_max_error": float(np.max(np.abs(depth - expected[0]))),
            "cluster_equal": bool(np.array_equal(cluster, expected[1])),
            "firmness_max_error": float(np.max(np.abs(firmness - expected[2])))}


def open_action(action: dict, state: dict):
    """The node's open_backend("tensorrt", ...) for an "open"/"batches" action."""
    from icm_depth_ros.inference import open_backend

    # a rebuild's parse() replaces the shape with the file's
    state["network_input_shape"], state["profile"] = action.get("input_shape", [1, HEIGHT, WIDTH, 3]), None
    return open_backend(action.get("backend", "tensorrt"), action["model_path"], onnx_path=action.get("onnx_path", ""),
                        precision=action["precision"], allow_engine_build=action.get("allow_build", False),
                        logger=Quiet(state["log"]), engine_max_batch=action.get("engine_max_batch", 0),
                        build_in_background=action.get("background", False))


class Quiet:
    """A logger that keeps its lines (level, text) for the action's result."""

    def __init__(self, lines: list):
        self.lines = lines

    def warning(self, text):
        self.lines.append(["warning", text])

    def info(self, text):
        self.lines.append(["info", text])


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
