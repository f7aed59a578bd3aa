"""The synthetic CLI's Cityscapes-DVPS files and rosbag2, read back with the project's loader and rosbags."""
from __future__ import annotations

import json

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore

from training.data import CityscapesDVPS, build_dataset
from training.data.preview import main as preview_main
from training.data.synthetic import render_sequence, write_bag
from training.data.synthetic.__main__ import VAL_SCENE_OFFSET, main as synthetic_main
from training.data.synthetic.dataset import scene_seed

SIZE = (48, 160)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    assert synthetic_main(["--out", str(out), "--frames", "4", "--size", "48x160", "--seed", "3",
                           "--clip-length", "2", "--val-frames", "3"]) == 0
    return out


def read_bag(path):
    messages = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            messages.setdefault(connection.topic, []).append((timestamp, connection.msgtype, msg))
    return messages


def test_cli_writes_cityscapes_layout_that_the_loader_reads(written):
    train = build_dataset("synthetic", written, "train", augment=False)
    val = build_dataset("synthetic", written, "val", augment=False)
    assert isinstance(val, CityscapesDVPS) and (len(train), len(val)) == (4, 3)
    assert sorted(p.name for p in (written / "video_sequence" / "train").glob("*_leftImg8bit.png"))[:3] == [
        "000000_000000_synthetic_000000_000000_leftImg8bit.png", "000000_000001_synthetic_000000_000001_leftImg8bit.png",
        "000001_000000_synthetic_000001_000000_leftImg8bit.png"]
    frames = render_sequence(3, SIZE, scene_seed(3, VAL_SCENE_OFFSET))
    for item, frame in zip(val, frames):
        depth = frame["depth"]
        keep = (depth > 0) & (depth <= 80.0)
        np.testing.assert_array_equal(item["valid"][0].numpy(), keep)
        np.testing.assert_allclose(item["depth"][0].numpy()[keep], depth[keep], atol=0.5 / 256)  # PNG quantisation
        np.testing.assert_array_equal(item["instances"][0].numpy() > 0, frame["instances"] > 0)
        np.testing.assert_allclose(item["intrinsics"].numpy(), frame["K"], rtol=1e-6)
        np.testing.assert_array_equal((item["image"].permute(1, 2, 0).numpy() * 255).round(), frame["image"])
    classes = json.loads((written / "instance_classes.json").read_text())["val"]
    assert classes and set(classes.values()) <= set(range(11, 19))


def test_bag_holds_the_val_sequence_with_shared_stamps(written):
    messages = read_bag(written / "bag")
    assert set(messages) == {"/camera/image_raw", "/camera/camera_info", "/camera/depth_gt", "/camera/instances"}
    frames = render_sequence(3, SIZE, scene_seed(3, VAL_SCENE_OFFSET))
    stamps = [t for t, _, _ in messages["/camera/image_raw"]]
    assert np.diff(stamps).tolist() == [100_000_000, 100_000_000]
    for topic, entries in messages.items():
        assert [t for t, _, _ in entries] == stamps
        for t, _, msg in entries:
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t
            assert msg.header.frame_id == "camera_optical_frame"
    for i, frame in enumerate(frames):
        image = messages["/camera/image_raw"][i][2]
        assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 48, 160, 480)
        np.testing.assert_array_equal(image.data.reshape(48, 160, 3), frame["image"])
        depth_msg = messages["/camera/depth_gt"][i][2]
        assert depth_msg.encoding == "32FC1" and depth_msg.step == 160 * 4
        depth = depth_msg.data.view("<f4").reshape(48, 160)
        np.testing.assert_array_equal(np.isnan(depth), frame["depth"] == 0)  # REP 117: NaN = no measurement
        np.testing.assert_array_equal(depth[frame["depth"] > 0], frame["depth"][frame["depth"] > 0])
        labels = messages["/camera/instances"][i][2]
        assert labels.encoding == "mono16"
        np.testing.assert_array_equal(labels.data.view("<u2").reshape(48, 160), frame["instances"])
        info = messages["/camera/camera_info"][i][2]
        np.testing.assert_allclose(info.k.reshape(3, 3), frame["K"])
        assert (info.height, info.width, info.distortion_model) == (48, 160, "plumb_bob")


def test_write_bag_millimetre_ground_truth_in_mcap(tmp_path):
    frames = render_sequence(2, SIZE, seed=5)
    write_bag(tmp_path / "bag_mm", frames, storage="mcap", gt_encoding="16UC1")
    assert list((tmp_path / "bag_mm").glob("*.mcap"))
    depth_msgs = read_bag(tmp_path / "bag_mm")["/camera/depth_gt"]
    assert depth_msgs[0][1] == "sensor_msgs/msg/Image" and depth_msgs[0][2].encoding == "16UC1"
    mm = depth_msgs[1][2].data.view("<u2").reshape(SIZE)
    truth = frames[1]["depth"]
    near = (truth > 0) & (truth < 65.0)
    np.testing.assert_array_equal(mm == 0, truth == 0)
    np.testing.assert_allclose(mm[near] / 1000.0, truth[near], atol=0.0005 + 1e-6)
    with pytest.raises(FileExistsError, match="bag_mm"):
        write_bag(tmp_path / "bag_mm", frames)
    with pytest.raises(ValueError, match="gt_encoding"):
        write_bag(tmp_path / "other", frames, gt_encoding="mono8")


def test_preview_writes_contact_sheet(written, tmp_path):
    import cv2
    assert preview_main([str(written), "--split", "val", "--out", str(tmp_path / "sheet.png"), "--count", "2"]) == 0
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape == (2 * 48 + 4, 3 * 160 + 8, 3)
    rgb = sheet[:48, :160, ::-1]
    first = render_sequence(3, SIZE, scene_seed(3, VAL_SCENE_OFFSET))[0]
    np.testing.assert_array_equal(rgb, first["image"])
