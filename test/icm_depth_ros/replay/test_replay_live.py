"""replay_eval --live against the real depth_node: two processes on a private ROS graph.

The node runs in its own process (private ROS_DOMAIN_ID, localhost discovery); replay_eval --live in
another plays a synthetic drive into it and scores what comes back. Every frame the node answered
must score exactly as the offline mode scores that frame (same pipeline, same model, same pixels).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from conftest import MODEL_SIZE, NodeProcess, ros_environment

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NUM_FRAMES = 6


def frame_rows(path) -> dict[int, dict]:
    with open(path) as handle:
        return {int(row["frame"]): row for row in csv.DictReader(handle)}


@pytest.mark.timeout(120)
def test_live_run_against_the_node(tmp_path, onnx_model):
    pytest.importorskip("rclpy")
    from training.data.synthetic import render_sequence, write_bag

    from icm_depth_ros.replay.bag_reader import TopicSelection
    from icm_depth_ros.replay.offline import ReplayOptions, run_offline

    bag = write_bag(tmp_path / "bag", render_sequence(NUM_FRAMES, MODEL_SIZE, seed=5), storage="mcap")
    env = ros_environment()
    node = NodeProcess({"model_path": onnx_model, "backend": "onnxruntime", "instance_source": "topic",
                        "inference_threads": 1, "publish_colorized": False, "publish_markers": False},
                       env, tmp_path / "node.log",
                       command=[sys.executable, "-m", "icm_depth_ros.depth_node", "--ros-args", "-r", "__ns:=/replay"])
    try:
        assert node.wait_for_log("active", 60), node.log()
        live = subprocess.run(
            [sys.executable, "-m", "icm_depth_ros.replay_eval", str(bag), "--live", "--node-namespace", "/replay",
             "--instances-topic", "/camera/instances", "--rate", "0.5", "--wait-for-node", "20", "--drain", "3",
             "--out", str(tmp_path / "live")],
            env=env, capture_output=True, text=True, timeout=60)
    finally:
        node.stop()
    assert live.returncode == 0, live.stderr + node.log()
    assert "dropped" in live.stdout and "latency p50" in live.stdout and "abs_rel" in live.stdout

    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    counts, frames = summary["live"], summary["frames"]
    assert counts["published"] == NUM_FRAMES and counts["unexpected"] == 0
    assert counts["received"] + counts["dropped"] == NUM_FRAMES
    assert frames["read"] == NUM_FRAMES and frames["scored"] == counts["received"] >= NUM_FRAMES // 2
    assert frames["skipped_by_reason"].get("dropped", 0) == counts["dropped"]
    latency = summary["latency"]["stamp_to_publication"]
    assert latency["count"] == frames["scored"] and 0 < latency["p50_ms"] < 3000
    assert sum(band["instances"] for band in summary["instance_error_by_distance"].values()) > 0

    offline = run_offline(ReplayOptions(bag=str(bag), topics=TopicSelection(
        "/camera/image_raw", "/camera/camera_info", "/camera/depth_gt", "/camera/instances"),
        model_path=str(onnx_model), backend="onnxruntime", out=str(tmp_path / "offline"), progress=False))
    assert offline["frames"]["scored"] == NUM_FRAMES
    live_rows, offline_rows = frame_rows(tmp_path / "live" / "frames.csv"), frame_rows(tmp_path / "offline" / "frames.csv")
    scored = [index for index, row in live_rows.items() if row["status"] == "scored"]
    assert len(scored) == frames["scored"]
    for index in scored:
        for name in ("abs_rel", "rmse", "d1", "d1_instance"):
            assert float(live_rows[index][name]) == pytest.approx(float(offline_rows[index][name]), rel=1e-5), (index, name)


@pytest.mark.timeout(120)
def test_live_run_of_a_real_bag_without_ground_truth_or_camera_info(tmp_path, onnx_model):
    """The real T265 ROS 1 bag (mono8 848 x 800, no CameraInfo, no depth) played into the node: every frame
    the node answers is reported (not scored), with its latency and its instances."""
    from pathlib import Path

    pytest.importorskip("rclpy")
    bag = Path(__file__).resolve().parents[4] / "shared" / "real-samples" / "rosbag" / "kapture_t265_trimmed_locoffice.bag"
    if not bag.is_file():
        pytest.skip(f"real sample {bag} not available")
    env = ros_environment()
    node = NodeProcess({"model_path": onnx_model, "backend": "onnxruntime", "inference_threads": 1,
                        "publish_colorized": False, "publish_markers": False},
                       env, tmp_path / "node.log",
                       command=[sys.executable, "-m", "icm_depth_ros.depth_node", "--ros-args", "-r", "__ns:=/t265"])
    try:
        assert node.wait_for_log("active", 60), node.log()
        live = subprocess.run(
            [sys.executable, "-m", "icm_depth_ros.replay_eval", str(bag), "--live", "--node-namespace", "/t265",
             "--image-topic", "/camera/fisheye1/image_raw", "--camera-info-topic", "", "--depth-topic", "",
             "--rate", "0.05", "--wait-for-node", "20", "--drain", "3", "--out", str(tmp_path / "live")],
            env=env, capture_output=True, text=True, timeout=60)
    finally:
        node.stop()
    assert live.returncode == 0, live.stderr + node.log()
    assert live.stderr.count("no ground-truth topic") == 1 and live.stderr.count("no camera_info topic") == 1
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    counts, frames = summary["live"], summary["frames"]
    assert counts["published"] == 3 and counts["received"] + counts["dropped"] == 3 and counts["received"] >= 1
    assert frames["scored"] == 0 and frames["predicted_without_ground_truth"] == counts["received"]
    assert summary["metrics"] == {} and summary["latency"]["stamp_to_publication"]["count"] == counts["received"]
    with open(tmp_path / "live" / "instances.csv") as handle:
        instances = list(csv.DictReader(handle))
    assert instances and all(row["x"] == "nan" and float(row["z"]) > 0 for row in instances)


@pytest.mark.timeout(180)
def test_live_run_scores_the_nodes_own_tracks(tmp_path, onnx_model):
    """A closing-object drive played into the node (instance labels as its topic): the track columns of
    its depth/instances go to tracks.csv with the bag's truth beside them, scored with motmetrics."""
    pytest.importorskip("rclpy")
    pytest.importorskip("motmetrics", reason="track scoring needs motmetrics, a workstation package (requirements.txt)")
    from training.data.synthetic import write_bag
    from training.data.synthetic.closing import render_closing_drive

    frames = render_closing_drive("lead_braking", MODEL_SIZE, seed=0)[:20]
    bag = write_bag(tmp_path / "bag", frames)
    env = ros_environment()
    node = NodeProcess({"model_path": onnx_model, "backend": "onnxruntime", "instance_source": "topic",
                        "min_instance_pixels": 10, "inference_threads": 1, "publish_colorized": False,
                        "publish_markers": False}, env, tmp_path / "node.log",
                       command=[sys.executable, "-m", "icm_depth_ros.depth_node", "--ros-args", "-r", "__ns:=/replay"])
    try:
        assert node.wait_for_log("active", 60), node.log()
        live = subprocess.run(
            [sys.executable, "-m", "icm_depth_ros.replay_eval", str(bag), "--live", "--node-namespace", "/replay",
             "--instances-topic", "/camera/instances", "--truth-topic", "/camera/instances_truth", "--rate", "0.5",
             "--wait-for-node", "20", "--drain", "3", "--out", str(tmp_path / "live")],
            env=env, capture_output=True, text=True, timeout=90)
    finally:
        node.stop()
    assert live.returncode == 0, live.stderr + node.log()
    assert "replay_eval: tracks: MOTA" in live.stdout
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    tracks = summary["tracks"]
    assert tracks["scored"] and tracks["identity"]["num_frames"] >= summary["live"]["received"] - 2
    lead = int(frames[0]["truth"][frames[0]["truth"]["actor"] == 1]["id"][0])
    with open(tmp_path / "live" / "tracks.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["true_id"] == str(lead)]
    assert len(rows) >= 5 and len({row["track_id"] for row in rows}) == 1  # the label id kept one track
    assert all(row["label"] == str(lead) and row["actor"] == "1" for row in rows)
    recorded = {round(float(f["truth"][f["truth"]["id"] == lead]["range"][0]), 3) for f in frames}
    assert {round(float(row["true_range"]), 3) for row in rows} <= recorded  # truth of the recorded frames
