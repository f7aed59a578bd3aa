"""A real depth_node process whose CUDA context is lost while serving (the bindings doubles: cudaStreamSynchronize
fails from the third frame on): the error is logged once with its traceback, /diagnostics goes ERROR naming it,
and after FAILURES_BEFORE_STOP failed calls the node says it stops serving and exits with status 3."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_camera_info, make_image, stamp_of
from icm_depth_ros.node.inference_worker import EXIT_BACKEND_FAILED, FAILURES_BEFORE_STOP

pytestmark = [pytest.mark.ros, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # test/: the tensorrt_double package
from tensorrt_double.models import HEIGHT, WIDTH, shipped_model_and_variants  # noqa: E402
from tensorrt_double.setup_bindings import node_environment, run_scenario, skip_without_runtime  # noqa: E402

RUNTIME = ("11.4.0.106", "13.5.0")
FAILED = "CudaError: CUDA cudaStreamSynchronize failed: cudaErrorLaunchFailure"


def test_a_lost_cuda_context_stops_the_node_with_one_line_and_status_3(graph, tmp_path):
    from conftest import ros_environment
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    version, cuda_version = RUNTIME
    skip_without_runtime(version, cuda_version)
    files = shipped_model_and_variants(tmp_path / "model")
    engine = tmp_path / "model" / "model.engine"
    built = run_scenario(version, cuda_version, [{"kind": "open", "model_path": str(engine), "precision": "fp16",
                                                  "allow_build": True, "input_shape": [1, 3, HEIGHT, WIDTH]}])
    assert built["results"][0]["ok"], built["results"][0].get("traceback")
    start_node, probe, domain_id = graph
    command, env = node_environment(version, cuda_version, ros_environment(domain_id), batch_log=tmp_path / "b.log")
    request = json.loads(env["ICM_TENSORRT_DOUBLE"])
    request.update(cuda_failures={"cudaStreamSynchronize": "cudaErrorLaunchFailure"},
                   cuda_failures_after={"cudaStreamSynchronize": 2})  # two frames run, then the context is lost
    env["ICM_TENSORRT_DOUBLE"] = json.dumps(request)
    node = start_node({"model_path": str(engine), "onnx_path": str(files["fp32"]), "backend": "tensorrt",
                       "precision": "fp16", "instance_source": "none", "diagnostics_period_s": 0.2},
                      command=command, node_env=env)
    image = probe.node.create_publisher(Image, "image", qos_profile_sensor_data)
    info = probe.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    depths = []
    probe.node.create_subscription(Image, "depth/image", depths.append, 10)
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for(lambda: image.get_subscription_count() > 0, 60), node.log()
    pixels = np.random.default_rng(3).integers(0, 255, (HEIGHT * 4, WIDTH * 4, 3), dtype=np.uint8)
    K = np.array([[100.0, 0, WIDTH * 2], [0, 100.0, HEIGHT * 2], [0, 0, 1]])
    for index in range(4 * FAILURES_BEFORE_STOP):
        if node.process.poll() is not None:
            break
        stamp = stamp_of(500 + index)
        info.publish(make_camera_info(stamp, WIDTH * 4, HEIGHT * 4, K))
        image.publish(make_image(stamp, pixels, "rgb8"))
        probe.spin(0.1)
    node.process.wait(timeout=30)
    probe.spin(0.5)
    log = node.log()
    assert node.process.returncode == EXIT_BACKEND_FAILED, log
    assert log.count(f"inference failed in the backend ({FAILED})") == 1, log  # once, not per frame
    assert "Traceback (most recent call last)" in log
    stopped = (f"stopped serving: the backend failed {FAILURES_BEFORE_STOP} calls in a row (last: {FAILED}); a lost "
               "CUDA context does not recover inside a process: restart the node")
    assert log.count(stopped) == 1, log
    assert f"depth_node exits with status {EXIT_BACKEND_FAILED}" in log
    assert "dropped input" not in log
    assert len(depths) == 2  # the frames before the context was lost
    from diagnostic_msgs.msg import DiagnosticStatus

    messages = [status.message for array in probe.diagnostics for status in array.status
                if status.level == DiagnosticStatus.ERROR]
    assert any(message.startswith("backend failing (") and message.endswith(FAILED) for message in messages), messages
    assert any(message == stopped for message in messages), messages


BUILD_S = 6.0  # the double's engine build, standing in for minutes on a GPU


def test_an_engine_build_does_not_block_the_nodes_executor(graph, tmp_path):
    """autostart with allow_engine_build and no engine: configure fails fast ("building ... in the background"),
    the lifecycle services answer during the build, and the node configures and activates once it is done."""
    from conftest import ros_environment
    from lifecycle_msgs.srv import GetState

    version, cuda_version = RUNTIME
    skip_without_runtime(version, cuda_version)
    files = shipped_model_and_variants(tmp_path / "model")
    engine = tmp_path / "model" / "model.engine"
    start_node, probe, domain_id = graph
    command, env = node_environment(version, cuda_version, ros_environment(domain_id), batch_log=tmp_path / "b.log")
    env["ICM_TENSORRT_DOUBLE"] = json.dumps({**json.loads(env["ICM_TENSORRT_DOUBLE"]), "build_s": BUILD_S})
    node = start_node({"model_path": str(engine), "onnx_path": str(files["fp32"]), "backend": "tensorrt",
                       "precision": "fp16", "allow_engine_build": True}, command=command, node_env=env)
    assert node.wait_for_log("in the background: 0 s so far; configure again when it is done", 60), node.log()
    client = probe.node.create_client(GetState, "/depth_node/get_state")
    assert client.wait_for_service(timeout_sec=10), node.log()
    future = client.call_async(GetState.Request())
    assert probe.wait_for(future.done, 3.0), node.log()  # answered while the engine builds
    assert future.result().current_state.label == "unconfigured"
    assert "active:" not in node.log()
    assert node.wait_for_log("active:", 60), node.log()
    log = node.log()
    assert "built in the background in " in log and f"tensorrt {version} (model.engine, batch 1)" in log
    assert log.count("building TensorRT engine") == 2  # the warning when it starts, configure's one line
    assert node.process.poll() is None
    assert json.loads(engine.with_name("model.engine.fingerprint.json").read_text())["precision"] == "fp16"
