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
