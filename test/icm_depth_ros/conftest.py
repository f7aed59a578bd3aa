"""Fixtures for the node tests: the test models, a private ROS graph, the node as a process.

No PyTorch: the model is the shipped demo model (models/demo/icm_demo.onnx, 96x320), and its
dynamic-batch variant is derived from it with onnx alone, so these tests run on a vehicle's Python stack.
ROS graph tests run the node in its own process on a private ROS_DOMAIN_ID with localhost-only
discovery; the test process publishes and subscribes through an rclpy context of its own on the same domain.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from icm_depth_ros.inference import contract
from icm_depth_ros.node.local_graph import FASTDDS_PROFILE, local_ros_environment, pick_domain_id, stop_process

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "demo" / "icm_demo.onnx"
MODEL_SIZE = (96, 320)  # the demo model's input (H, W)


def with_dynamic_batch(source: Path, target: Path) -> Path:
    """``source``, a batch-1 export of ICMDepthNet, with a dynamic batch dimension, written to ``target``.

    The exporter traced batch 1 as a constant into the shape of one Reshape (the membership's
    [1, N, h, w]); that leading 1 becomes 0, which ONNX Reshape reads as "the input's dimension". Inputs
    and outputs get the symbolic batch dimension, the contract's metadata says dynamic_batch.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    producers = {output: node for node in model.graph.node for output in node.output}
    rewritten = 0
    for node in model.graph.node:
        shape = producers.get(node.input[1]) if node.op_type == "Reshape" else None
        leading = producers.get(shape.input[0]) if shape is not None and shape.op_type == "Concat" else None
        if leading is not None and leading.op_type == "Constant" \
                and numpy_helper.to_array(leading.attribute[0].t).tolist() == [1]:
            batch_of_input = f"{leading.output[0]}_batch_of_input"
            model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), batch_of_input))
            shape.input[0] = batch_of_input
            rewritten += 1
    if rewritten == 0:
        raise ValueError(f"{source}: found no Reshape with a traced batch of 1; cannot derive a dynamic-batch model")
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"  # the exporter's name for it
    del model.graph.value_info[:]  # inferred shapes with batch 1
    for prop in model.metadata_props:
        if prop.key == contract.META_DYNAMIC_BATCH:
            prop.value = "true"
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    """The shipped demo model, copied: tests write engines, fingerprints and variants beside it."""
    path = tmp_path_factory.mktemp("model") / "icm_test.onnx"
    shutil.copyfile(DEMO_MODEL, path)
    return path


def with_perturbed_weights(source: Path, target: Path, scale: float = 0.3, seed: int = 0) -> Path:
    """``source`` with noise on its weights, metadata kept: a model that predicts worse (onnx only, no PyTorch)."""
    from icm_depth_ros.inference.self_test import write_perturbed_copy

    return write_perturbed_copy(source, target, scale, seed)


@pytest.fixture(scope="session")
def perturbed_model(tmp_path_factory) -> Path:
    """The demo model with noise on its weights (same metadata): worse depth than the demo model."""
    return with_perturbed_weights(DEMO_MODEL, tmp_path_factory.mktemp("model") / "icm_perturbed.onnx")


def without_self_test(source: Path, target: Path) -> Path:
    """``source`` without its self-test reference (metadata icm.self_test): a model exported before the
    self-test existed (onnx only)."""
    import onnx

    model = onnx.load(str(source))
    kept = [prop for prop in model.metadata_props if prop.key != contract.META_SELF_TEST]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="session")
def unreferenced_model(tmp_path_factory) -> Path:
    """The demo model without its self-test reference, as it was shipped before the self-test."""
    return without_self_test(DEMO_MODEL, tmp_path_factory.mktemp("model") / "icm_unreferenced.onnx")


@pytest.fixture(scope="session")
def dynamic_batch_model(tmp_path_factory) -> Path:
    """The demo model (same graph and weights as ``onnx_model``) with a dynamic batch dimension."""
    return with_dynamic_batch(DEMO_MODEL, tmp_path_factory.mktemp("model") / "icm_test_dynamic_batch.onnx")


def with_float_input(source: Path, target: Path) -> Path:
    """``source`` (rgb_uint8_nhwc, as graph_upgrade writes it: Cast, Mul, Transpose in front, ArgMax, Cast,
    ReduceMax behind) back in the older rgb_float32_nchw_0_1 form: float32 [B, 3, H, W] in, the full
    membership out. A file as exported before issue 21, to test that such files keep working (onnx only)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    transpose = next(node for node in graph.node if node.op_type == "Transpose"
                     and producers[node.input[0]].op_type == "Mul")  # the front: Cast -> Mul -> Transpose
    front = {id(transpose), id(producers[transpose.input[0]]),
             id(producers[producers[transpose.input[0]].input[0]])}
    argmax = producers[producers[contract.CLUSTER_OUTPUT].input[0]]
    membership = argmax.input[0]
    back = {id(argmax), id(producers[contract.CLUSTER_OUTPUT]), id(producers[contract.FIRMNESS_OUTPUT])}
    kept = [node for node in graph.node if id(node) not in front | back]
    for node in kept:
        node.input[:] = [contract.INPUT_NAME if name == transpose.output[0] else name for name in node.input]
        node.output[:] = [contract.MEMBERSHIP_OUTPUT if name == membership else name for name in node.output]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    unused = [initializer for initializer in graph.initializer if initializer.name not in used]  # the front's scale
    for initializer in unused:
        graph.initializer.remove(initializer)
    info = contract.ModelInfo.from_metadata({prop.key: prop.value for prop in model.metadata_props}, str(source))
    pixels = graph.input[0].type.tensor_type.shape.dim
    batch = pixels[0].dim_param or pixels[0].dim_value
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(contract.INPUT_NAME, TensorProto.FLOAT,
                                                     [batch, 3, info.input_height, info.input_width]))
    depth = graph.output[0]
    del graph.output[:]
    cells = [info.input_height // info.membership_stride, info.input_width // info.membership_stride]
    graph.output.extend([depth, helper.make_tensor_value_info(contract.MEMBERSHIP_OUTPUT, TensorProto.FLOAT,
                                                              [batch, info.num_clusters, *cells])])
    for prop in model.metadata_props:
        if prop.key == contract.META_PIXEL_FORMAT:
            prop.value = contract.PIXEL_FORMAT_FLOAT32
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


@pytest.fixture(scope="session")
def float_input_model(tmp_path_factory) -> Path:
    """The demo model as files were exported before issue 21 (pixel format rgb_float32_nchw_0_1)."""
    return with_float_input(DEMO_MODEL, tmp_path_factory.mktemp("model") / "icm_float_input.onnx")


INTERFACES = Path(__file__).resolve().parents[1] / "interfaces"  # test/interfaces


@pytest.fixture(scope="session")
def vision_msgs_install() -> dict[str, str]:
    """The vision_msgs-layout interface package (test/interfaces/vision_msgs) built with colcon from the
    Kilted wheels: the environment additions that make it importable (AMENT_PREFIX_PATH, PYTHONPATH,
    LD_LIBRARY_PATH, as its install/setup.bash sets them). Built once per source version and kept under
    .venv/var/ (about 25 s); the wheels' hard-coded include folders are redirected during the build by
    test/interfaces/wheel_include_paths.cmake."""
    if shutil.which("cmake") is None or shutil.which("colcon") is None:
        pytest.skip("cmake and colcon are needed to build the vision_msgs-layout interface package")
    for package in ("ament_cmake", "rosidl_default_generators"):
        if not (Path(sys.prefix) / "share" / package).is_dir():
            pytest.skip(f"the ROS build wheels ({package}, requirements.txt) are not in this environment: a vehicle "
                        "stack gets vision_msgs from apt, not from a build here")
    import numpy

    sources = sorted(p for p in INTERFACES.rglob("*") if p.is_file() and p.suffix in (".msg", ".txt", ".xml", ".cmake"))
    digest = hashlib.sha256(sys.version.encode() + b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cache = Path(sys.prefix) / "var" / "icm_depth_ros_test_interfaces" / digest
    prefix = cache / "install" / "vision_msgs"
    if not (prefix / "share" / "vision_msgs" / "package.xml").is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(dir=cache.parent))  # built aside, then renamed: no half-built cache
        finished = subprocess.run(
            ["colcon", "build", "--paths", str(INTERFACES / "vision_msgs"), "--cmake-args",
             f"-DCMAKE_PROJECT_INCLUDE={INTERFACES / 'wheel_include_paths.cmake'}",
             f"-DICM_PYTHON_INCLUDE={sysconfig.get_paths()['include']}", f"-DICM_NUMPY_INCLUDE={numpy.get_include()}",
             f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
            cwd=build, capture_output=True, text=True, env={**os.environ, "AMENT_PREFIX_PATH": sys.prefix})
        assert finished.returncode == 0, f"colcon build of the vision_msgs layout failed:\n{finished.stdout[-3000:]}"
        try:
            build.rename(cache)
        except OSError:  # another session built it meanwhile
            shutil.rmtree(build, ignore_errors=True)
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    def prepend(name: str, value: Path) -> str:
        return os.pathsep.join(filter(None, [str(value), os.environ.get(name, "")]))

    return {"AMENT_PREFIX_PATH": prepend("AMENT_PREFIX_PATH", prefix), "PYTHONPATH": prepend("PYTHONPATH", site),
            "LD_LIBRARY_PATH": prepend("LD_LIBRARY_PATH", prefix / "lib")}


def ros_environment(domain_id: int | None = None, shm: bool = True) -> dict[str, str]:
    """Environment for a node process: private domain (100-200), localhost discovery, optional shared memory."""
    return local_ros_environment(domain_id if domain_id is not None else pick_domain_id(), shm)


class NodeProcess:
    """depth_node in a subprocess; its stderr/stdout go to a log file that tests read."""

    def __init__(self, parameters: dict, env: dict, log_path: Path, command: list[str] | None = None):
        args = []
        for name, value in parameters.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{name}:={text}"]
        command = command or [sys.executable, "-m", "icm_depth_ros.depth_node"]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(command + ["--ros-args", *args], env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, cwd=log_path.parent)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.process.poll() is not None:
                return text in self.log()
            time.sleep(0.1)
        return False

    def stop(self) -> int | None:
        returncode = stop_process(self.process)
        self._log.close()
        return returncode


class GraphProbe:
    """The test's side of the graph: publishes camera input, records every node output keyed by stamp."""

    def __init__(self, domain_id: int, namespace: str = ""):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("graph_probe", namespace=namespace, context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.image_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.label_pub = self.node.create_publisher(Image, "instances", qos_profile_sensor_data)
        self.received: dict[str, dict] = {}
        self.diagnostics: list = []
        for topic, kind in (("depth/image", Image), ("depth/camera_info", CameraInfo),
                            ("depth/instances", PointCloud2), ("depth/colorized", Image),
                            ("depth/instance_markers", MarkerArray)):
            self.received[topic] = {}
            self.node.create_subscription(kind, topic, self._recorder(topic), 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def _recorder(self, topic):
        def record(msg):
            header = msg.markers[-1].header if hasattr(msg, "markers") and msg.markers else getattr(msg, "header", None)
            stamp = (header.stamp.sec, header.stamp.nanosec) if header is not None else (0, 0)
            self.received[topic][stamp] = msg
        return record

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def wait_for_subscriber(self, timeout: float = 30.0) -> bool:
        return self.wait_for(lambda: self.image_pub.get_subscription_count() > 0, timeout)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


def make_camera_info(stamp, width: int, height: int, K: np.ndarray, frame_id: str = "camera_optical"):
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=width, height=height)
    info.header.stamp, info.header.frame_id = stamp, frame_id
    info.k = [float(v) for v in np.asarray(K).ravel()]
    P = np.zeros((3, 4))
    P[:, :3] = K
    info.p = [float(v) for v in P.ravel()]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    return info


def make_image(stamp, array: np.ndarray, encoding: str, frame_id: str = "camera_optical"):
    from sensor_msgs.msg import Image

    from icm_depth_ros.processing.image_conversion import fill_image

    msg = fill_image(Image(), array, encoding)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def stamp_of(seconds: int, nanoseconds: int = 0):
    from builtin_interfaces.msg import Time

    return Time(sec=seconds, nanosec=nanoseconds)


@pytest.fixture
def graph(tmp_path):
    """(start_node(parameters) -> NodeProcess, probe, domain id); everything is stopped afterwards."""
    pytest.importorskip("rclpy")
    domain_id = pick_domain_id()
    env = ros_environment(domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    nodes: list[NodeProcess] = []
    previous_profile = os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)  # the probe uses the same transport
    probe = GraphProbe(domain_id)

    def start_node(parameters: dict, command: list[str] | None = None, node_env: dict | None = None) -> NodeProcess:
        node = NodeProcess(parameters, node_env or env, tmp_path / f"node{len(nodes)}.log", command)
        nodes.append(node)
        return node

    try:
        yield start_node, probe, domain_id
    finally:
        for node in nodes:
            node.stop()
        probe.close()
        if previous_profile is None:
            os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        else:
            os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = previous_profile
