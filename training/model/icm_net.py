"""ICMDepthNet: encoder -> FPN neck -> depth clusters -> metric depth (paper section II)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.model.clusters import ClusterToPixel, DepthClusters
from training.model.encoder import Encoder, check_input_size
from training.model.neck import FPNNeck

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UPDATE_MODES = ("sequential", "parallel")


class DepthPredictor(nn.Module):
    """Eq. 2-3: clusters -> pixels, then a per-pixel linear layer f giving log-depth."""

    def __init__(self, dim: int, init_depth: float):
        super().__init__()
        self.to_pixels = ClusterToPixel(dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, math.log(init_depth))  # start at a plausible road-scene depth

    def forward(self, features: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
        """features [B, D, h, w], clusters [B, N, D] -> log-depth [B, 1, h, w]."""
        batch, dim, height, width = features.shape
        pixels = features.flatten(2).transpose(1, 2)  # [B, h*w, D]
        pixels = self.to_pixels(pixels, clusters)
        log_depth = self.head(self.norm(pixels))  # [B, h*w, 1]
        return log_depth.transpose(1, 2).reshape(batch, 1, height, width)


class ICMDepthNet(nn.Module):
    """Monocular metric depth with instance-guided depth clusters.

    forward(image [B, 3, H, W] RGB in [0, 1]) -> {
        "depth": [B, 1, H, W] metres (> 0),
        "attn":  [A1 at F1 (1/16), A1 at F2 (1/8), A1 at F3 (1/4)], each [B, N, h_l, w_l], softmax over N.
    }
    ``update="sequential"`` updates one cluster matrix F1 -> F2 -> F3 (the paper, ablation II/III);
    ``"parallel"`` keeps one matrix per scale and averages three depth maps (ablation method I).
    Input sizes: see training/model/encoder.py (multiples of 32; Swin only its build size).
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        img_size: tuple[int, int] = (192, 640),
        num_clusters: int = 32,
        dim: int = 256,
        update: str = "sequential",
        iterations: int = 2,
        min_depth: float = 1e-3,
        max_depth: float = 80.0,
        init_depth: float = 10.0,
        pretrained_path: str | None = None,
    ):
        super().__init__()
        if update not in UPDATE_MODES:
            raise ValueError(f"update must be one of {UPDATE_MODES}, got {update!r}")
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.encoder = Encoder(encoder, img_size, pretrained_path)
        self.neck = FPNNeck(self.encoder.channels, dim)
        self.update_mode = update
        self.num_clusters = num_clusters
        self.min_depth, self.max_depth = min_depth, max_depth
        num_matrices = 3 if update == "parallel" else 1
        self.clusters = nn.ModuleList(DepthClusters(num_clusters, dim, 3, iterations) for _ in range(num_matrices))
        self.predictors = nn.ModuleList(DepthPredictor(dim, init_depth) for _ in range(num_matrices))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        self.check_input(image)
        features = self.neck(self.encoder((image - self.mean) / self.std))  # [F1, F2, F3], [B, D, h_l, w_l]
        batch = image.shape[0]
        pixels = [f.flatten(2).transpose(1, 2) for f in features]  # [B, h_l*w_l, D]
        attn_maps, log_depths = [], []
        if self.update_mode == "sequential":
            clusters = self.clusters[0].initial(batch)
            for scale, scale_pixels in enumerate(pixels):
                clusters, attn = self.clusters[0].update(clusters, scale_pixels, scale)
                attn_maps.append(attn)
            log_depths.append(self.predictors[0](features[2], clusters))
        else:
            for scale, scale_pixels in enumerate(pixels):
                clusters, attn = self.clusters[scale].update(self.clusters[scale].initial(batch), scale_pixels, scale)
                attn_maps.append(attn)
                log_depths.append(self.predictors[scale](features[scale], clusters))
        size = image.shape[-2:]
        # Upsample in log space (ratios interpolate, not metres); clamp keeps exp() finite.
        depths = [
            torch.exp(F.interpolate(d, size=size, mode="bilinear", align_corners=False).clamp(-15.0, 15.0))
            for d in log_depths
        ]
        depth = depths[0] if len(depths) == 1 else torch.stack(depths).mean(0)
        attn_maps = [a.reshape(batch, self.num_clusters, *f.shape[-2:]) for a, f in zip(attn_maps, features)]
        return {"depth": depth, "attn": attn_maps}

    def check_input(self, image: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"ICMDepthNet expects an image [B, 3, H, W], got shape {tuple(image.shape)}")
        size = tuple(image.shape[-2:])
        check_input_size(self.encoder.name, size)
        if self.encoder.img_size != size and self.encoder.name.startswith("swin"):
            raise ValueError(
                f"encoder {self.encoder.name!r} was built for {self.encoder.img_size[0]}x{self.encoder.img_size[1]} "
                f"and accepts only that size, got {size[0]}x{size[1]}"
            )
