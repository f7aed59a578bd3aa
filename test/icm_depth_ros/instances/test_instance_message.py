"""PointCloud2 layout of depth/instances, markers, and the statistics / throttle."""

import numpy as np
import pytest

pytest.importorskip("sensor_msgs")
from sensor_msgs.msg import PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from icm_depth_ros.node.frame_flow import FrameStatistics, ProblemThrottle  # noqa: E402
from icm_depth_ros.instances.messages import cloud_to_array, instance_markers, instances_to_cloud  # noqa: E402
from icm_depth_ros.instances.statistics import Instance  # noqa: E402
from icm_depth_ros.instances.tracking import TRACK_DTYPE  # noqa: E402

INSTANCES = [
    Instance(4, -1, (1, 2, 30, 40), 12.5, 9.0, (0.5, -0.2, 12.7), 900, 0.8),
    Instance(9, 13, (50, 60, 70, 80), np.nan, np.nan, (np.nan, np.nan, np.nan), 12, 0.0),
]


def test_cloud_layout_and_round_trip():
    header = Header(frame_id="cam")
    cloud = instances_to_cloud(INSTANCES, header)
    assert cloud.header.frame_id == "cam" and (cloud.height, cloud.width) == (1, 2)
    assert cloud.point_step == 80 and cloud.row_step == 160 and len(cloud.data) == 160 and not cloud.is_dense
    layout = [(f.name, f.offset, f.datatype) for f in cloud.fields]
    assert layout[:4] == [("x", 0, PointField.FLOAT32), ("y", 4, PointField.FLOAT32), ("z", 8, PointField.FLOAT32),
                          ("id", 12, PointField.INT32)]
    assert ("pixel_count", 44, PointField.UINT32) in layout and ("confidence", 48, PointField.FLOAT32) in layout
    rows = cloud_to_array(cloud)
    assert rows["id"].tolist() == [4, 9] and rows["class"].tolist() == [-1, 13]
    assert rows[0]["u1"] == 30 and rows[0]["median"] == pytest.approx(12.5) and np.isnan(rows[1]["median"])
    assert rows["track_id"].tolist() == [0, 0] and np.isnan(rows["ttc"]).all()  # tracking off: no track columns


def test_cloud_carries_the_track_columns_at_the_readme_offsets():
    tracks = np.zeros(2, dtype=TRACK_DTYPE)
    tracks[0] = (12, 14.2, -3.1, 4.6, 0.3, 0.5, 0.7)
    tracks[1] = (0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan)
    cloud = instances_to_cloud(INSTANCES, Header(frame_id="cam"), tracks)
    layout = [(f.name, f.offset, f.datatype) for f in cloud.fields]
    assert layout[13:] == [("track_id", 52, PointField.UINT32), ("range", 56, PointField.FLOAT32),
                           ("range_rate", 60, PointField.FLOAT32), ("ttc", 64, PointField.FLOAT32),
                           ("range_std", 68, PointField.FLOAT32), ("range_rate_std", 72, PointField.FLOAT32),
                           ("ttc_std", 76, PointField.FLOAT32)]
    rows = cloud_to_array(cloud)
    assert rows["track_id"].tolist() == [12, 0] and rows["id"].tolist() == [4, 9]
    assert rows[0]["range_rate"] == pytest.approx(-3.1) and rows[0]["ttc_std"] == pytest.approx(0.7)
    assert np.isnan(rows[1]["range"])
    texts = [m.text for m in instance_markers(INSTANCES, Header(), tracks=tracks).markers if m.type == m.TEXT_VIEW_FACING]
    assert texts == ["#12 14.2 m -3.1 m/s 4.6 s"]
    tracks[0]["ttc"], tracks[0]["range_rate"] = np.inf, 0.3  # not closing: no time to contact in the label
    texts = [m.text for m in instance_markers(INSTANCES, Header(), tracks=tracks).markers if m.type == m.TEXT_VIEW_FACING]
    assert texts == ["#12 14.2 m +0.3 m/s"]


def test_markers_label_distances_and_skip_instances_without_a_position():
    markers = instance_markers(INSTANCES, Header(frame_id="cam")).markers
    assert markers[0].action == markers[0].DELETEALL
    texts = [m.text for m in markers if m.type == m.TEXT_VIEW_FACING]
    assert texts == ["#4 12.5 m"]


def test_statistics_and_throttle():
    stats = FrameStatistics()
    for latency in np.linspace(0.01, 0.1, 100):
        stats.on_input()
        stats.on_output(latency, 0.005)
    stats.on_dropped()
    stats.on_rejected("step")
    summary = stats.summary()
    assert summary["dropped_frames"] == 1 and summary["rejected_frames"] == 1 and summary["processed_frames"] == 100
    assert summary["latency_p50_ms"] == pytest.approx(55, abs=1) and summary["latency_p99_ms"] == pytest.approx(99, abs=1)
    throttle = ProblemThrottle(60.0)
    assert throttle.allow("a") == (True, 0) and throttle.allow("a") == (False, 0) and throttle.allow("b")[0]


def test_every_field_of_every_instance_lands_in_its_row():
    """Many instances with distinct values (NaN, negative class, large counts): each row holds its own instance."""
    rng = np.random.default_rng(0)
    instances = [Instance(int(k), int(rng.integers(-1, 20)), tuple(int(v) for v in rng.integers(0, 1000, 4)),
                          float(rng.random() * 80), np.nan if k % 7 == 0 else float(rng.random() * 80),
                          (float(rng.normal()), np.nan, float(rng.random() * 50)), int(rng.integers(1, 10**6)),
                          float(rng.random())) for k in range(64)]
    rows = cloud_to_array(instances_to_cloud(instances, Header()))
    for row, instance in zip(rows, instances):
        assert (int(row["id"]), int(row["class"])) == (instance.id, instance.class_id)
        assert (int(row["u0"]), int(row["v0"]), int(row["u1"]), int(row["v1"])) == instance.bbox
        np.testing.assert_array_equal([row["x"], row["y"], row["z"], row["median"], row["near"], row["confidence"]],
                                      np.float32([*instance.centroid, instance.median_depth, instance.near_depth,
                                                  instance.confidence]))
        assert int(row["pixel_count"]) == instance.pixel_count
    assert len(rows) == 64
