"""timm backbones as multi-scale encoders, built without any download.

Accepted input sizes (height and width, any aspect ratio):
  * ResNet family (resnet18, resnet34, resnet50, ...): multiples of 32.
  * Swin family (swin_large_patch4_window7_224, swin_tiny_patch4_window7_224, ...): multiples of 32; the
    size is fixed when the model is built (``img_size``), and the model then only accepts that size.
  * Other timm CNNs with features at strides 4, 8, 16 and 32 work too under the multiple-of-32 rule.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

STRIDES = (4, 8, 16, 32)
SIZE_MULTIPLE = 32


def is_fixed_size(name: str) -> bool:
    """Transformers with absolute window geometry are built for one input size."""
    return name.startswith("swin")


class Encoder(nn.Module):
    """Returns feature maps [B, C_s, H/s, W/s] for s in 4, 8, 16, 32 (always NCHW)."""

    def __init__(self, name: str, img_size: tuple[int, int], pretrained_path: str | None = None):
        super().__init__()
        check_input_size(name, img_size)
        kwargs = {"img_size": tuple(img_size)} if is_fixed_size(name) else {}
        if pretrained_path is not None:
            path = Path(pretrained_path)
            if not path.is_file():
                raise FileNotFoundError(f"encoder weights file not found: {path}")
            # timm reads the local file (and adapts the keys for features_only); nothing is downloaded.
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        try:
            self.body = timm.create_model(name, features_only=True, **kwargs)
        except RuntimeError as error:
            if "Unknown model" in str(error):
                raise ValueError(f"unknown timm encoder {name!r}") from None
            raise
        reductions = self.body.feature_info.reduction()
        channels = self.body.feature_info.channels()
        missing = [s for s in STRIDES if s not in reductions]
        if missing:
            raise ValueError(f"encoder {name!r} has no features at stride(s) {missing}; it offers {reductions}")
        # The last feature of each wanted stride (deepest block at that resolution).
        self.indices = [max(i for i, r in enumerate(reductions) if r == s) for s in STRIDES]
        self.channels = [channels[i] for i in self.indices]
        self.channels_last = getattr(self.body, "output_fmt", "NCHW") == "NHWC"
        self.name = name
        self.img_size = tuple(img_size)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = self.body(image)
        selected = [features[i] for i in self.indices]
        if self.channels_last:
            selected = [f.permute(0, 3, 1, 2).contiguous() for f in selected]
        return selected


def check_input_size(name: str, size: tuple[int, int]) -> None:
    height, width = size
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(
            f"encoder {name!r} needs height and width that are positive multiples of {SIZE_MULTIPLE}, "
            f"got {height}x{width}"
        )
