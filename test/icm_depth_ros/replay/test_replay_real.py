"""replay_eval offline on real drives (../shared/real-samples; skipped where absent): a RealSense T265 ROS 1
bag with neither ground truth nor camera_info (mono8), and a rosbag2 made here, at test time, from three
real KITTI frames with their annotated depth, whose scores are checked against a direct computation."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

REAL = Path(__file__).resolve().parents[4] / "shared" / "real-samples"
T265_BAG = REAL / "rosbag" / "kapture_t265_trimmed_locoffice.bag"
METRIC3D = REAL / "kitti" / "metric3d_kitti_demo"
FRAMES = ("0000000005", "0000000050", "0000000100")
K_METRIC3D = np.array([[707.0493, 0, 604.0814], [0, 707.0493, 180.5066], [0, 0, 1]])  # its test_annotations.json
START_NS = 1_317_000_000 * 1_000_000_000
PERIOD_NS = 100_000_000


def needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real sample {path} not available")


def run(bag, out, model, image, camera_info, depth, **options):
    from icm_depth_ros.replay.bag_reader import TopicSelection
    from icm_depth_ros.replay.offline import ReplayOptions, run_offline

    return run_offline(ReplayOptions(bag=str(bag), topics=TopicSelection(image, camera_info, depth),
                                     model_path=str(model), backend="onnxruntime", out=str(out), progress=False,
                                     **options))


def test_t265_bag_without_ground_truth_or_camera_info(tmp_path, onnx_model, capsys):
    """Real ROS 1 bag: mono8 848 x 800 fisheye images, 3 per camera, no CameraInfo, no depth."""
    from rosbags.highlevel import AnyReader

    needs(T265_BAG)
    out = tmp_path / "out"
    summary = run(T265_BAG, out, onnx_model, "/camera/fisheye1/image_raw", "", "", write_bag=True)
    notes = capsys.readouterr().err
    assert notes.count("no ground-truth topic") == 1 and notes.count("no camera_info topic") == 1
    frames = summary["frames"]
    assert frames["read"] == 3 and frames["scored"] == 0 and frames["predicted_without_ground_truth"] == 3
    assert frames["skipped"] == 0 and summary["metrics"] == {}
    assert "no ground truth" in summary["metrics_unavailable"] and len(summary["run"]["notes"]) == 2
    assert summary["run"]["storage"] == "ros1" and summary["latency"]["total"]["count"] == 3

    report = (out / "report.md").read_text()
    assert "Not available: the drive has no ground truth" in report and "no camera_info topic" in report
    assert "camera_info `-`" in report and "ground truth `-`" in report
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    sample_height = round(800 * 320 / 848)
    assert sheet.shape == (3 * sample_height + 2 * 4, 3 * 320 + 2 * 4, 3)  # three frames: image | depth | instances
    assert not list((out / "plots").glob("frame_*.png"))  # no true-depth panels without ground truth
    with open(out / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["predicted"] * 3 and all(float(row["total_ms"]) > 0 for row in rows)
    with open(out / "instances.csv") as handle:
        instances = list(csv.DictReader(handle))
    assert len(instances) == summary["instances_reported"] > 0
    assert sum(int(row["instances"]) for row in rows) == len(instances)
    for row in instances:  # clusters of the network: no K, so no x / y
        assert np.isnan(float(row["x"])) and np.isnan(float(row["y"])) and 0 < float(row["z"]) <= 80
        assert 0 < float(row["median"]) <= 80 and int(row["class"]) == -1

    with AnyReader([out / "bag"]) as reader:
        topics = reader.topics
        assert topics["/camera/fisheye1/depth/image"].msgcount == 3
        assert topics["/camera/fisheye1/depth/instances"].msgcount == 3
        assert topics["/camera/fisheye1/image_raw"].msgcount == 3 and topics["/camera/fisheye2/image_raw"].msgcount == 3
        for connection, _, raw in reader.messages([c for c in reader.connections
                                                   if c.topic == "/camera/fisheye1/depth/camera_info"]):
            info = reader.deserialize(raw, connection.msgtype)
            assert (info.height, info.width) == (800, 848) and not np.any(info.k)
        depth = [reader.deserialize(raw, c.msgtype) for c, _, raw in
                 reader.messages([c for c in reader.connections if c.topic == "/camera/fisheye1/depth/image"])]
        assert all((m.encoding, m.height, m.width) == ("32FC1", 800, 848) for m in depth)


def write_kitti_bag(path):
    """The three Metric3D KITTI frames as a rosbag2 (mcap): rgb8 image, camera_info, 32FC1 ground truth (NaN
    where the annotated PNG is 0), 10 Hz stamps."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    frames = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {topic: writer.add_connection(topic, f"sensor_msgs/msg/{kind}", typestore=store)
                       for topic, kind in (("/kitti/image", "Image"), ("/kitti/camera_info", "CameraInfo"),
                                           ("/kitti/depth_gt", "Image"))}
        for index, name in enumerate(FRAMES):
            stamp = START_NS + index * PERIOD_NS
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam2")
            rgb = cv2.imread(str(METRIC3D / "rgb" / f"{name}.png"))[..., ::-1].copy()
            png = cv2.imread(str(METRIC3D / "depth" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            gt = np.where(png > 0, png / 256.0, np.nan).astype("<f4")
            height, width = png.shape

            def image(array, encoding, step):
                return T["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding=encoding,
                                                  is_bigendian=0, step=step, data=array.view(np.uint8).ravel())

            info = T["sensor_msgs/msg/CameraInfo"](
                header=header, height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
                k=K_METRIC3D.ravel(), r=np.eye(3).ravel(), p=np.hstack([K_METRIC3D, np.zeros((3, 1))]).ravel(),
                binning_x=0, binning_y=0,
                roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            for topic, msg in (("/kitti/camera_info", info), ("/kitti/image", image(rgb, "rgb8", 3 * width)),
                               ("/kitti/depth_gt", image(gt, "32FC1", 4 * width))):
                writer.write(connections[topic], stamp, store.serialize_cdr(msg, msg.__msgtype__))
            frames.append((rgb, png))
    return frames


def test_kitti_bag_scores_equal_a_direct_computation(tmp_path, onnx_model):
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

    needs(METRIC3D)
    frames = write_kitti_bag(tmp_path / "bag")
    summary = run(tmp_path / "bag", tmp_path / "out", onnx_model, "/kitti/image", "/kitti/camera_info",
                  "/kitti/depth_gt")
    assert summary["frames"]["scored"] == 3 and summary["frames"]["skipped"] == 0
    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), backend="onnxruntime"))
    abs_rel, d1 = [], []
    for rgb, png in frames:
        pred = pipeline.process(rgb, K_METRIC3D).depth.astype(np.float64)
        g = png / 256.0
        counted = (g > 1e-3) & (g < 80.0)  # BTS: 1e-3 < gt < 80, predictions clamped, NaN -> 80
        p = np.clip(np.where(np.isfinite(pred), pred, 80.0), 1e-3, 80.0)[counted]
        g = g[counted]
        abs_rel.append(np.mean(np.abs(p - g) / g))
        d1.append(np.mean(np.maximum(p / g, g / p) < 1.25))
    assert summary["metrics"]["abs_rel"] == pytest.approx(np.mean(abs_rel), rel=1e-9)
    assert summary["metrics"]["d1"] == pytest.approx(np.mean(d1), rel=1e-9)
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["metrics"]["abs_rel"] == pytest.approx(np.mean(abs_rel), rel=1e-9)
    with open(tmp_path / "out" / "instances.csv") as handle:
        instances = list(csv.DictReader(handle))
    assert instances and all(np.isfinite(float(row["x"])) and np.isfinite(float(row["y"])) for row in instances)
