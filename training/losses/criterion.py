"""The training criterion: L = SIlog + ICM_1 + ICM_2 + ICM_3 (paper eq. 7), as named terms.

Two options, both off by default and both deviations from the paper (issue 15): ``icm_warmup_steps``
ramps the ICM weights linearly from 0 to their configured value over the first steps of training, and
``icm_reduction="mean"`` averages each ICM cost over its scale's pixels instead of summing them (eq. 5).
"""
from __future__ import annotations

import torch
from torch import nn

from training.losses.icm import icm_loss
from training.losses.matcher import REDUCTIONS
from training.losses.membership import downsample_membership, fcm_membership
from training.losses.silog import silog_loss

NUM_SCALES = 3
TERM_NAMES = ("loss_silog",) + tuple(f"loss_icm_{scale}" for scale in range(1, NUM_SCALES + 1))
# Paper eq. 7: every term with weight 1. The ablation's method I and II set the ICM weights to 0.
DEFAULT_WEIGHTS = {name: 1.0 for name in TERM_NAMES}


def icm_ramp(step: int, warmup_steps: int) -> float:
    """Factor on the ICM weights at optimiser step ``step`` (0 = the first step of the run).

    Rises linearly from 0 at step 0 to 1 at step ``warmup_steps`` and stays 1 after; ``warmup_steps`` 0
    (the paper) is 1 from the start.
    """
    if warmup_steps < 0:
        raise ValueError(f"icm_ramp: warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps == 0:
        return 1.0
    return min(1.0, max(step, 0) / warmup_steps)


class ICMCriterion(nn.Module):
    """Computes the unweighted loss terms; ``total`` combines them with one weight table.

    A term whose configured weight is 0 is not computed (method I/II of the ablation train without ICM);
    a term the warm-up holds at 0 still is (its value and gradient are logged from the first step).
    """

    def __init__(self, weights: dict[str, float] | None = None, fuzziness: float = 2.0,
                 icm_warmup_steps: int = 0, icm_reduction: str = "sum"):
        super().__init__()
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = sorted(set(weights) - set(TERM_NAMES))
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; allowed: {list(TERM_NAMES)}")
        if icm_reduction not in REDUCTIONS:
            raise ValueError(f"icm_reduction must be one of {list(REDUCTIONS)}, got {icm_reduction!r}")
        if icm_warmup_steps < 0:
            raise ValueError(f"icm_warmup_steps must be >= 0, got {icm_warmup_steps}")
        self.weights = {name: float(weights.get(name, 0.0)) for name in TERM_NAMES}
        self.fuzziness = fuzziness
        self.icm_warmup_steps = int(icm_warmup_steps)
        self.icm_reduction = icm_reduction

    def weights_at(self, step: int | None) -> dict[str, float]:
        """The weight table in force at optimiser step ``step``; None = after any warm-up."""
        ramp = 1.0 if step is None else icm_ramp(step, self.icm_warmup_steps)
        return {name: value * (ramp if name.startswith("loss_icm_") else 1.0) for name, value in self.weights.items()}

    def forward(self, outputs: dict, targets: dict) -> dict[str, torch.Tensor]:
        """outputs: {"depth": [B,1,H,W], "attn": list of 3 x [B,N,h_l,w_l]};
        targets: {"depth": [B,1,H,W] metres, "valid": [B,1,H,W] bool, "instances": [B,1,H,W] int}.
        Returns {"loss_silog": ..., "loss_icm_1": ..., ...} for the terms with non-zero weight."""
        gt, valid = targets["depth"], targets["valid"]
        valid = valid & torch.isfinite(gt)
        terms = {}
        if self.weights["loss_silog"] != 0:
            terms["loss_silog"] = silog_loss(outputs["depth"], gt, valid)
        scales = [s for s in range(1, NUM_SCALES + 1) if self.weights[f"loss_icm_{s}"] != 0]
        if not scales:
            return terms
        attn_maps = outputs["attn"]
        if len(attn_maps) != NUM_SCALES:
            raise ValueError(f"criterion expects {NUM_SCALES} attention maps, got {len(attn_maps)}")
        instances = targets["instances"]
        memberships = [
            fcm_membership(gt[b, 0], instances[b, 0], valid[b, 0], m=self.fuzziness) for b in range(gt.shape[0])
        ]
        for scale in scales:
            attn = attn_maps[scale - 1]  # [B, N, h, w]
            pooled = [downsample_membership(g, v[0], tuple(attn.shape[-2:])) for g, v in zip(memberships, valid)]
            terms[f"loss_icm_{scale}"] = icm_loss(
                attn, [member for member, _ in pooled], torch.stack([mask for _, mask in pooled]),
                self.icm_reduction,
            )
        return terms

    def total(self, terms: dict[str, torch.Tensor], step: int | None = None) -> torch.Tensor:
        """The weighted sum of ``terms`` at optimiser step ``step`` (None = after any warm-up)."""
        weights = self.weights_at(step)
        return sum(weights[name] * value for name, value in terms.items())
