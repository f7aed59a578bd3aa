"""FPN neck: backbone features at strides 4-32 -> F1, F2, F3 with D channels at 1/16, 1/8, 1/4.

iDisc uses a deformable-attention pixel decoder before its FPN; we keep the FPN top-down path (which
is what produces F1..F3) and drop the deformable encoder, which TensorRT and ONNX handle poorly.
The stride-32 feature feeds the top-down path but is not an output (iDisc drops the lowest resolution).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_norm_act(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(32, out_channels),
        nn.GELU(),
    )


class FPNNeck(nn.Module):
    def __init__(self, in_channels: list[int], dim: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(conv_norm_act(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(conv_norm_act(dim, dim, 3) for _ in in_channels[:-1])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: [B, C_s, H/s, W/s] for s = 4, 8, 16, 32. Returns [F1 (1/16), F2 (1/8), F3 (1/4)]."""
        top = self.lateral[-1](features[-1])
        outputs = []
        for level in range(len(features) - 2, -1, -1):  # 16 -> 8 -> 4
            lateral = self.lateral[level](features[level])
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            top = self.smooth[level](top)
            outputs.append(top)
        return outputs
