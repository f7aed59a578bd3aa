"""The loaders on real files from ../shared/real-samples (SOURCES.md there); skipped where they are absent.

Nothing is copied: KITTI's layout is made of symlinks in a temporary folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.data import THING_CLASSES, build_dataset
from training.data.cityscapes_dvps import panoptic_to_instances

REAL = Path(__file__).resolve().parents[3] / "shared" / "real-samples"
CITYSCAPES = REAL / "cityscapes" / "mmseg_pseudo_cityscapes" / "gtFine" / "val" / "frankfurt"
PACKNET = REAL / "kitti" / "packnet_KITTI_tiny" / "2011_09_26"
PACKNET_DRIVE = "2011_09_26_drive_0023_sync"
METRIC3D = REAL / "kitti" / "metric3d_kitti_demo"
METRIC3D_FRAMES = ("0000000005", "0000000050", "0000000100")
METRIC3D_FOCAL = 707.0493  # Metric3D's test_annotations.json; the drive (and so its calib) is not named
# A made-up drive name for the Metric3D frames: their date folder has no calib file, so K comes from the focal.
METRIC3D_DRIVE = "2011_09_30/2011_09_30_drive_metric3d_sync"

# Cityscapes label id -> train id (cityscapesscripts' labels.py; 255 = ignored in evaluation).
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                  26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real sample {path} not available")


def to_train_ids(instance_ids: np.ndarray) -> np.ndarray:
    """A gtFine_instanceIds map (label ids) as the gtFine_instanceTrainIds cityscapesscripts would write."""
    label = np.where(instance_ids >= 1000, instance_ids // 1000, instance_ids)
    train = np.vectorize(lambda value: LABEL_TO_TRAIN.get(int(value), 255))(label)
    return np.where(instance_ids >= 1000, train * 1000 + instance_ids % 1000, train)


def test_real_cityscapes_instances_include_the_first_of_each_class():
    path = CITYSCAPES / "frankfurt_000000_000294_gtFine_instanceIds.png"
    needs(path)
    instance_ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int64)
    label_ids = cv2.imread(str(CITYSCAPES / "frankfurt_000000_000294_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED)
    assert sorted(v for v in np.unique(instance_ids) if v >= 1000) == [24000, 24001, 24002, 24003, 26000, 26001, 26002]
    panoptic = to_train_ids(instance_ids)
    instances, classes = panoptic_to_instances(panoptic)
    # exactly the file's seven instances (4 persons, 3 cars), the first of each class (n = 0) included
    assert classes == {11000: 0, 11001: 0, 11002: 0, 11003: 0, 13000: 2, 13001: 2, 13002: 2}
    for value in (24000, 24001, 24002, 24003, 26000, 26001, 26002):
        key = (value // 1000 - 13) * 1000 + value % 1000  # person 24 -> 11, car 26 -> 13
        np.testing.assert_array_equal(instances == key, instance_ids == value)
        assert set(np.unique(label_ids[instance_ids == value])) == {value // 1000}
    assert ((instances > 0) == (instance_ids >= 1000)).all()  # stuff (bare label ids) is no instance
    # A car group is written as the bare class id (cityscapesscripts json2instanceImg): paint one.
    grouped = panoptic.copy()
    grouped[100:120, 10:60] = 13
    instances, classes = panoptic_to_instances(grouped)
    assert (instances[100:120, 10:60] == 0).all() and len(classes) == 7


@pytest.fixture
def kitti_root(tmp_path):
    """KITTI's layout of symlinks: the PackNet drive (frames 0-6 of both cameras, real calib, no annotated
    depth: 'None' lines) and the three Metric3D frames with their annotated depth."""
    needs(PACKNET)
    needs(METRIC3D)
    root = tmp_path / "kitti"
    raw = root / "raw"
    (raw / "2011_09_26").mkdir(parents=True)
    (raw / "2011_09_26" / "calib_cam_to_cam.txt").symlink_to(PACKNET / "calib_cam_to_cam.txt")
    (raw / "2011_09_26" / PACKNET_DRIVE).symlink_to(PACKNET / PACKNET_DRIVE, target_is_directory=True)
    lines = [f"2011_09_26/{PACKNET_DRIVE}/image_0{camera}/data/000000000{frame}.png None 721.5377"
             for camera, frame in ((2, 0), (2, 6), (3, 3))]
    images = raw / METRIC3D_DRIVE / "image_02" / "data"
    truth = root / "depth_annotated" / Path(METRIC3D_DRIVE).name / "proj_depth" / "groundtruth" / "image_02"
    images.mkdir(parents=True)
    truth.mkdir(parents=True)
    for frame in METRIC3D_FRAMES:
        (images / f"{frame}.png").symlink_to(METRIC3D / "rgb" / f"{frame}.png")
        (truth / f"{frame}.png").symlink_to(METRIC3D / "depth" / f"{frame}.png")
        lines.append(f"{METRIC3D_DRIVE}/image_02/data/{frame}.png {Path(METRIC3D_DRIVE).name}/proj_depth/groundtruth/"
                     f"image_02/{frame}.png {METRIC3D_FOCAL}")
    (root / "splits").mkdir()
    for name in ("eigen_train_files_with_gt.txt", "eigen_test_files_with_gt.txt"):
        (root / "splits" / name).write_text("\n".join(lines) + "\n")
    return root


def projection(camera: str) -> np.ndarray:
    for line in (PACKNET / "calib_cam_to_cam.txt").read_text().splitlines():
        if line.startswith(f"P_rect_{camera}:"):
            return np.array(line.split()[1:], dtype=np.float64).reshape(3, 4)
    raise AssertionError(f"no P_rect_{camera}")


def test_real_kitti_depth_intrinsics_and_none_lines(kitti_root):
    dataset = build_dataset("kitti_eigen", kitti_root, "test", augment=False)
    assert len(dataset) == 6 and not dataset.has_instances
    top, left = 375 - 352, (1242 - 1216) // 2  # KB crop of a 1242 x 375 frame
    for index, camera in ((0, "02"), (1, "02"), (2, "03")):
        item = dataset[index]
        P = projection(camera)
        expected = np.array([[P[0, 0], 0, P[0, 2] - left], [0, P[1, 1], P[1, 2] - top], [0, 0, 1]])
        np.testing.assert_allclose(item["intrinsics"].numpy(), expected, rtol=1e-6)
        assert not item["has_depth"] and not item["valid"].any() and item["instances"].max() == 0
    assert dataset[0]["intrinsics"][0, 0].item() == pytest.approx(721.5377)  # P_rect_02 of 2011_09_26
    for index, frame in enumerate(METRIC3D_FRAMES, start=3):
        item = dataset[index]
        png = cv2.imread(str(METRIC3D / "depth" / f"{frame}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (375, 1242)
        metres = png[top:, left:left + 1216].astype(np.float32) / 256
        inside = (metres > 1e-3) & (metres <= 80.0)  # the loader's valid range; GT reaches 84.9 m
        np.testing.assert_array_equal(item["depth"][0].numpy(), np.where(inside, metres, 0))
        np.testing.assert_array_equal(item["valid"][0].numpy(), inside)
        assert inside.mean() > 0.15 and item["has_depth"]
        rgb = cv2.imread(str(METRIC3D / "rgb" / f"{frame}.png"))[top:, left:left + 1216, ::-1]
        np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), rgb / 255.0, atol=1e-6)
        # no calib for that date: the split line's focal with the principal point at the image centre
        np.testing.assert_allclose(item["intrinsics"].numpy(), [[METRIC3D_FOCAL, 0, 620.5 - left],
                                                                [0, METRIC3D_FOCAL, 187 - top], [0, 0, 1]], rtol=1e-6)
    assert len(build_dataset("kitti_eigen", kitti_root, "test", False, skip_missing_depth=True)) == 3


def test_real_kitti_with_pseudo_masks_and_their_classes(kitti_root):
    frame = METRIC3D_FRAMES[0]
    folder = kitti_root / "instances" / METRIC3D_DRIVE / "image_02" / "data"
    folder.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="pseudo instance mask not found.*training.data.pseudo_instances"):
        build_dataset("kitti_eigen", kitti_root, "test", False)
    for line in (kitti_root / "splits" / "eigen_test_files_with_gt.txt").read_text().split("\n"):
        if line:
            mask = (kitti_root / "instances" / line.split()[0]).with_suffix(".png")
            mask.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask), np.zeros((375, 1242), np.uint16))
    mask = np.zeros((375, 1242), np.uint16)
    mask[200:260, 400:500], mask[210:300, 800:830] = 1, 2
    cv2.imwrite(str(folder / f"{frame}.png"), mask)
    (folder / f"{frame}.json").write_text(json.dumps({"classes": {"1": "car", "2": "person"}}))
    dataset = build_dataset("kitti_eigen", kitti_root, "test", False)
    item = dataset[3]
    assert dataset.has_instances and item["instances"].max().item() == 2
    assert item["instance_classes"][:3].tolist() == [THING_CLASSES.index("car"), THING_CLASSES.index("person"), -1]
    assert (item["instances"][0, 200 - 23:260 - 23, 400 - 13:500 - 13] == 1).all()
    assert dataset[4]["instance_classes"][0].item() == -1 and dataset[4]["instances"].max().item() == 0
    (folder / f"{frame}.json").write_text(json.dumps({"classes": {"1": "tree"}}))
    with pytest.raises(ValueError, match=f"{frame}.json: expected"):
        dataset[3]


def test_training_kitti_without_masks_is_method_two(kitti_root, tmp_path, capsys):
    from training.config import load_config
    from training.train import train

    config = load_config(None, [
        "model.encoder=resnet10t", "model.img_size=[64,128]", "model.dim=32", "model.num_clusters=8",
        "model.iterations=1", "data.dataset=kitti_eigen", f"data.root={kitti_root}", "data.num_workers=0",
        "data.augment=false", "train.batch_size=2", "train.accumulate=1", "train.log_every=1", "train.image_every=0",
        "train.eval_every=1", "train.save_every=1", "train.steps=1", "eval.batch_size=2",
        f"train.output_dir={tmp_path / 'run'}", "name=kitti_no_masks"])
    train(config)
    printed = capsys.readouterr().out
    assert printed.count("ICM terms off") == 1 and "method II" in printed
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert "loss_silog" in record and "loss_icm_1" not in record
    assert "icm_1: 0.0" in (tmp_path / "run" / "config.yaml").read_text()
