"""The node's self-test at configure (parameter self_test), in a real node process on a private ROS graph:
the shipped model passes, a copy with changed weights is refused (no depth published, one 'self-test
failed:' line) or run with self_test:=warn, a model without a reference runs with a warning."""
from __future__ import annotations

import re

import pytest

from conftest import MODEL_SIZE, make_image, stamp_of

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def messages(log: str, start: str) -> list[str]:
    """The log's messages (the text after rclpy's '[LEVEL] [time] [name]: ') that start with ``start``."""
    found = []
    for line in log.splitlines():
        match = re.match(r"\[(\w+)\] \[[\d.]+\] \[[^\]]+\]: (.*)", line)
        if match and match.group(2).startswith(start):
            found.append((match.group(1), match.group(2)))
    return found


def frame_message(stamp):
    from test_node_graph import synthetic_frame

    return make_image(stamp, synthetic_frame(MODEL_SIZE)["image"], "rgb8")


def test_the_shipped_model_passes_and_serves(graph, onnx_model):
    from test_node_graph import send_until_output

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime"})
    assert node.wait_for_log("active: subscribed", 60), node.log()
    (passed,) = messages(node.log(), "self-test passed: ")
    assert passed[0] == "INFO" and "cluster agreement 100.0%" in passed[1] and "precision fp32" in passed[1]
    assert probe.wait_for_subscriber(), node.log()
    stamp = stamp_of(7000)
    assert send_until_output(probe, stamp, frame_message(stamp)), node.log()


def test_a_model_with_changed_weights_is_refused_and_publishes_nothing(graph, perturbed_model):
    start_node, probe, _ = graph
    node = start_node({"model_path": perturbed_model, "backend": "onnxruntime"})
    stamp = stamp_of(7100)
    message = frame_message(stamp)
    for _ in range(20):  # frames offered while it starts: none may come back
        probe.image_pub.publish(message)
        probe.spin(0.25)
        if node.process.poll() is not None:
            break
    node.process.wait(timeout=60)
    assert node.process.returncode == 1, node.log()
    probe.spin(0.5)
    assert probe.received["depth/image"] == {} and probe.received["depth/instances"] == {}
    log = node.log()
    (failed,) = messages(log, "self-test failed:")
    level, text = failed
    assert level == "ERROR"
    assert re.search(r"depth abs_rel [\d.e+-]+, max relative error [\d.e+-]+, cluster agreement [\d.]+%", text), text
    assert "tolerance for fp32: abs_rel <= 0.005" in text and "onnxruntime 1." in text and "precision fp32" in text
    assert "icm_perturbed.onnx" in text and "Try: " in text
    assert not messages(log, "active: subscribed") and not messages(log, "configured: ")


def test_self_test_warn_logs_the_failure_and_runs(graph, perturbed_model):
    from test_node_graph import send_until_output

    start_node, probe, _ = graph
    node = start_node({"model_path": perturbed_model, "backend": "onnxruntime", "self_test": "warn"})
    assert node.wait_for_log("active: subscribed", 60), node.log()
    (failed,) = messages(node.log(), "self-test failed:")
    assert failed[0] == "WARN" and failed[1].endswith("(self_test: warn, so the model runs anyway)")
    assert probe.wait_for_subscriber(), node.log()
    stamp = stamp_of(7200)
    assert send_until_output(probe, stamp, frame_message(stamp)), node.log()


def test_a_model_without_a_reference_warns_and_runs(graph, unreferenced_model):
    from test_node_graph import send_until_output

    start_node, probe, _ = graph
    node = start_node({"model_path": unreferenced_model, "backend": "onnxruntime"})
    assert node.wait_for_log("active: subscribed", 60), node.log()
    (warning,) = messages(node.log(), "self-test: ")
    assert warning[0] == "WARN" and "carries no reference" in warning[1] and "cannot be verified" in warning[1]
    assert not messages(node.log(), "self-test passed") and not messages(node.log(), "self-test failed")
    assert probe.wait_for_subscriber(), node.log()
    stamp = stamp_of(7300)
    assert send_until_output(probe, stamp, frame_message(stamp)), node.log()
