"""The on-disk loaders read fixtures written here in each dataset's real layout and encodings."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from training.data import CityscapesDVPS, KittiEigen, SemKittiDVPS, THING_CLASSES, build_dataset
from training.data.io import read_depth, write_depth

H, W = 24, 40


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def gradient_image(h=H, w=W):
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = np.arange(w, dtype=np.uint8)[None] * 5  # red grows to the right
    image[..., 2] = 200
    return image


def depth_png(metres):
    return np.round(np.asarray(metres) * 256).astype(np.uint16)


@pytest.fixture
def cityscapes_root(tmp_path):
    """One val frame in cityscapesscripts' convention: the first car (13000), another car (13005), a person
    (11002), a car group (bare 13), road (bare 0), vegetation (bare 8) and void (bare 255); depth 10 m
    except an invalid corner."""
    root = tmp_path / "cityscapes_dvps"
    folder = root / "video_sequence" / "val"
    prefix = folder / "000001_000002_frankfurt_000000_000294"
    panoptic = np.zeros((H, W), np.uint16)
    panoptic[:12] = 8
    panoptic[14:20, 2:10] = 13 * 1000 + 5
    panoptic[14:22, 30:33] = 11 * 1000 + 2
    panoptic[20:24, 12:20] = 13 * 1000  # the first car of the frame: instance number 0
    panoptic[2:6, 20:30] = 13  # a car group: bare class id, no instance
    panoptic[0:2, 0:4] = 255
    depth = np.full((H, W), 10.0)
    depth[:3, :3] = 0.0
    write_png(prefix.with_name(prefix.name + "_leftImg8bit.png"), gradient_image()[..., ::-1])
    write_png(prefix.with_name(prefix.name + "_gtFine_instanceTrainIds.png"), panoptic)
    write_png(prefix.with_name(prefix.name + "_depth.png"), depth_png(depth))
    return root


def test_depth_png_round_trip(tmp_path):
    depth = np.array([[0.0, 1.0, 12.34], [80.0, 255.99, 300.0]], np.float32)
    write_depth(tmp_path / "d.png", depth)
    raw = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, [[0, 256, 3159], [20480, 65533, 0]])  # > 255.99 m cannot be encoded
    np.testing.assert_allclose(read_depth(tmp_path / "d.png"), [[0, 1, 3159 / 256], [80, 65533 / 256, 0]])


def test_cityscapes_keeps_only_thing_instances(cityscapes_root):
    item = CityscapesDVPS(cityscapes_root, "val")[0]
    instances = item["instances"][0]
    # ids 1..M in increasing order of the panoptic id: person 11002 -> 1, car 13000 -> 2, car 13005 -> 3;
    # the car group (bare 13), stuff and void -> 0
    assert sorted(instances.unique().tolist()) == [0, 1, 2, 3]
    assert (instances[14:22, 30:33] == 1).all() and (instances[20:24, 12:20] == 2).all()
    assert (instances[14:20, 2:10] == 3).all()
    assert (instances[2:6, 20:30] == 0).all() and (instances[:12, 12:20] == 0).all()
    car, person = THING_CLASSES.index("car"), THING_CLASSES.index("person")
    assert item["instance_classes"][:4].tolist() == [person, car, car, -1]
    assert item["depth"].shape == (1, H, W) and item["depth"].dtype == torch.float32
    assert item["depth"][0, 10, 10].item() == 10.0 and item["depth"][0, 0, 0].item() == 0.0
    assert not item["valid"][0, 0, 0] and item["valid"][0, 10, 10]
    assert item["image"].shape == (3, H, W) and abs(item["image"][0, 0, 7].item() - 35 / 255) < 1e-6
    # nominal Cityscapes intrinsics scaled to 40 x 24
    assert item["intrinsics"][0, 0].item() == pytest.approx(2262.52 * W / 2048, rel=1e-5)


def test_cityscapes_camera_json_and_three_channel_panoptic(cityscapes_root):
    folder = cityscapes_root / "video_sequence" / "val"
    prefix = "000001_000002_frankfurt_000000_000294"
    (folder / f"{prefix}_camera.json").write_text(json.dumps({"intrinsic": {"fx": 30.0, "fy": 31.0, "u0": 19.5, "v0": 11.5}}))
    # deeplab2's 3-channel DVPS layout: R = trainId, 256 G + B = instance number (0 = none)
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[5:9, 5:9] = (12, 1, 4)  # rider, instance 260
    rgb[10:14, 5:9] = (13, 0, 0)  # car class without an instance number
    rgb[15:19, 5:9] = (8, 0, 0)  # vegetation
    write_png(folder / f"{prefix}_gtFine_instanceTrainIds.png", rgb[..., ::-1])  # OpenCV writes BGR
    from training.data.cityscapes_dvps import read_panoptic
    panoptic = read_panoptic(folder / f"{prefix}_gtFine_instanceTrainIds.png")
    assert panoptic[6, 6] == 12260 and panoptic[11, 6] == 13 and panoptic[16, 6] == 8
    item = CityscapesDVPS(cityscapes_root, "val")[0]
    assert item["instances"][0, 6, 6].item() == 1 and item["instances"].max().item() == 1
    assert item["instance_classes"][0].item() == THING_CLASSES.index("rider")
    np.testing.assert_allclose(item["intrinsics"].numpy(), [[30, 0, 19.5], [0, 31, 11.5], [0, 0, 1]])


def test_cityscapes_errors_name_the_path(cityscapes_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="video_sequence/train"):
        CityscapesDVPS(cityscapes_root, "train")
    folder = cityscapes_root / "video_sequence" / "val"
    depth = next(folder.glob("*_depth.png"))
    write_png(depth, np.zeros((H, W, 3), np.uint8))  # an 8-bit colour PNG where uint16 is expected
    with pytest.raises(ValueError, match=f"{depth.name}.*uint16"):
        CityscapesDVPS(cityscapes_root, "val")[0]
    depth.unlink()
    with pytest.raises(FileNotFoundError, match=depth.name):
        CityscapesDVPS(cityscapes_root, "val")


@pytest.fixture
def semkitti_root(tmp_path):
    """One train frame with separate class / instance PNGs: two cars (class 0, ids 1 and 3), a person
    (class 5, id 1), vegetation (class 15, instance 4 must be ignored), void 255; sparse depth, focal 718.856."""
    root = tmp_path / "semkitti_dvps"
    folder = root / "video_sequence" / "train"
    classes = np.full((H, W), 15, np.uint8)
    instance = np.zeros((H, W), np.uint16)
    classes[10:20, 0:8], instance[10:20, 0:8] = 0, 3
    classes[10:20, 10:18], instance[10:20, 10:18] = 0, 1
    classes[5:20, 30:33], instance[5:20, 30:33] = 5, 1
    instance[0:4, 20:30] = 4  # stuff with a stray instance id
    classes[0, 0] = 255
    depth = np.zeros((H, W))
    depth[::4, ::3] = 7.5  # a sparse beam pattern
    write_png(folder / "000003_000010_leftImg8bit.png", gradient_image()[..., ::-1])
    write_png(folder / "000003_000010_gtFine_class.png", classes)
    write_png(folder / "000003_000010_gtFine_instance.png", instance)
    write_png(folder / "000003_000010_depth_718.856.png", depth_png(depth))
    return root


def test_semkitti_separate_class_and_instance_files(semkitti_root):
    item = SemKittiDVPS(semkitti_root, "train")[0]
    instances = item["instances"][0]
    assert instances.max().item() == 3
    # keys class * 65536 + id in increasing order: car 1 -> 1, car 3 -> 2, person 1 -> 3
    assert (instances[10:20, 10:18] == 1).all() and (instances[10:20, 0:8] == 2).all()
    assert (instances[5:20, 30:33] == 3).all() and (instances[0:4, 20:30] == 0).all()
    car, person = THING_CLASSES.index("car"), THING_CLASSES.index("person")
    assert item["instance_classes"][:4].tolist() == [car, car, person, -1]
    assert item["valid"].sum().item() == len(range(0, H, 4)) * len(range(0, W, 3))
    assert item["depth"][0, 4, 3].item() == 7.5 and item["depth"][0, 1, 1].item() == 0.0
    np.testing.assert_allclose(item["intrinsics"].numpy(), [[718.856, 0, 19.5], [0, 718.856, 11.5], [0, 0, 1]],
                               rtol=1e-6)


def test_semkitti_wrong_label_dtype_names_file(semkitti_root):
    path = semkitti_root / "video_sequence" / "train" / "000003_000010_gtFine_class.png"
    write_png(path, np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="gtFine_class.png: expected a single-channel uint8 or uint16 class"):
        SemKittiDVPS(semkitti_root, "train")[0]


KITTI_H, KITTI_W = 375, 1242
DRIVE = "2011_09_26/2011_09_26_drive_0002_sync"


@pytest.fixture
def kitti_root(tmp_path):
    """BTS layout: two frames, one with GT and a pseudo instance mask, one 'None' line; a calib file."""
    root = tmp_path / "kitti"
    raw, gt, masks = root / "raw", root / "depth_annotated", root / "instances"
    for frame in ("0000000005", "0000000006"):
        write_png(raw / DRIVE / "image_02" / "data" / f"{frame}.png", gradient_image(KITTI_H, KITTI_W)[..., ::-1])
        mask = np.zeros((KITTI_H, KITTI_W), np.uint16)
        mask[300:340, 600:700] = 42
        write_png(masks / DRIVE / "image_02" / "data" / f"{frame}.png", mask)
    depth = np.zeros((KITTI_H, KITTI_W))
    depth[200:, :] = 20.0
    depth[300:340, 600:700] = 12.0
    write_png(gt / "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000005.png", depth_png(depth))
    (raw / "2011_09_26" / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 "
        "1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n")
    splits = root / "splits"
    splits.mkdir()
    (splits / "eigen_test_files_with_gt.txt").write_text(
        f"{DRIVE}/image_02/data/0000000005.png 2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/"
        f"0000000005.png 721.5377\n{DRIVE}/image_02/data/0000000006.png None 721.5377\n")
    return root


def test_kitti_kb_crop_none_lines_and_pseudo_masks(kitti_root):
    dataset = build_dataset("kitti_eigen", kitti_root, "test", augment=False)
    assert isinstance(dataset, KittiEigen) and len(dataset) == 2
    item, no_gt = dataset[0], dataset[1]
    assert item["image"].shape == (3, 352, 1216)
    top, left = KITTI_H - 352, (KITTI_W - 1216) // 2  # 23, 13
    assert item["depth"][0, 300 - top, 650 - left].item() == 12.0
    assert item["depth"][0, 199 - top, 650 - left].item() == 0.0
    assert (item["instances"][0, 300 - top:340 - top, 600 - left:700 - left] == 1).all()
    assert item["instances"].sum().item() == 40 * 100 and item["instance_classes"][0].item() == -1
    np.testing.assert_allclose(item["intrinsics"].numpy(),
                               [[721.5377, 0, 609.5593 - left], [0, 721.5377, 172.854 - top], [0, 0, 1]], rtol=1e-6)
    assert item["has_depth"].item() and not no_gt["has_depth"].item()
    assert not no_gt["valid"].any() and no_gt["depth"].abs().sum().item() == 0.0
    assert len(build_dataset("kitti_eigen", kitti_root, "test", False, skip_missing_depth=True)) == 1


def test_kitti_errors_name_split_line(kitti_root):
    split = kitti_root / "splits" / "eigen_test_files_with_gt.txt"
    split.write_text(split.read_text() + f"{DRIVE}/image_02/data/0000000099.png None 721.5377\n")
    with pytest.raises(FileNotFoundError, match=r"0000000099.png: file not found \(listed at .*eigen_test_files_with_gt.txt:3\)"):
        build_dataset("kitti_eigen", kitti_root, "val", False)
    split.write_text("only_two tokens\n")
    with pytest.raises(ValueError, match=r"eigen_test_files_with_gt.txt:1: expected 'image gt focal'"):
        build_dataset("kitti_eigen", kitti_root, "val", False)
    with pytest.raises(FileNotFoundError, match="KITTI data_root .*nowhere"):
        KittiEigen(kitti_root / "nowhere", kitti_root, split)


def test_kitti_instance_mask_must_be_uint16(kitti_root):
    write_png(kitti_root / "instances" / DRIVE / "image_02" / "data" / "0000000005.png",
              np.zeros((KITTI_H, KITTI_W), np.uint8))
    with pytest.raises(ValueError, match="0000000005.png: expected a single-channel uint16 instance-id PNG"):
        build_dataset("kitti_eigen", kitti_root, "test", False)[0]


def test_build_dataset_names_allowed_datasets():
    with pytest.raises(ValueError, match="kitti_eigen, cityscapes_dvps, semkitti_dvps, synthetic"):
        build_dataset("nyu", None, "train", False)


def test_items_collate_across_datasets(cityscapes_root, semkitti_root):
    batch = torch.utils.data.default_collate([CityscapesDVPS(cityscapes_root, "val")[0],
                                              SemKittiDVPS(semkitti_root, "train")[0]])
    assert batch["image"].shape == (2, 3, H, W) and batch["instance_classes"].shape == (2, 255)
    assert batch["instances"].dtype == torch.int64 and batch["valid"].dtype == torch.bool


def test_preview_detects_each_layout(cityscapes_root, semkitti_root, kitti_root, tmp_path):
    from training.data.preview import detect_layout, main as preview_main
    assert detect_layout(cityscapes_root) == "cityscapes_dvps"
    assert detect_layout(semkitti_root) == "semkitti_dvps"
    assert detect_layout(kitti_root) == "kitti_eigen"
    assert preview_main([str(semkitti_root), "--out", str(tmp_path / "s.png")]) == 0
    assert cv2.imread(str(tmp_path / "s.png")).shape == (H, 3 * W + 8, 3)
    assert preview_main([str(kitti_root), "--split", "test", "--out", str(tmp_path / "k.png"), "--count", "1"]) == 0
    assert cv2.imread(str(tmp_path / "k.png")).shape == (352, 3 * 1216 + 8, 3)
    with pytest.raises(ValueError, match="not a recognised layout"):
        detect_layout(tmp_path)
