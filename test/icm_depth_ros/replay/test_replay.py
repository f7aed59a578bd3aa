"""replay_eval offline on synthetic drives the project writes itself: rosbag2 sqlite3/mcap, ROS 1, 32FC1/16UC1.

Each figure is checked against computing it directly: the same frames through DepthPipeline and the
training issue's metric function, plus abs_rel and d1 written out in NumPy here.
"""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from conftest import MODEL_SIZE

NUM_FRAMES = 6
START_NS = 1_600_000_000 * 1_000_000_000  # training.data.synthetic.bag.DEFAULT_START_NS
PERIOD_NS = 100_000_000  # 10 Hz


@pytest.fixture(scope="module")
def drive():
    from training.data.synthetic import render_sequence

    return render_sequence(NUM_FRAMES, MODEL_SIZE, seed=4)


def ground_truth_as_stored(depth: np.ndarray, encoding: str) -> np.ndarray:
    """What the bag holds, in metres, NaN = none (the writer rounds 16UC1 to millimetres, <= 65.535 m)."""
    if encoding == "16UC1":
        millimetres = np.where(depth > 0, np.clip(np.round(depth * 1000.0), 1, 65535), 0)
        return np.where(millimetres > 0, millimetres / 1000.0, np.nan).astype(np.float32)
    return np.where(depth > 0, depth, np.nan).astype(np.float32)


def direct_figures(model, frames, encoding, max_depth=80.0):
    """Per-frame figures computed without replay_eval."""
    from icm_depth_ros.processing.metrics import clamp_prediction, delta1, depth_metrics, evaluation_mask
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(model), backend="onnxruntime"))
    rows = []
    for frame in frames:
        gt = ground_truth_as_stored(frame["depth"], encoding)
        pred = pipeline.process(frame["image"], frame["K"]).depth
        mask = evaluation_mask(gt, None, 1e-3, max_depth)
        p = clamp_prediction(pred, 1e-3, max_depth)[mask].astype(np.float64)
        g = gt[mask].astype(np.float64)
        figures = depth_metrics(clamp_prediction(pred, 1e-3, max_depth), gt, mask)
        # independent of metrics.py: the KITTI definitions (Eigen et al. 2014; docs/training.md, "Metrics")
        assert figures["abs_rel"] == pytest.approx(np.mean(np.abs(p - g) / g), rel=1e-9)
        assert figures["d1"] == pytest.approx(np.mean(np.maximum(p / g, g / p) < 1.25), rel=1e-9)
        figures["d1_instance"] = delta1(clamp_prediction(pred, 1e-3, max_depth), gt, mask & (frame["instances"] > 0))
        rows.append(figures)
    return rows


def run(bag, out, model, **options):
    from icm_depth_ros.replay.bag_reader import TopicSelection
    from icm_depth_ros.replay.offline import ReplayOptions, run_offline

    topics = TopicSelection(options.pop("image", "/camera/image_raw"), options.pop("camera_info", "/camera/camera_info"),
                            options.pop("depth", "/camera/depth_gt"), options.pop("instances", "/camera/instances"))
    return run_offline(ReplayOptions(bag=str(bag), topics=topics, model_path=str(model), backend="onnxruntime",
                                     out=str(out), progress=False, **options))


@pytest.mark.parametrize("storage,encoding", [("sqlite3", "32FC1"), ("mcap", "16UC1"), ("mcap", "32FC1"),
                                              ("sqlite3", "16UC1")])
def test_metrics_match_direct_computation(tmp_path, drive, onnx_model, storage, encoding):
    from training.data.synthetic import write_bag

    bag = write_bag(tmp_path / "bag", drive, storage=storage, gt_encoding=encoding)
    summary = run(bag, tmp_path / "out", onnx_model)
    assert summary["frames"]["read"] == NUM_FRAMES and summary["frames"]["scored"] == NUM_FRAMES
    assert summary["frames"]["skipped"] == 0 and summary["run"]["storage"] == storage
    expected = direct_figures(onnx_model, drive, encoding)
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "log10", "d1", "d2", "d3", "d1_instance"):
        assert summary["metrics"][name] == pytest.approx(np.mean([row[name] for row in expected]), rel=1e-6), name
    assert summary["metrics"]["d1_background"] is not None

    out = tmp_path / "out"
    written = json.loads((out / "metrics.json").read_text())
    assert written["metrics"] == pytest.approx(summary["metrics"])
    with open(out / "frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["frame"]) for row in rows] == list(range(NUM_FRAMES))
    assert [int(row["stamp_ns"]) for row in rows] == [START_NS + i * PERIOD_NS for i in range(NUM_FRAMES)]
    for row, figures in zip(rows, expected):
        assert float(row["abs_rel"]) == pytest.approx(figures["abs_rel"], rel=1e-6)
        assert float(row["total_ms"]) > 0
    report = (out / "report.md").read_text()
    assert "| read | scored | skipped" in report and "plots/error_by_distance.png" in report
    assert (out / "plots" / "abs_rel_over_time.png").stat().st_size > 1000
    assert len(list((out / "plots").glob("frame_*.png"))) == 4
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    frame = cv2.imread(str(next((out / "plots").glob("frame_*.png"))))
    assert sheet.shape[0] == 4 * frame.shape[0] + 3 * 4  # four sample rows, 4-pixel gaps
    assert sheet.shape[1] == (frame.shape[1] - 3 * 4) // 4 * 3 + 2 * 4  # image | depth | instances
    assert "contact_sheet.png" in report
    assert set(summary["instance_error_by_distance"]) == {"0-10m", "10-20m", "20-40m", "40-80m"}
    assert sum(band["instances"] for band in summary["instance_error_by_distance"].values()) > 0
    assert summary["latency"]["total"]["count"] == NUM_FRAMES


def test_per_instance_errors_are_median_depths(tmp_path, drive, onnx_model):
    """Band figures: |median predicted - median true| over each labelled instance, banded by true distance."""
    from training.data.synthetic import write_bag

    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig

    summary = run(write_bag(tmp_path / "bag", drive[:2]), tmp_path / "out", onnx_model)
    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), backend="onnxruntime"))
    errors = {}
    for frame in drive[:2]:
        gt = ground_truth_as_stored(frame["depth"], "32FC1")
        result = pipeline.process(frame["image"], frame["K"], frame["instances"], instance_source="topic")
        predicted = {instance.id: instance.median_depth for instance in result.instances}
        for label in np.unique(frame["instances"]):
            inside = (frame["instances"] == label) & np.isfinite(gt) & (gt > 1e-3) & (gt < 80)
            if label == 0 or not inside.any() or label not in predicted:
                continue
            truth = float(np.median(gt[inside]))
            band = next(f"{lo}-{hi}m" for lo, hi in ((0, 10), (10, 20), (20, 40), (40, 80)) if lo <= truth < hi)
            errors.setdefault(band, []).append(abs(predicted[label] - truth))
    for band, values in errors.items():
        assert summary["instance_error_by_distance"][band]["instances"] == len(values)
        assert summary["instance_error_by_distance"][band]["mean_abs_error_m"] == pytest.approx(np.mean(values), rel=1e-5)


def write_messy_bag(path, frames, storage="mcap"):
    """8 frames at 10 Hz with known faults, plus a second camera (/camera2) that is fine throughout.

    0 ok | 1 no GT | 2 GT 20 ms off | 3 image data truncated | 4 image bytes garbage |
    5 GT encoding mono8 | 6 GT 3 ms off (within tolerance) | 7 ok
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types

    def header(stamp):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                                        frame_id="camera")

    def image(stamp, array, encoding, bytes_per_pixel):
        height, width = array.shape[:2]
        return T["sensor_msgs/msg/Image"](header=header(stamp), height=height, width=width, encoding=encoding,
                                          is_bigendian=0, step=width * bytes_per_pixel,
                                          data=np.ascontiguousarray(array).view(np.uint8).ravel())

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        kinds = {"/camera/image_raw": "Image", "/camera/camera_info": "CameraInfo", "/camera/depth_gt": "Image",
                 "/camera2/image_raw": "Image", "/camera2/depth_gt": "Image"}
        connections = {topic: writer.add_connection(topic, f"sensor_msgs/msg/{kind}", typestore=store)
                       for topic, kind in kinds.items()}

        def write(topic, stamp, msg):
            writer.write(connections[topic], stamp, store.serialize_cdr(msg, msg.__msgtype__))

        for i in range(8):
            frame = frames[i % len(frames)]
            stamp = START_NS + i * PERIOD_NS
            height, width = frame["depth"].shape
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header(stamp), height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5),
                k=np.asarray(frame["K"], np.float64).ravel(), r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0,
                binning_y=0, roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                       do_rectify=False))
            write("/camera/camera_info", stamp, info)
            rgb = image(stamp, frame["image"], "rgb8", 3)
            if i == 3:
                rgb.data = rgb.data[: len(rgb.data) // 2]
            if i == 4:
                writer.write(connections["/camera/image_raw"], stamp, b"\x00\x01\x00\x00garbage")
            else:
                write("/camera/image_raw", stamp, rgb)
            gt = np.where(frame["depth"] > 0, frame["depth"], np.nan).astype("<f4")
            gt_stamp = stamp + {2: 20_000_000, 6: 3_000_000}.get(i, 0)
            if i == 5:
                write("/camera/depth_gt", gt_stamp, image(gt_stamp, np.zeros((height, width), np.uint8), "mono8", 1))
            elif i != 1:
                write("/camera/depth_gt", gt_stamp, image(gt_stamp, gt, "32FC1", 4))
            write("/camera2/image_raw", stamp, image(stamp, frame["image"][:, ::-1], "rgb8", 3))
            write("/camera2/depth_gt", stamp, image(stamp, gt[:, ::-1], "32FC1", 4))
    return path


def test_skipped_frames_are_counted_with_reasons(tmp_path, drive, onnx_model):
    bag = write_messy_bag(tmp_path / "bag", drive)
    summary = run(bag, tmp_path / "out", onnx_model, instances="")
    frames = summary["frames"]
    assert frames["read"] == 8 and frames["scored"] == 3 and frames["skipped"] == 5
    assert frames["skipped_by_reason"] == {"no_ground_truth": 2, "undecodable_image": 2, "undecodable_depth": 1}
    assert "mono8" in frames["skip_examples"]["undecodable_depth"][0]
    with open(tmp_path / "out" / "frames.csv") as handle:
        status = {int(row["frame"]): row["status"] for row in csv.DictReader(handle)}
    assert status == {0: "scored", 1: "no_ground_truth", 2: "no_ground_truth", 3: "undecodable_image",
                      4: "undecodable_image", 5: "undecodable_depth", 6: "scored", 7: "scored"}
    # a looser tolerance pairs frame 2's late ground truth too
    assert run(bag, tmp_path / "out_loose", onnx_model, instances="", stamp_tolerance_s=0.025)["frames"]["scored"] == 4


def test_second_camera_is_chosen_by_topic(tmp_path, drive, onnx_model):
    bag = write_messy_bag(tmp_path / "bag", drive)
    summary = run(bag, tmp_path / "out", onnx_model, image="/camera2/image_raw", depth="/camera2/depth_gt", instances="")
    assert summary["frames"]["read"] == 8 and summary["frames"]["scored"] == 8


def test_missing_topic_names_the_topics_of_the_bag(tmp_path, drive, onnx_model, capsys):
    from training.data.synthetic import write_bag

    from icm_depth_ros.replay_eval import main

    bag = write_bag(tmp_path / "bag", drive[:1])
    code = main([str(bag), "--depth-topic", "/lidar/depth", "--model", str(onnx_model), "--out", str(tmp_path / "o")])
    error = capsys.readouterr().err
    assert code == 2
    assert "'/lidar/depth' (--depth-topic)" in error
    for topic in ("/camera/image_raw", "/camera/camera_info", "/camera/depth_gt", "/camera/instances"):
        assert topic in error
    code = main([str(bag), "--image-topic", "/camera/camera_info", "--model", str(onnx_model), "--out", str(tmp_path / "o")])
    assert code == 2 and "expected sensor_msgs/msg/Image" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), "--model", str(onnx_model), "--out", str(tmp_path / "o")]) == 2


def test_cli_writes_outputs_and_a_bag_with_predictions(tmp_path, drive, onnx_model, capsys):
    from rosbags.highlevel import AnyReader
    from training.data.synthetic import write_bag

    from icm_depth_ros.processing.image_conversion import image_to_array
    from icm_depth_ros.processing.pipeline import DepthPipeline, PipelineConfig
    from icm_depth_ros.replay_eval import main

    bag = write_bag(tmp_path / "bag", drive[:3], storage="mcap")
    out = tmp_path / "out"
    assert main([str(bag), "--instances-topic", "/camera/instances", "--model", str(onnx_model), "--out", str(out),
                 "--write-bag", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "scored 3" in printed and "abs_rel" in printed and "d1" in printed
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "frames.csv", "report.md", "plots", "bag"}
    pipeline = DepthPipeline.from_config(PipelineConfig(model_path=str(onnx_model), backend="onnxruntime"))
    with AnyReader([out / "bag"]) as reader:
        topics = reader.topics
        for topic in ("/camera/depth/image", "/camera/depth/camera_info", "/camera/depth/instances",
                      "/camera/image_raw", "/camera/depth_gt"):
            assert topics[topic].msgcount == 3, topic
        depth_connections = [c for c in reader.connections if c.topic == "/camera/depth/image"]
        for index, (connection, _, raw) in enumerate(reader.messages(depth_connections)):
            msg = reader.deserialize(raw, connection.msgtype)
            assert msg.encoding == "32FC1"
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == START_NS + index * PERIOD_NS
            expected = pipeline.process(drive[index]["image"], drive[index]["K"]).depth
            np.testing.assert_array_equal(image_to_array(msg), expected)


def test_ros1_bag(tmp_path, drive, onnx_model):
    """A ROS 1 bag written with rosbags' rosbag1 Writer is read like a rosbag2."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC)
    T = store.types
    path = tmp_path / "drive.bag"
    with Writer(path) as writer:
        connections = {topic: writer.add_connection(topic, f"sensor_msgs/msg/{kind}", typestore=store)
                       for topic, kind in (("/camera/image_raw", "Image"), ("/camera/camera_info", "CameraInfo"),
                                           ("/camera/depth_gt", "Image"))}
        for i, frame in enumerate(drive):
            stamp = START_NS + i * PERIOD_NS
            header = T["std_msgs/msg/Header"](seq=i, stamp=T["builtin_interfaces/msg/Time"](
                sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="camera")
            height, width = frame["depth"].shape
            millimetres = np.where(frame["depth"] > 0, np.clip(np.round(frame["depth"] * 1000), 1, 65535), 0).astype("<u2")
            messages = {
                "/camera/image_raw": T["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding="rgb8",
                                                                 is_bigendian=0, step=3 * width, data=frame["image"].ravel()),
                "/camera/depth_gt": T["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding="16UC1",
                                                                is_bigendian=0, step=2 * width,
                                                                data=millimetres.view(np.uint8).ravel()),
                "/camera/camera_info": T["sensor_msgs/msg/CameraInfo"](
                    header=header, height=height, width=width, distortion_model="plumb_bob", D=np.zeros(5),
                    K=np.asarray(frame["K"], np.float64).ravel(), R=np.eye(3).ravel(), P=np.zeros(12), binning_x=0,
                    binning_y=0, roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                           do_rectify=False)),
            }
            for topic, msg in messages.items():
                writer.write(connections[topic], stamp, store.serialize_ros1(msg, msg.__msgtype__))
    summary = run(path, tmp_path / "out", onnx_model, instances="", write_bag=True)
    assert summary["run"]["storage"] == "ros1"
    assert summary["frames"]["read"] == NUM_FRAMES and summary["frames"]["scored"] == NUM_FRAMES
    expected = direct_figures(onnx_model, drive, "16UC1")
    assert summary["metrics"]["abs_rel"] == pytest.approx(np.mean([row["abs_rel"] for row in expected]), rel=1e-6)
    assert (tmp_path / "out" / "bag" / "metadata.yaml").exists()


def test_pairing_rules():
    from icm_depth_ros.replay.pairing import FrameAssembler, plan_frames

    ms = 1_000_000
    stamps = {"image": [0, 100 * ms, 200 * ms, None], "depth": [2 * ms, 100 * ms, 260 * ms],
              "camera_info": [0], "instances": [100 * ms]}
    plans, skips, without_instances = plan_frames(stamps, 5 * ms)
    assert [plan.index for plan in plans] == [0, 1]
    assert plans[0].parts == {"image": 0, "depth": 0, "camera_info": 0}
    assert plans[1].parts["camera_info"] == 0  # none within 5 ms: the latest one before the image
    assert plans[1].parts["instances"] == 0 and without_instances == 1
    assert [(skip.index, skip.reason) for skip in skips] == [(2, "no_ground_truth"), (3, "undecodable_image")]

    assembler = FrameAssembler(plans)
    assert assembler.add("camera_info", 0, "K") == []
    assert assembler.add("image", 0, "rgb0") == []
    done = assembler.add("depth", 0, "gt0")
    assert [(plan.index, parts["image"]) for plan, parts in done] == [(0, "rgb0")]
    assert ("camera_info", 0) in assembler.store  # frame 1 still needs it
    assert [plan.index for plan in assembler.fail("image", 1)] == [1]
    assert assembler.add("depth", 1, "gt1") == [] and not assembler.store and not assembler.leftovers()


def test_runtime_imports_neither_torch_nor_training():
    """replay_eval runs where the node runs: no PyTorch, nothing from training/."""
    import subprocess
    import sys

    code = ("import sys, icm_depth_ros.replay_eval, icm_depth_ros.replay.offline, icm_depth_ros.replay.live; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'training')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_out_is_refused_only_where_it_would_write_into_the_bag(tmp_path):
    from icm_depth_ros.replay.command_line import check_output_apart

    (tmp_path / "drive.bag").write_text("a ROS 1 bag")
    (tmp_path / "bag").mkdir()  # a rosbag2 folder
    check_output_apart(str(tmp_path), [tmp_path / "drive.bag"])  # reports beside a bag file
    check_output_apart(str(tmp_path), [tmp_path / "bag"])  # reports beside a rosbag2 folder
    for out, writes_bag in ((tmp_path / "bag" / "report", False), (tmp_path / "bag", False), (tmp_path, True)):
        with pytest.raises(ValueError, match="it would write into the input"):
            check_output_apart(str(out), [tmp_path / "bag"], writes_bag=writes_bag)
