"""Depth metrics against hand-computed values (the KITTI convention; docs/training.md, "Metrics"), the instance/background split,
the cluster-instance alignment, the KITTI crop, and the torch wrapper reusing the NumPy definition."""
import math

import numpy as np
import pytest
import torch

from icm_depth_ros.processing import metrics as np_metrics
from icm_depth_ros.processing.metrics import (
    MetricMeans,
    clamp_prediction,
    cluster_instance_alignment,
    depth_metrics,
    evaluation_mask,
    garg_crop_mask,
)
from training import metrics as torch_metrics


def test_hand_values_two_pixels():
    pred, gt, valid = np.array([[2.0, 3.0, 9.0]]), np.array([[1.0, 3.0, 1.0]]), np.array([[True, True, False]])
    figures = depth_metrics(pred, gt, valid)
    assert figures["abs_rel"] == pytest.approx((1.0 + 0.0) / 2)
    assert figures["sq_rel"] == pytest.approx((1.0 + 0.0) / 2)
    assert figures["rmse"] == pytest.approx(math.sqrt(0.5))
    assert figures["rmse_log"] == pytest.approx(math.sqrt(math.log(2) ** 2 / 2))
    # e = [log 2, 0]: mean(e^2) - mean(e)^2 = (log 2)^2 / 4
    assert figures["silog"] == pytest.approx(100 * math.log(2) / 2)
    assert figures["log10"] == pytest.approx(math.log10(2) / 2)
    assert (figures["d1"], figures["d2"], figures["d3"]) == (0.5, 0.5, 0.5)  # ratio 2 > 1.25^3 = 1.953

def test_delta_thresholds_are_strict_and_symmetric():
    gt = np.ones((1, 4))
    pred = np.array([[1.2, 1 / 1.2, 1.5, 1 / 1.5]])
    figures = depth_metrics(pred, gt, np.ones_like(gt, bool))
    assert figures["d1"] == 0.5 and figures["d2"] == 1.0


def test_perfect_prediction():
    gt = np.linspace(1, 80, 20).reshape(4, 5)
    figures = depth_metrics(gt, gt, np.ones_like(gt, bool))
    assert figures["abs_rel"] == 0 and figures["rmse"] == 0 and figures["silog"] == 0 and figures["d1"] == 1


def test_scale_error_shows_in_abs_rel_not_silog():
    gt = np.linspace(2, 50, 30).reshape(5, 6)
    figures = depth_metrics(2 * gt, gt, np.ones_like(gt, bool))
    assert figures["abs_rel"] == pytest.approx(1.0)
    assert figures["silog"] == pytest.approx(0.0, abs=1e-5)


def test_no_valid_pixel_is_an_error():
    with pytest.raises(ValueError, match="no valid pixel"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 2)), np.zeros((2, 2), bool))


def test_clamp_and_evaluation_mask():
    assert clamp_prediction(np.array([0.0, np.nan, 100.0, 5.0]), 1e-3, 80).tolist() == [1e-3, 80, 80, 5]
    gt = np.array([[0.0, 0.0005, 10.0, 80.0, 79.9]])
    assert evaluation_mask(gt, None, 1e-3, 80).tolist() == [[False, False, True, False, True]]


def test_garg_crop_full_image_and_kb_crop():
    mask = garg_crop_mask(375, 1242)
    rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
    assert (rows[0], rows[-1] + 1) == (int(0.40810811 * 375), int(0.99189189 * 375))
    assert (cols[0], cols[-1] + 1) == (int(0.03594771 * 1242), int(0.96405229 * 1242))
    # The KB crop (bottom 352 rows, centre 1216 columns) sees the same region, shifted.
    kb = garg_crop_mask(352, 1216, full_size=(375, 1242))
    assert np.array_equal(kb, mask[375 - 352 :, 13 : 13 + 1216])


def test_cluster_instance_alignment():
    instances = np.zeros((4, 6), int)
    instances[:2, :2] = 1  # 4 px
    instances[2:, 3:] = 2  # 6 px
    clusters = np.zeros((4, 6), int)
    clusters[:2, :2] = 5  # exactly instance 1: IoU 1
    clusters[2:, 4:] = 7  # 4 px inside instance 2: IoU 4/6
    assert cluster_instance_alignment(clusters, instances) == pytest.approx((1 + 4 / 6) / 2)
    assert cluster_instance_alignment(clusters, np.zeros_like(instances)) is None


def test_image_figures_split_instance_and_background():
    gt = np.full((2, 4), 10.0)
    pred = gt.copy()
    pred[0] = 20.0  # row 0 wrong by 2x
    instances = np.zeros((2, 4), int)
    instances[0, :2] = 1
    figures = np_metrics.image_figures(pred, gt, np.ones((2, 4), bool), instances, instances)
    assert figures["d1"] == 0.5 and figures["d1_instance"] == 0.0
    assert figures["d1_background"] == pytest.approx(4 / 6)
    assert figures["cluster_alignment"] == 1.0


def test_means_over_images_skip_missing_figures():
    means = MetricMeans()
    means.add({"abs_rel": 0.1, "d1_instance": None})
    means.add({"abs_rel": 0.3, "d1_instance": 0.5})
    assert means.means() == pytest.approx({"abs_rel": 0.2, "d1_instance": 0.5})


def test_torch_wrapper_matches_numpy_and_batch_figures():
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 1, 8, 16, generator=generator) * 30 + 1
    pred = gt * (1 + 0.3 * torch.randn(2, 1, 8, 16, generator=generator)).clamp(0.2)
    valid = torch.ones_like(gt, dtype=torch.bool)
    assert torch_metrics.depth_metrics(pred[0], gt[0], valid[0]) == depth_metrics(
        pred[0, 0].double().numpy(), gt[0, 0].double().numpy(), valid[0, 0].numpy()
    )
    instances = torch.zeros(2, 1, 8, 16, dtype=torch.long)
    instances[:, :, :4, :4] = 1
    attn = torch.zeros(2, 4, 2, 4)
    attn[:, 1, :1, :1] = 1.0  # cluster 1 covers exactly the top-left 4x4 block at full size
    attn[:, 0] = 0.5
    figures = torch_metrics.batch_figures({"depth": pred, "attn": [attn]}, {"depth": gt, "valid": valid,
                                                                         "instances": instances}, 1e-3, 80)
    assert len(figures) == 2 and figures[0]["cluster_alignment"] == 1.0
    assert figures[1]["abs_rel"] == pytest.approx(torch_metrics.depth_metrics(pred[1], gt[1], valid[1])["abs_rel"])


def test_training_metrics_reuses_the_numpy_definition():
    assert torch_metrics.METRIC_NAMES is np_metrics.METRIC_NAMES
    assert "np.mean" not in open(torch_metrics.__file__).read()  # STYLE rule 1: one home
