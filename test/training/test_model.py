"""ICMDepthNet: shapes, positivity, attention normalisation, input checks, local weights, learning."""
import math

import timm
import torch

import pytest

from training.losses import ICMCriterion
from training.model import ICMDepthNet


def small_net(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("img_size", (64, 160))
    return ICMDepthNet(**{"encoder": "resnet18", "num_clusters": 8, "dim": 64, **kwargs})


@pytest.mark.parametrize(
    "encoder,size", [("resnet18", (96, 224)), ("swin_tiny_patch4_window7_224", (96, 224))]
)
def test_output_shapes_positivity_and_attention(encoder, size):
    torch.manual_seed(0)
    net = ICMDepthNet(encoder, img_size=size, num_clusters=32, dim=256).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    height, width = size
    assert out["depth"].shape == (2, 1, height, width)
    assert bool((out["depth"] > 0).all()) and bool(torch.isfinite(out["depth"]).all())
    expected = [(2, 32, height // s, width // s) for s in (16, 8, 4)]
    assert [tuple(a.shape) for a in out["attn"]] == expected
    for attn in out["attn"]:
        torch.testing.assert_close(attn.sum(1), torch.ones_like(attn[:, 0]))
        assert bool((attn >= 0).all())


def test_parallel_variant_averages_three_depth_maps():
    net = small_net(update="parallel").eval()
    assert len(net.clusters) == 3 and len(net.predictors) == 3
    for predictor, metres in zip(net.predictors, (2.0, 4.0, 9.0)):
        torch.nn.init.constant_(predictor.head.bias, math.log(metres))  # weights start at 0: constant maps
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 160))
    assert len(out["attn"]) == 3
    torch.testing.assert_close(out["depth"], torch.full((1, 1, 64, 160), 5.0))  # mean of 2, 4 and 9 metres


def test_normalisation_happens_inside_the_model():
    net = small_net().eval()
    assert torch.allclose(net.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    initial = torch.full((1, 3, 64, 160), 0.5)
    with torch.no_grad():
        depth = net(initial)["depth"]
    # The depth head starts at a constant log-depth, so an untrained net predicts its init depth.
    torch.testing.assert_close(depth, torch.full_like(depth, 10.0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [(100, 160), (64, 150)])
def test_sizes_that_are_not_multiples_of_32_are_refused(size):
    with pytest.raises(ValueError, match=r"multiples of 32, got %dx%d" % size):
        small_net(img_size=size)
    net = small_net()
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, *size))


def test_swin_accepts_only_its_build_size():
    net = ICMDepthNet("swin_tiny_patch4_window7_224", img_size=(64, 128), num_clusters=4, dim=32)
    with pytest.raises(ValueError, match=r"built for 64x128 and accepts only that size, got 96x128"):
        net(torch.rand(1, 3, 96, 128))


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="'ring'"):
        small_net(update="ring")
    with pytest.raises(ValueError, match="unknown timm encoder 'resnet_nonexistent'"):
        small_net(encoder="resnet_nonexistent")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        small_net()(torch.rand(3, 64, 160))


def test_local_pretrained_weights_are_loaded_without_download(tmp_path):
    torch.manual_seed(123)
    reference = timm.create_model("resnet18", pretrained=False)
    weights = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), weights)
    net = small_net(pretrained_path=str(weights))
    torch.testing.assert_close(net.encoder.body.conv1.weight, reference.conv1.weight)
    torch.testing.assert_close(net.encoder.body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        small_net(pretrained_path=str(tmp_path / "missing.pth"))


@pytest.mark.slow
def test_paper_encoder_swin_large_builds_with_its_feature_widths():
    net = ICMDepthNet("swin_large_patch4_window7_224", img_size=(352, 1216))
    assert net.encoder.channels == [192, 384, 768, 1536]


def toy_batch(batch=2, size=(64, 160)):
    """A road-like toy scene: depth grows towards the horizon, two box 'cars' at known depths."""
    height, width = size
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    depth = (8.0 * height / (rows + 4.0)).clone()  # far at the top, near at the bottom
    instances = torch.zeros(height, width, dtype=torch.long)
    image = torch.stack([0.3 + 0.4 * rows / height] * 3)  # brightness follows distance
    for index, (top, left, metres) in enumerate([(20, 20, 12.0), (30, 100, 6.0)], start=1):
        depth[top:top + 16, left:left + 32] = metres
        instances[top:top + 16, left:left + 32] = index
        image[:, top:top + 16, left:left + 32] = torch.tensor([0.8, 0.1, 0.1])[:, None, None] * (10 / metres)
    return {
        "image": image.clamp(0, 1)[None].repeat(batch, 1, 1, 1),
        "depth": depth[None, None].repeat(batch, 1, 1, 1),
        "valid": torch.ones(batch, 1, height, width, dtype=torch.bool),
        "instances": instances[None, None].repeat(batch, 1, 1, 1),
    }


def test_a_few_optimiser_steps_lower_the_total_loss():
    net = small_net()
    criterion = ICMCriterion()
    batch = toy_batch()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        terms = criterion(net(batch["image"]), batch)
        total = criterion.total(terms)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        losses.append(total.item())
    assert set(terms) == {"loss_silog", "loss_icm_1", "loss_icm_2", "loss_icm_3"}
    assert losses[-1] < 0.8 * losses[0], losses
