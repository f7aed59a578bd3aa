"""Tracking in depth_node: its parameters, and a real node process publishing the track columns and markers."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MODEL_SIZE, make_camera_info, make_image, stamp_of
from icm_depth_ros.node.node_parameters import PARAMETERS, parse_parameters


def values(**changes) -> dict:
    result = {name: default for name, (default, _, _) in PARAMETERS.items()}
    result.update(model_path="/m.onnx", **changes)
    return result


def test_tracking_parameters_become_the_tracker_config():
    _, settings = parse_parameters(values(track_confirm_hits=2, track_gate_m=4.5, track_jerk_std=2.0))
    assert settings.tracker.confirm_hits == 2 and settings.tracker.gate_m == 4.5
    assert settings.tracker.jerk_std == 2.0 and settings.tracker.max_misses == 5
    _, settings = parse_parameters(values(tracking=False))
    assert settings.tracker is None


@pytest.mark.parametrize("name, value, message", [
    ("track_gate_m", -1.0, "parameter track_gate_m=-1.0 must be > 0"),
    ("track_confirm_hits", 0, "parameter track_confirm_hits=0 must be >= 1"),
    ("track_min_iou", 0.0, r"parameter track_min_iou=0.0 must be in \(0, 1\]"),
    ("track_range_noise_fraction", 0.0, "parameter track_range_noise_fraction=0.0 must be > 0"),
])
def test_a_bad_tracking_parameter_is_refused_with_its_name_and_value(name, value, message):
    with pytest.raises(ValueError, match=message):
        parse_parameters(values(**{name: value}))


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_publishes_tracks_the_offline_tracker_gives(graph, onnx_model):
    """Six frames of a synthetic drive with its instance labels: every label keeps one track id from the
    frame its track is confirmed, and the published track columns are what the ROS-free tracker gives for
    the same stamps on the offline pipeline's instances; the markers carry the track labels."""
    from training.data.synthetic import render_sequence

    from icm_depth_ros.instances.messages import cloud_to_array
    from icm_depth_ros.instances.tracking import InstanceTracker, TrackerConfig, TrackIds
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig
    from test_node_graph import send_until_output

    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "instance_source": "topic",
                       "min_instance_pixels": 20, "instance_timeout_s": 1.0, "track_confirm_hits": 2})
    assert node.wait_for_log("active", 60), node.log()
    assert probe.wait_for_subscriber(), node.log()
    frames = render_sequence(6, MODEL_SIZE, seed=7)
    offline = DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), backend="onnxruntime",
                                                       min_instance_pixels=20))
    tracker = InstanceTracker(TrackerConfig(confirm_hits=2), TrackIds(), stable_labels=True)
    published = []
    for index, frame in enumerate(frames):
        stamp = stamp_of(4000, frame["stamp_ns"])
        labels = frame["instances"]
        info = make_camera_info(stamp, MODEL_SIZE[1], MODEL_SIZE[0], frame["K"])
        assert send_until_output(probe, stamp, make_image(stamp, frame["image"], "rgb8"), info,
                                 make_image(stamp, labels, "mono16")), node.log()
        rows = cloud_to_array(probe.received["depth/instances"][(4000, frame["stamp_ns"])])
        result = offline.process(frame["image"], frame["K"], labels.astype(np.int32), "topic")
        expected = tracker.update(4000 + frame["stamp_ns"] * 1e-9, result.instances, result.depth.shape)
        assert rows["id"].tolist() == [instance.id for instance in result.instances]
        for name in expected.dtype.names:
            np.testing.assert_allclose(rows[name], expected[name], rtol=1e-3, atol=1e-4, err_msg=f"frame {index} {name}")
        published.append(rows)
    assert (published[0]["track_id"] == 0).all() and np.isnan(published[0]["range"]).all()  # tentative
    track_of_label = {}
    for rows in published[1:]:
        for row in rows[rows["track_id"] > 0]:
            assert track_of_label.setdefault(int(row["id"]), int(row["track_id"])) == row["track_id"]
            assert row["range_std"] > 0 and row["range_rate_std"] > 0 and np.isfinite(row["range"])
    assert len(track_of_label) >= 2 and len(set(track_of_label.values())) == len(track_of_label)
    last = published[-1]
    markers = probe.received["depth/instance_markers"]
    assert probe.wait_for(lambda: (4000, frames[-1]["stamp_ns"]) in markers, 5.0)
    texts = {m.text for m in markers[(4000, frames[-1]["stamp_ns"])].markers if m.type == m.TEXT_VIEW_FACING}
    tracked = last[(last["track_id"] > 0) & np.isfinite(last["x"])]
    for row in tracked:
        assert any(text.startswith(f"#{row['track_id']} {row['range']:.1f} m {row['range_rate']:+.1f} m/s")
                   for text in texts), (row, texts)


DETECTIONS_LISTENER = """
import json, sys, time
import rclpy
from vision_msgs.msg import Detection3DArray

rclpy.init()
node = rclpy.create_node("detections_listener")
received = {}

def keep(msg):
    received[f"{msg.header.stamp.sec}.{msg.header.stamp.nanosec}"] = [
        {"id": d.id, "center": [d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z],
         "size": [d.bbox.size.x, d.bbox.size.y, d.bbox.size.z], "class_id": d.results[0].hypothesis.class_id,
         "score": d.results[0].hypothesis.score, "covariance": list(d.results[0].pose.covariance),
         "frame_id": d.header.frame_id} for d in msg.detections]

node.create_subscription(Detection3DArray, "depth/detections", keep, 10)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and node.count_publishers("depth/detections") == 0:
    rclpy.spin_once(node, timeout_sec=0.1)
for _ in range(10):  # the node's side of the match settles too
    rclpy.spin_once(node, timeout_sec=0.1)
open(sys.argv[1] + ".ready", "w").close()
while time.monotonic() < deadline and len(received) < int(sys.argv[3]):
    rclpy.spin_once(node, timeout_sec=0.1)
with open(sys.argv[1], "w") as handle:
    json.dump(received, handle)
"""


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_publishes_detections_in_the_vision_msgs_layout(graph, onnx_model, vision_msgs_install, tmp_path):
    """With vision_msgs importable (the interface package built from test/interfaces), depth/detections
    carries one Detection3D per tracked instance: id = track id, centre = centroid, size = box at range,
    class and score, covariance from range_std; read by a separate process with the built package."""
    import json
    import subprocess
    import sys

    from training.data.synthetic import render_sequence

    from conftest import ros_environment
    from icm_depth_ros.instances.messages import cloud_to_array
    from test_node_graph import send_until_output

    start_node, probe, domain_id = graph
    env = {**ros_environment(domain_id), **vision_msgs_install}
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime", "instance_source": "topic",
                       "min_instance_pixels": 20, "instance_timeout_s": 1.0, "track_confirm_hits": 1,
                       "instance_label_divisor": 1000}, node_env=env)
    frames = render_sequence(3, MODEL_SIZE, seed=7)
    received_path = tmp_path / "detections.json"
    listener = subprocess.Popen([sys.executable, "-c", DETECTIONS_LISTENER, str(received_path), "90", str(len(frames))],
                                env=env)
    try:
        assert node.wait_for_log("active", 60), node.log()
        assert "vision_msgs is not importable" not in node.log()
        assert probe.wait_for_subscriber(), node.log()
        ready = received_path.with_name(received_path.name + ".ready")
        assert probe.wait_for(ready.is_file, 60), "the listener did not see the node's depth/detections"
        clouds = {}
        for frame in frames:
            stamp = stamp_of(5000, frame["stamp_ns"])
            labels = (frame["instances"].astype(np.int32) + 13000) * (frame["instances"] > 0)  # panoptic: class 13
            info = make_camera_info(stamp, MODEL_SIZE[1], MODEL_SIZE[0], frame["K"])
            assert send_until_output(probe, stamp, make_image(stamp, frame["image"], "rgb8"), info,
                                     make_image(stamp, labels, "32SC1")), node.log()
            clouds[f"5000.{frame['stamp_ns']}"] = cloud_to_array(probe.received["depth/instances"][(5000, frame["stamp_ns"])])
        try:
            assert listener.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:
            pytest.fail(f"the listener did not get {len(frames)} Detection3DArray messages; node log:\n{node.log()[-3000:]}")
    finally:
        if listener.poll() is None:
            listener.kill()
    received = json.loads(received_path.read_text())
    assert set(received) == set(clouds)
    K = frames[0]["K"]
    for stamp, rows in clouds.items():
        tracked = rows[(rows["track_id"] > 0) & np.isfinite(rows["x"])]
        detections = {d["id"]: d for d in received[stamp]}
        assert sorted(detections) == sorted(str(t) for t in tracked["track_id"]) and tracked.size
        for row in tracked:
            d = detections[str(row["track_id"])]
            np.testing.assert_allclose(d["center"], [row["x"], row["y"], row["z"]], rtol=1e-5)
            np.testing.assert_allclose(d["size"][:2], [(row["u1"] - row["u0"]) * row["range"] / K[0, 0],
                                                       (row["v1"] - row["v0"]) * row["range"] / K[1, 1]], rtol=1e-4)
            assert d["class_id"] == "13" and d["score"] == pytest.approx(float(row["confidence"]), rel=1e-6)
            ray = np.array([row["x"], row["y"], row["z"]], dtype=np.float64) / row["z"]
            covariance = np.reshape(d["covariance"], (6, 6))
            np.testing.assert_allclose(covariance[:3, :3], np.outer(ray, ray) * float(row["range_std"]) ** 2, rtol=1e-4)
            assert d["frame_id"] == "camera_optical"


@pytest.mark.ros
@pytest.mark.slow
def test_without_vision_msgs_the_node_says_so_once_and_offers_no_detections(graph, onnx_model):
    start_node, probe, _ = graph
    node = start_node({"model_path": onnx_model, "backend": "onnxruntime"})
    assert node.wait_for_log("active", 60), node.log()
    assert node.log().count("vision_msgs is not importable: depth/detections") == 1
    assert probe.wait_for(lambda: any(name.endswith("depth/instances") for name, _ in probe.node.get_topic_names_and_types()), 20)
    assert not any(name.endswith("depth/detections") for name, _ in probe.node.get_topic_names_and_types())
