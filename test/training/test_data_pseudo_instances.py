"""Pseudo instance masks: selection rules on known segments, and the CLI with a tiny randomly initialised
Mask2Former (transformers, saved to a local folder: nothing downloaded) on rendered road scenes."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from training.data import THING_CLASSES, KittiEigen
from training.data.io import write_rgb
from training.data.pseudo_instances import Mask2FormerSegmenter, Segment, main, select_instances

LABELS = ["road", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "vegetation", "sky"]
DRIVE = "2011_09_26/2011_09_26_drive_0001_sync/image_02/data"


def box(size, top, left, bottom, right):
    mask = np.zeros(size, bool)
    mask[top:bottom, left:right] = True
    return mask


def test_selection_keeps_road_users_above_threshold_and_area():
    size = (40, 60)
    segments = [
        Segment(box(size, 0, 0, 10, 60), "vegetation", 0.99),  # not a road user
        Segment(box(size, 10, 0, 30, 20), "car", 0.9),
        Segment(box(size, 10, 10, 30, 30), "rider", 0.7),  # overlaps the car: keeps only its own 10 columns
        Segment(box(size, 30, 0, 40, 10), "person", 0.4),  # below the threshold
        Segment(box(size, 30, 40, 33, 43), "bicycle", 0.8),  # 9 pixels: below the minimum area
        Segment(box(size, 30, 20, 40, 40), "Motorbike", 0.6),  # another dataset's name for motorcycle
    ]
    ids, meta = select_instances(segments, size, score_threshold=0.5, min_area=20)
    assert ids.dtype == np.uint16
    assert meta["classes"] == {"1": "car", "2": "rider", "3": "motorcycle"}
    assert meta["scores"] == {"1": 0.9, "2": 0.7, "3": 0.6} and meta["labels"]["3"] == "Motorbike"
    np.testing.assert_array_equal(ids == 1, segments[1].mask)
    np.testing.assert_array_equal(ids == 2, box(size, 10, 20, 30, 30))
    np.testing.assert_array_equal(ids == 3, segments[5].mask)
    assert (ids[:10] == 0).all() and ids.max() == 3


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A randomly initialised Mask2Former with a small Swin backbone, saved as transformers saves a checkpoint."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    backbone = transformers.SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                                       out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone, hidden_dim=32, num_queries=12, encoder_layers=1, decoder_layers=2,
        dim_feedforward=64, feature_size=32, mask_feature_size=32, num_attention_heads=2, encoder_feedforward_dim=64,
        num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mask2former_tiny")
    transformers.Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    transformers.Mask2FormerImageProcessor(size={"height": 64, "width": 192}).save_pretrained(folder)
    return folder


@pytest.fixture
def kitti_raw(tmp_path):
    """Three rendered 96 x 320 frames in KITTI raw's layout and a split file listing them (no ground truth)."""
    from training.data.synthetic import render_scene

    raw = tmp_path / "raw"
    lines = []
    for index in range(3):
        write_rgb(raw / DRIVE / f"{index:010d}.png", render_scene(seed=index, size=(96, 320))["image"])
        lines.append(f"{DRIVE}/{index:010d}.png None 721.5377")
    lines.append(lines[0])  # listed twice: segmented once
    split = tmp_path / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    return raw, split


def run(raw, split, out, weights, *extra):
    return main(["--data-root", str(raw), "--split", str(split), "--out", str(out), "--weights", str(weights),
                 "--no-progress", "--batch-size", "2", *extra])


def test_cli_writes_the_loader_layout_filters_classes_and_resumes(kitti_raw, tiny_weights, tmp_path, capsys):
    raw, split = kitti_raw
    out = tmp_path / "instances"
    assert run(raw, split, out, tiny_weights, "--score-threshold", "0", "--min-area", "30") == 0
    assert "3 images written, 0 already done" in capsys.readouterr().out
    segmenter = Mask2FormerSegmenter(tiny_weights, "cpu")
    rgbs = [cv2.imread(str(raw / DRIVE / f"{i:010d}.png"))[..., ::-1].copy() for i in range(3)]
    raw_segments = segmenter.segment(rgbs)
    assert any(s.label in ("road", "vegetation", "sky") for segments in raw_segments for s in segments)
    for index, segments in enumerate(raw_segments):
        png = out / DRIVE / f"{index:010d}.png"
        ids = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        meta = json.loads(png.with_suffix(".json").read_text())
        assert ids.dtype == np.uint16 and ids.shape == (96, 320)
        assert sorted(int(k) for k in meta["classes"]) == sorted(set(np.unique(ids).tolist()) - {0})
        assert set(meta["classes"].values()) <= set(THING_CLASSES)
        assert all((ids == int(k)).sum() >= 30 for k in meta["classes"])
        expected, _ = select_instances(segments, (96, 320), 0.0, 30)  # batch of one: the same masks
        np.testing.assert_array_equal(ids, expected)
        assert meta["weights"] == str(tiny_weights) and meta["min_area"] == 30
    assert sum(len(json.loads(p.read_text())["classes"]) for p in out.rglob("*.json")) > 0

    # resume: nothing is redone; a missing JSON (interrupted image) is redone alone
    stamp = (out / DRIVE / "0000000001.png").stat().st_mtime_ns
    (out / DRIVE / "0000000002.json").unlink()
    assert run(raw, split, out, tiny_weights, "--score-threshold", "0", "--min-area", "30") == 0
    assert "1 images written, 2 already done" in capsys.readouterr().out
    assert (out / DRIVE / "0000000001.png").stat().st_mtime_ns == stamp

    # the KITTI loader reads the masks and their classes
    dataset = KittiEigen(raw, tmp_path, split, instance_root=out, kb_crop=False)
    for index in range(3):
        item = dataset[index]
        meta = json.loads((out / DRIVE / f"{index:010d}.json").read_text())
        ids = cv2.imread(str(out / DRIVE / f"{index:010d}.png"), cv2.IMREAD_UNCHANGED)
        assert item["instances"].max().item() == len(meta["classes"])
        np.testing.assert_array_equal(item["instances"][0].numpy() > 0, ids > 0)
        classes = [THING_CLASSES.index(meta["classes"][str(k)]) for k in sorted(int(k) for k in meta["classes"])]
        assert item["instance_classes"][:len(classes)].tolist() == classes


def test_cli_errors_name_the_problem(kitti_raw, tiny_weights, tmp_path, capsys):
    raw, split = kitti_raw
    assert run(raw, split, tmp_path / "o", tmp_path / "nowhere") == 2
    assert "--weights" in capsys.readouterr().err
    assert run(raw, split, tmp_path / "o", tiny_weights, "--score-threshold", "2") == 2
    assert "--score-threshold 2.0" in capsys.readouterr().err
    (raw / DRIVE / "0000000001.png").unlink()
    assert run(raw, split, tmp_path / "o", tiny_weights) == 2
    assert "0000000001.png: image listed in" in capsys.readouterr().err
