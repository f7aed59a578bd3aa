"""Fixtures for the node tests: a small exported model, a private ROS graph, the node as a process.

The model is a randomly initialised ResNet-18 ICMDepthNet exported once per session at 96x320 (the
depth head gets small random weights so that depth varies over the image). ROS graph tests run the
node in its own process on a private ROS_DOMAIN_ID with localhost-only discovery; the test process
publishes and subscribes through an rclpy context of its own on the same domain.
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

from icm_depth_ros.node.local_graph import FASTDDS_PROFILE, local_ros_environment, stop_process

ROOT = Path(__file__).resolve().parents[3]
MODEL_SIZE = (96, 320)


def export_test_model(folder: Path, name: str, dynamic_batch: bool = False) -> Path:
    """The tests' random ResNet-18 ICMDepthNet (seed 0) exported to ``folder/name`` at MODEL_SIZE."""
    torch = pytest.importorskip("torch")
    from training.exporting.onnx_export import export_onnx
    from training.model import ICMDepthNet

    torch.manual_seed(0)
    model = ICMDepthNet("resnet18", img_size=MODEL_SIZE).eval()
    with torch.no_grad():
        model.predictors[0].head.weight.normal_(0.0, 0.05)  # zero-initialised: depth would be constant
    path = folder / name
    export_onnx(model, path, *MODEL_SIZE, config_name="node_test_random_resnet18", dynamic_batch=dynamic_batch)
    return path


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    return export_test_model(tmp_path_factory.mktemp("model"), "icm_test.onnx")


@pytest.fixture(scope="session")
def dynamic_batch_model(tmp_path_factory) -> Path:
    """The same network as ``onnx_model`` (same seed and weights), exported with a dynamic batch dimension."""
    return export_test_model(tmp_path_factory.mktemp("model"), "icm_test_dynamic_batch.onnx", dynamic_batch=True)


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
    return local_ros_environment(domain_id if domain_id is not None else random.randint(100, 200), shm)


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
    domain_id = random.randint(100, 200)
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
