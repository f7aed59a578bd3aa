"""Scale-invariant log loss (Eigen et al.), with iDisc's constants (SysCV/idisc: lambda 0.85, x10, eps 1e-6; docs/training.md)."""
from __future__ import annotations

import torch

from training.losses.checks import check_same_shape

EPS = 1e-6
VARIANCE_FOCUS = 0.85  # lambda: var(e) + (1 - lambda) * mean(e)^2


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """10 * sqrt(var(e) + 0.15 * mean(e)^2 + 1e-6), e = log(pred + eps) - log(gt + eps) over valid pixels.

    pred, gt: [B, 1, H, W] metres; valid: [B, 1, H, W] bool. Pixels whose gt is not finite or not
    positive count as invalid. The statistics run over all valid pixels of the batch together.
    A batch without a valid pixel gives 0, still attached to ``pred``'s graph.
    """
    check_same_shape(pred=pred, gt=gt, valid=valid)
    if valid.dtype != torch.bool:
        raise ValueError(f"silog_loss: valid must be bool, got {valid.dtype}")
    mask = valid & torch.isfinite(gt) & (gt > 0)
    if not bool(mask.any()):
        return pred.sum() * 0.0
    pred32, gt32 = pred.float()[mask], gt.float()[mask]
    error = torch.log(pred32 + EPS) - torch.log(gt32 + EPS)  # [P]
    # torch.var is unbiased; with a single pixel it is NaN, so fall back to 0 there.
    variance = torch.var(error) if error.numel() > 1 else error.sum() * 0.0
    return 10.0 * torch.sqrt(variance + (1.0 - VARIANCE_FOCUS) * error.mean() ** 2 + EPS)
