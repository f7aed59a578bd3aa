"""Augmentation keeps image, depth, instances and intrinsics aligned."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from training.data.items import make_item
from training.data.transforms import Augmenter, crop, hflip, kb_crop, rescale

H, W = 20, 30


def scene_sample():
    """A 'car' occupying rows 8-13, cols 4-11: red pixels, depth 7 m, instance 9; background blue at 30 m."""
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 2] = 255
    image[8:14, 4:12] = (255, 0, 0)
    depth = np.full((H, W), 30.0, np.float32)
    depth[8:14, 4:12] = 7.0
    instances = np.zeros((H, W), np.int64)
    instances[8:14, 4:12] = 9
    K = np.array([[25.0, 0, 14.0], [0, 25.0, 9.0], [0, 0, 1]])
    return {"image": image, "depth": depth, "instances": instances, "K": K, "classes": {9: 2}}


def object_box(mask):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max(), cols.min(), cols.max()


def assert_aligned(sample):
    red = (sample["image"][..., 0] > 128) & (sample["image"][..., 2] < 128)
    car = sample["instances"] == 9
    np.testing.assert_array_equal(red, car)
    np.testing.assert_array_equal(sample["depth"] == 7.0, car)
    assert set(np.unique(sample["depth"][~car])) <= {0.0, 30.0}  # never a blend across the edge


def test_flip_moves_object_and_principal_point():
    out = hflip(scene_sample())
    assert object_box(out["instances"] == 9) == (8, 13, W - 12, W - 5)
    assert out["K"][0, 2] == W - 1 - 14.0
    assert_aligned(out)
    # a 3-D point projects to mirrored pixels: u' = W - 1 - u
    X, Z = 0.4, 5.0
    u = 25.0 * X / Z + 14.0
    assert 25.0 * -X / Z + out["K"][0, 2] == W - 1 - u


def test_crop_shifts_object_and_intrinsics():
    out = crop(scene_sample(), 5, 2, 12, 16)
    assert out["depth"].shape == (12, 16)
    assert object_box(out["instances"] == 9) == (3, 8, 2, 9)
    assert (out["K"][0, 2], out["K"][1, 2]) == (12.0, 4.0)
    assert_aligned(out)
    padded = crop(scene_sample(), 15, 25, 10, 10)  # partly outside: zero depth, no instance
    assert padded["depth"][7, 7] == 0 and padded["instances"].max() == 0


def test_rescale_keeps_depth_values_and_scales_focal():
    out = rescale(scene_sample(), 2.0)
    assert out["depth"].shape == (40, 60)
    assert object_box(out["instances"] == 9) == (16, 27, 8, 23)
    assert set(np.unique(out["depth"])) == {7.0, 30.0}
    assert out["K"][0, 0] == 50.0 and out["K"][0, 2] == (14.0 + 0.5) * 2 - 0.5
    assert_aligned(out)


def test_kb_crop_is_bottom_centre_352x1216():
    sample = {"image": np.zeros((375, 1242, 3), np.uint8), "depth": np.zeros((375, 1242), np.float32),
              "instances": np.zeros((375, 1242), np.int64), "K": np.eye(3)}
    sample["depth"][23, 13] = 5.0
    out = kb_crop(sample)
    assert out["depth"].shape == (352, 1216) and out["depth"][0, 0] == 5.0
    assert (out["K"][0, 2], out["K"][1, 2]) == (-13.0, -23.0)


def test_random_augmentation_keeps_alignment_over_many_draws():
    augmenter = Augmenter(crop_size=(16, 24), scale_range=(1.0, 1.6))
    rng = np.random.default_rng(0)
    for _ in range(30):
        out = augmenter(scene_sample(), rng)
        car = out["instances"] == 9
        assert out["depth"].shape == (16, 24)
        np.testing.assert_array_equal(out["depth"] == 7.0, car)
        interior = cv2.erode(car.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if interior.any():  # the image is bilinear at edges; inside, jittered red stays redder than blue
            inside = out["image"][interior].astype(int)
            assert (inside[:, 0] > inside[:, 2]).all()
        # the object stays where K projects it: centre column = fx * x + cx (x -> -x when flipped)
        cols = np.nonzero(car.any(axis=0))[0]
        if len(cols) and 0 < cols.min() and cols.max() < 23:
            x = (7.5 - 14.0) / 25.0  # normalised image x of the object's centre in the source camera
            centre = (cols.min() + cols.max()) / 2
            fx, cx = out["K"][0, 0], out["K"][0, 2]
            assert min(abs(fx * x + cx - centre), abs(-fx * x + cx - centre)) < 1.0


def test_item_renumbers_after_crop():
    sample = scene_sample()
    sample["instances"][0:3, 20:25] = 4  # a second instance, cropped away below
    sample["classes"][4] = 0
    full = make_item(sample, 1e-3, 80.0)
    assert full["instances"].max().item() == 2 and full["instance_classes"][:2].tolist() == [0, 2]
    cropped = make_item(crop(sample, 5, 0, 15, 30), 1e-3, 80.0)
    assert cropped["instances"].max().item() == 1 and cropped["instance_classes"][:2].tolist() == [2, -1]
    assert cropped["instances"].dtype == torch.int64 and cropped["intrinsics"].dtype == torch.float32
