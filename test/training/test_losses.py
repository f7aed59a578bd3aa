"""Values of the SIlog loss, the FCM membership, the ICM loss and the criterion."""
import itertools
import math

import numpy as np
import pytest
import torch

from training.losses import (
    ICMCriterion,
    downsample_membership,
    fcm_membership,
    icm_loss,
    silog_loss,
)


# ---------------------------------------------------------------- SIlog
def test_silog_matches_formula_on_valid_pixels():
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 1, 5, 6, generator=gen) * 50 + 1
    pred = gt * torch.exp(torch.randn(2, 1, 5, 6, generator=gen) * 0.2)
    valid = torch.rand(2, 1, 5, 6, generator=gen) > 0.3
    e = (np.log(pred.numpy() + 1e-6) - np.log(gt.numpy() + 1e-6))[valid.numpy()]
    expected = 10 * math.sqrt(e.var(ddof=1) + 0.15 * e.mean() ** 2 + 1e-6)
    assert silog_loss(pred, gt, valid).item() == pytest.approx(expected, rel=1e-5)


def test_silog_of_a_global_scale_is_the_mean_term_only():
    gt = torch.linspace(1, 40, 60).reshape(1, 1, 6, 10)
    valid = torch.ones_like(gt, dtype=torch.bool)
    loss = silog_loss(2.0 * gt, gt, valid)
    assert loss.item() == pytest.approx(10 * math.sqrt(0.15 * math.log(2.0) ** 2 + 1e-6), rel=1e-4)


def test_silog_ignores_invalid_and_non_finite_ground_truth():
    gt = torch.full((1, 1, 2, 2), 10.0)
    pred = torch.full((1, 1, 2, 2), 10.0)
    pred[0, 0, 0, 0] = 1000.0  # wrong, but marked invalid
    gt[0, 0, 1, 1] = float("nan")  # non-finite ground truth counts as invalid
    pred[0, 0, 1, 1] = 1.0
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[0, 0, 0, 0] = False
    assert silog_loss(pred, gt, valid).item() == pytest.approx(10 * math.sqrt(1e-6), abs=1e-6)


def test_silog_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"pred \(1, 1, 2, 2\).*gt \(1, 1, 2, 3\)"):
        silog_loss(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3), torch.ones(1, 1, 2, 2, dtype=torch.bool))


# ---------------------------------------------------------------- FCM membership
def small_scene():
    depth = torch.tensor([[2.0, 2.0, 4.0, 4.0], [2.0, 3.0, 4.0, 6.0], [9.0, 9.0, 9.0, 0.0]])
    ids = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 7]])  # id 7 has no valid depth pixel
    return depth, ids, depth > 0


def test_fcm_membership_against_hand_computed_values():
    depth, ids, valid = small_scene()
    g = fcm_membership(depth, ids, valid, m=2.0)
    # centroids: medians 2 (of 2,2,2,3), 4 (of 4,4,4,6), 9; instance 7 gets no row.
    assert g.shape == (3, 3, 4)
    expected = torch.zeros(3, 3, 4)
    expected[0, 0, 0] = expected[0, 0, 1] = expected[0, 1, 0] = 1.0  # at its own centroid
    expected[0, 1, 1] = 36 / 73  # x=3: distances 1, 1, 6 -> 1 / (1 + 1 + 1/36)
    expected[1, 0, 2] = expected[1, 0, 3] = expected[1, 1, 2] = 1.0
    expected[1, 1, 3] = (1 / 4) / (1 / 16 + 1 / 4 + 1 / 9)  # x=6: distances 4, 2, 3 -> 36/61
    expected[2, 2, 0:3] = 1.0
    torch.testing.assert_close(g, expected, rtol=1e-6, atol=1e-7)


def test_fcm_membership_even_count_median_and_fuzziness():
    depth = torch.tensor([[1.0, 3.0, 10.0, 10.0]])
    ids = torch.tensor([[4, 4, 9, 9]])
    g = fcm_membership(depth, ids, torch.ones_like(ids, dtype=torch.bool), m=3.0)
    # instance 4: median of (1, 3) = 2; instance 9: 10. m = 3 -> exponent 1.
    assert g.shape == (2, 1, 4)
    x1 = (1 / 1) / (1 / 1 + 1 / 9)
    x3 = (1 / 1) / (1 / 1 + 1 / 7)
    torch.testing.assert_close(g[0, 0], torch.tensor([x1, x3, 0.0, 0.0]))
    torch.testing.assert_close(g[1, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_fcm_membership_pixel_on_another_centroid_gets_zero():
    depth = torch.tensor([[5.0, 5.0, 5.0, 8.0, 8.0, 8.0, 5.0]])
    ids = torch.tensor([[1, 1, 1, 2, 2, 2, 2]])  # last pixel of instance 2 sits on instance 1's centroid
    g = fcm_membership(depth, ids, torch.ones_like(ids, dtype=torch.bool))
    assert g[1, 0, 6].item() == 0.0 and g[0, 0, 6].item() == 0.0


def test_fcm_membership_without_instances_has_no_rows():
    depth = torch.ones(3, 3)
    g = fcm_membership(depth, torch.zeros(3, 3, dtype=torch.long), torch.ones(3, 3, dtype=torch.bool))
    assert g.shape == (0, 3, 3)


def test_fcm_membership_rejects_bad_arguments():
    depth, ids, valid = small_scene()
    with pytest.raises(ValueError, match=r"depth \(3, 4\).*instance_ids \(2, 4\)"):
        fcm_membership(depth, ids[:2], valid)
    with pytest.raises(ValueError, match="integer"):
        fcm_membership(depth, ids.float(), valid)


def test_downsample_membership_is_valid_aware():
    g = torch.zeros(1, 4, 4)
    g[0, :2, :2] = torch.tensor([[1.0, 0.5], [0.2, 0.9]])
    valid = torch.ones(4, 4, dtype=torch.bool)
    valid[1, 1] = False  # its 0.9 must not count
    valid[2:, 2:] = False  # a cell with no valid pixel becomes invalid
    small, small_valid = downsample_membership(g, valid, (2, 2))
    assert small[0, 0, 0].item() == pytest.approx((1.0 + 0.5 + 0.2) / 3)
    assert small_valid.tolist() == [[True, True], [True, False]]
    assert small[0, 1, 1].item() == 0.0


# ---------------------------------------------------------------- ICM loss
def cost_by_definition(attn, member):
    """Eq. 5 pixel by pixel in float64: attn [N, P], member [M, P] (valid pixels only)."""
    a = attn.double().numpy()
    g = member.double().numpy()
    a_hat = np.clip(a / np.linalg.norm(a, axis=1, keepdims=True), 1e-6, 1 - 1e-6)
    g_hat = g / np.linalg.norm(g, axis=1, keepdims=True)
    cost = np.zeros((a.shape[0], g.shape[0]))
    for i in range(a.shape[0]):
        for k in range(g.shape[0]):
            cost[i, k] = -(g_hat[k] * np.log(a_hat[i])).sum() - ((1 - g_hat[k]) * np.log(1 - a_hat[i])).sum()
    return cost


def brute_force_icm(attn, member):
    cost = cost_by_definition(attn, member)
    n, m = cost.shape
    if n >= m:
        best = min(sum(cost[rows[k], k] for k in range(m)) for rows in itertools.permutations(range(n), m))
    else:
        best = min(sum(cost[i, cols[i]] for i in range(n)) for cols in itertools.permutations(range(m), n))
    return best / n


def random_case(n, m, height=4, width=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    attn = torch.softmax(torch.randn(1, n, height, width, generator=gen) * 2, dim=1)
    depth = torch.rand(height, width, generator=gen) * 30 + 2
    ids = torch.randint(0, m + 1, (height, width), generator=gen)
    ids.view(-1)[: m] = torch.arange(1, m + 1)  # every instance present
    valid = torch.rand(height, width, generator=gen) > 0.2
    valid.view(-1)[: m] = True
    return attn, depth, ids, valid


@pytest.mark.parametrize("n,m", [(4, 2), (5, 3), (2, 3), (3, 4)])
def test_icm_loss_equals_brute_force_over_assignments(n, m):
    attn, depth, ids, valid = random_case(n, m, seed=n * 10 + m)
    member = fcm_membership(depth, ids, valid)
    loss = icm_loss(attn, [member], valid[None])
    expected = brute_force_icm(attn[0][:, valid], member[:, valid])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_icm_loss_ignores_invalid_pixels():
    attn, depth, ids, valid = random_case(4, 2, seed=3)
    member = fcm_membership(depth, ids, valid)
    loss = icm_loss(attn, [member], valid[None])
    scrambled_attn = attn.clone()
    noise = torch.softmax(torch.randn_like(attn) * 5, dim=1)
    scrambled_attn[:, :, ~valid] = noise[:, :, ~valid]
    scrambled_member = member.clone()
    scrambled_member[:, ~valid] = torch.rand_like(scrambled_member)[:, ~valid]
    assert icm_loss(scrambled_attn, [scrambled_member], valid[None]).item() == pytest.approx(loss.item(), rel=1e-6)


def test_icm_loss_batched_is_mean_over_images_with_instances():
    a0, d0, i0, v0 = random_case(4, 2, seed=5)
    a1, d1, i1, v1 = random_case(4, 3, seed=6)
    a2, d2, _, v2 = random_case(4, 1, seed=7)
    g0, g1 = fcm_membership(d0, i0, v0), fcm_membership(d1, i1, v1)
    g2 = fcm_membership(d2, torch.zeros_like(i0), v2)  # an image without instances
    batched = icm_loss(torch.cat([a0, a1, a2]), [g0, g1, g2], torch.stack([v0, v1, v2]))
    separate = (icm_loss(a0, [g0], v0[None]) + icm_loss(a1, [g1], v1[None])) / 2
    assert batched.item() == pytest.approx(separate.item(), rel=1e-6)


def test_icm_loss_gradients_reach_the_attention():
    attn, depth, ids, valid = random_case(4, 2, seed=8)
    logits = torch.log(attn).clone().requires_grad_(True)
    loss = icm_loss(torch.softmax(logits, dim=1), [fcm_membership(depth, ids, valid)], valid[None])
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum().item() > 0
    assert logits.grad[:, :, ~valid].abs().max().item() == 0.0


def test_icm_loss_without_instances_is_zero_and_attached():
    attn = torch.softmax(torch.randn(2, 4, 3, 3), dim=1).requires_grad_(True)
    empty = [torch.zeros(0, 3, 3), torch.zeros(0, 3, 3)]
    loss = icm_loss(attn, empty, torch.ones(2, 3, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert attn.grad is not None


def test_icm_loss_of_non_finite_attention_is_non_finite_not_a_crash():
    attn, depth, ids, valid = random_case(4, 2, seed=9)
    member = fcm_membership(depth, ids, valid)
    attn = attn.clone()
    attn[0, 1, 0, 0] = float("nan")
    assert valid[0, 0]
    assert not torch.isfinite(icm_loss(attn, [member], valid[None]))


def test_icm_loss_names_mismatched_shapes():
    attn = torch.softmax(torch.randn(1, 4, 3, 3), dim=1)
    with pytest.raises(ValueError, match=r"membership\[0\] \(2, 4, 4\).*attn \(1, 4, 3, 3\)"):
        icm_loss(attn, [torch.zeros(2, 4, 4)], torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"valid"):
        icm_loss(attn, [torch.zeros(2, 3, 3)], torch.ones(1, 4, 3, dtype=torch.bool))


# ---------------------------------------------------------------- criterion
def criterion_inputs():
    gen = torch.Generator().manual_seed(1)
    depth = torch.rand(2, 1, 16, 16, generator=gen) * 20 + 1
    instances = torch.zeros(2, 1, 16, 16, dtype=torch.long)
    instances[0, 0, 2:8, 2:8], instances[0, 0, 9:14, 9:15], instances[1, 0, 4:12, 1:6] = 1, 2, 1
    valid = torch.ones(2, 1, 16, 16, dtype=torch.bool)
    attn = [torch.softmax(torch.randn(2, 4, s, s, generator=gen), dim=1) for s in (2, 4, 8)]
    outputs = {"depth": depth * 1.1, "attn": attn}
    return outputs, {"depth": depth, "valid": valid, "instances": instances}


def test_criterion_returns_named_terms_and_weighted_total():
    outputs, targets = criterion_inputs()
    criterion = ICMCriterion({"loss_silog": 1.0, "loss_icm_1": 0.5, "loss_icm_2": 1.0, "loss_icm_3": 2.0})
    terms = criterion(outputs, targets)
    assert sorted(terms) == ["loss_icm_1", "loss_icm_2", "loss_icm_3", "loss_silog"]
    expected = terms["loss_silog"] + 0.5 * terms["loss_icm_1"] + terms["loss_icm_2"] + 2 * terms["loss_icm_3"]
    assert criterion.total(terms).item() == pytest.approx(expected.item())
    # Scale 3 term equals the ICM loss on memberships pooled by hand to 8 x 8.
    pooled = [
        downsample_membership(fcm_membership(targets["depth"][b, 0], targets["instances"][b, 0], targets["valid"][b, 0]),
                              targets["valid"][b, 0], (8, 8))
        for b in range(2)
    ]
    direct = icm_loss(outputs["attn"][2], [p[0] for p in pooled], torch.stack([p[1] for p in pooled]))
    assert terms["loss_icm_3"].item() == pytest.approx(direct.item(), rel=1e-6)


def test_criterion_skips_zero_weight_terms_and_rejects_unknown_names():
    outputs, targets = criterion_inputs()
    terms = ICMCriterion({"loss_silog": 1.0})(outputs, targets)
    assert list(terms) == ["loss_silog"]
    with pytest.raises(ValueError, match="loss_icm_9"):
        ICMCriterion({"loss_icm_9": 1.0})


# ---------------------------------------------------------------- issue 15 options (deviations from the paper)
def test_icm_ramp_values_at_given_steps():
    from training.losses import icm_ramp

    assert [icm_ramp(step, 100) for step in (0, 1, 25, 50, 99, 100, 101, 5000)] == pytest.approx(
        [0.0, 0.01, 0.25, 0.5, 0.99, 1.0, 1.0, 1.0])
    assert icm_ramp(0, 0) == 1.0 and icm_ramp(7, 0) == 1.0  # no warm-up: the paper's eq. 7 from step 0
    with pytest.raises(ValueError, match="warmup_steps must be >= 0, got -1"):
        icm_ramp(3, -1)


def test_criterion_warm_up_scales_only_the_icm_weights():
    outputs, targets = criterion_inputs()
    criterion = ICMCriterion({"loss_silog": 1.0, "loss_icm_1": 0.5, "loss_icm_2": 1.0, "loss_icm_3": 2.0},
                             icm_warmup_steps=40)
    terms = criterion(outputs, targets)
    assert sorted(terms) == ["loss_icm_1", "loss_icm_2", "loss_icm_3", "loss_silog"]  # computed while ramped to 0
    assert criterion.weights_at(10) == {"loss_silog": 1.0, "loss_icm_1": 0.125, "loss_icm_2": 0.25,
                                        "loss_icm_3": 0.5}
    assert criterion.total(terms, 0).item() == pytest.approx(terms["loss_silog"].item())
    icm = 0.5 * terms["loss_icm_1"] + terms["loss_icm_2"] + 2 * terms["loss_icm_3"]
    assert criterion.total(terms, 10).item() == pytest.approx((terms["loss_silog"] + 0.25 * icm).item())
    assert criterion.total(terms, 40).item() == pytest.approx((terms["loss_silog"] + icm).item())
    assert criterion.total(terms).item() == pytest.approx((terms["loss_silog"] + icm).item())


def test_per_pixel_cost_is_the_sum_divided_by_the_pixel_count_on_a_hand_case():
    from training.losses import membership_cost

    # 2 clusters x 4 valid pixels, 1 instance. L2-normalised rows: a_0 = (0.5, 0.5, 0.5, 0.5);
    # a_1 = (0.8, 0.6, 0, 0) -> clamped to 1e-6 at the zeros; g = (1, 0, 0, 0).
    attn = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.4, 0.3, 0.0, 0.0]], dtype=torch.float64)
    member = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    clamp = 1e-6
    cost_0 = -math.log(0.5) - 3 * math.log(0.5)  # pixel 1: -log a; pixels 2-4: -log(1 - a)
    cost_1 = -math.log(0.8) - math.log(1 - 0.6) - 2 * math.log(1 - clamp)
    summed = membership_cost(attn, member)
    torch.testing.assert_close(summed, torch.tensor([[cost_0], [cost_1]], dtype=torch.float64))
    torch.testing.assert_close(membership_cost(attn, member, "mean"), summed / 4)
    with pytest.raises(ValueError, match="reduction must be one of \\['sum', 'mean'\\], got 'max'"):
        membership_cost(attn, member, "max")


def test_per_pixel_icm_loss_divides_each_image_by_its_valid_pixels():
    a0, d0, i0, v0 = random_case(4, 2, seed=11)
    a1, d1, i1, v1 = random_case(4, 3, seed=12)
    g0, g1 = fcm_membership(d0, i0, v0), fcm_membership(d1, i1, v1)
    assert int(v0.sum()) != int(v1.sum())  # the two images have different pixel counts
    mean = icm_loss(torch.cat([a0, a1]), [g0, g1], torch.stack([v0, v1]), reduction="mean")
    per_image = [icm_loss(a, [g], v[None]).item() / int(v.sum()) for a, g, v in ((a0, g0, v0), (a1, g1, v1))]
    assert mean.item() == pytest.approx(sum(per_image) / 2, rel=1e-6)


def test_criterion_per_pixel_terms_and_bad_options():
    outputs, targets = criterion_inputs()
    summed = ICMCriterion()(outputs, targets)
    mean = ICMCriterion(icm_reduction="mean")(outputs, targets)
    assert mean["loss_silog"].item() == summed["loss_silog"].item()
    for scale, pixels in ((1, 2 * 2), (2, 4 * 4), (3, 8 * 8)):  # every pixel valid at every scale
        assert mean[f"loss_icm_{scale}"].item() == pytest.approx(summed[f"loss_icm_{scale}"].item() / pixels, rel=1e-6)
    with pytest.raises(ValueError, match="icm_reduction must be one of"):
        ICMCriterion(icm_reduction="median")
    with pytest.raises(ValueError, match="icm_warmup_steps must be >= 0"):
        ICMCriterion(icm_warmup_steps=-5)
