"""Parameters as a ROS user meets them, on a real node process: the params file's types and names, and
run-time sets through the node's set_parameters service (what `ros2 param set` calls)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import MODEL_SIZE, make_image, stamp_of

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def params_file(tmp_path, lines: list[str]):
    path = tmp_path / "params.yaml"
    path.write_text("/**:\n  ros__parameters:\n" + "".join(f"    {line}\n" for line in lines))
    return path


def node_command(path) -> list[str]:
    return [sys.executable, "-m", "icm_depth_ros.depth_node", "--ros-args", "--params-file", str(path)]


def call(probe, client, request):
    assert probe.wait_for(client.service_is_ready, 60)
    future = client.call_async(request)
    assert probe.wait_for(future.done, 30)
    return future.result()


def set_parameter(probe, client, name, value):
    """One SetParameters call, as `ros2 param set /depth_node NAME VALUE` makes it -> (successful, reason)."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    result = call(probe, client, SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
    return result.results[0].successful, result.results[0].reason


def test_params_file_integer_for_a_double_and_a_misspelled_name(graph, onnx_model, tmp_path):
    from rcl_interfaces.srv import GetParameters

    start_node, probe, _ = graph
    path = params_file(tmp_path, ["max_depth: 80", "resize_polcy: letterbox"])
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime"}, command=node_command(path))
    assert node.wait_for_log("active", 60), node.log()
    assert "parameter 'resize_polcy' is not a depth_node parameter and is ignored; did you mean 'resize_policy'?" \
        in node.log()
    client = probe.node.create_client(GetParameters, "/depth_node/get_parameters")
    value = call(probe, client, GetParameters.Request(names=["max_depth"])).values[0]
    assert value.type == 3 and value.double_value == 80.0  # ParameterType.PARAMETER_DOUBLE
    assert "Traceback" not in node.log()


def test_params_file_value_of_the_wrong_type_is_one_line_and_exit_1(graph, onnx_model, tmp_path):
    start_node, _, _ = graph
    path = params_file(tmp_path, ['input_qos_depth: "one"'])
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime"}, command=node_command(path))
    node.process.wait(timeout=60)
    assert node.process.returncode == 1
    log = node.log()
    assert "Traceback" not in log and "InvalidParameterTypeException" not in log
    (line,) = [line for line in log.splitlines() if "input_qos_depth" in line]
    assert "[FATAL]" in line and "parameter input_qos_depth='one' has type string; it must be integer" in line


def test_run_time_sets_are_checked_applied_live_or_refused_with_the_way_to_apply(graph, onnx_model):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rcl_interfaces.srv import SetParameters

    from icm_depth_ros.processing.image_conversion import image_to_array

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime"})
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    client = probe.node.create_client(SetParameters, "/depth_node/set_parameters")
    pixels = np.random.default_rng(1).integers(0, 255, (2 * MODEL_SIZE[0], 2 * MODEL_SIZE[1], 3), dtype=np.uint8)
    second = 100

    def depth_of_next_frame() -> np.ndarray:
        nonlocal second
        for _ in range(20):  # best effort may lose one
            second += 1
            probe.image_pub.publish(make_image(stamp_of(second), pixels, "rgb8"))
            if probe.wait_for(lambda: (second, 0) in probe.received["depth/image"], 2.0):
                return image_to_array(probe.received["depth/image"][(second, 0)])
        raise AssertionError(f"no depth for frame {second}\n{node.log()}")

    before = depth_of_next_frame()
    assert before.shape == (2 * MODEL_SIZE[0], 2 * MODEL_SIZE[1])  # output_resolution input: the camera grid

    # Invalid values are refused at once, with the reason.
    ok, reason = set_parameter(probe, client, "resize_policy", "stretch")
    assert not ok and "resize_policy='stretch' is not one of resize, crop, letterbox" in reason
    ok, reason = set_parameter(probe, client, "max_depth", -5.0)
    assert not ok and "must be >= 0" in reason

    # Live: the depth range applies from the next frame.
    assert set_parameter(probe, client, "min_depth", 1.0)[0] and set_parameter(probe, client, "max_depth", 2.0)[0]
    live = depth_of_next_frame()
    finite = live[np.isfinite(live)]
    assert finite.size and finite.min() >= 1.0 and finite.max() <= 2.0
    assert "applied live: max_depth=2.0" in node.log()

    # Configure-time: refused while configured, with the transitions that apply it; they do.
    ok, reason = set_parameter(probe, client, "output_resolution", "model")
    assert not ok and "takes effect at configure: deactivate, cleanup, configure, activate" in reason
    change = probe.node.create_client(ChangeState, "/depth_node/change_state")
    for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
        assert call(probe, change, ChangeState.Request(transition=Transition(id=transition))).success, node.log()
    assert set_parameter(probe, client, "output_resolution", "model")[0]
    assert "output_resolution='model' will be used at configure" in node.log()
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        assert call(probe, change, ChangeState.Request(transition=Transition(id=transition))).success, node.log()
    assert probe.wait_for_subscriber(), node.log()
    assert depth_of_next_frame().shape == MODEL_SIZE  # the model's grid now
    assert "Traceback" not in node.log()


def test_node_says_when_instance_statistics_run_without_the_compiled_kernel(graph, onnx_model, tmp_path):
    """A source tree that was never built still works, and the log says it is the slow path and how to fix it;
    a built package says nothing."""
    start_node, probe, _ = graph
    unbuilt = [sys.executable, "-c", "import sys; sys.modules['icm_depth_ros.instances._instance_kernel'] = None; "
               "from icm_depth_ros.depth_node import main; main()"]
    parameters = {"model_path": onnx_model, "backend": "onnxruntime"}
    node = start_node(parameters, command=unbuilt)
    assert node.wait_for_log("active", 60), node.log()
    assert ("instance statistics: the compiled kernel icm_depth_ros/instances/_instance_kernel is not built, using NumPy "
            "(same numbers, 2-3x slower); build the package (colcon build, or pip install -e .)") in node.log()
    assert probe.wait_for_subscriber(), node.log()
    rgb = np.random.default_rng(0).integers(0, 255, (*MODEL_SIZE, 3), dtype=np.uint8)
    for seconds in range(1, 40):  # until the instances of one frame come back (the first frames may be lost)
        probe.image_pub.publish(make_image(stamp_of(seconds), rgb, "rgb8"))
        if probe.wait_for(lambda: len(probe.received["depth/instances"]) > 0, 0.5):
            break
    assert probe.received["depth/instances"], node.log()
    node.stop()
    built = start_node(parameters)
    assert built.wait_for_log("active", 60), built.log()
    assert "compiled kernel" not in built.log()
