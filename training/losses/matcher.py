"""Hungarian matching of depth clusters to instances (paper eq. 5-6)."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

LOG_CLAMP = 1e-6  # log arguments are clamped to [1e-6, 1 - 1e-6] (decided here: the paper's eq. 5 takes logs of memberships that can be 0 or 1)
REDUCTIONS = ("sum", "mean")  # over the pixels of eq. 5: "sum" is the paper; "mean" a deviation (issue 15)


def membership_cost(attn: torch.Tensor, membership: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Cross-entropy cost l_ii' between every cluster row and every instance row (eq. 5).

    attn: [N, P] attention of the valid pixels; membership: [M, P]. Rows are L2-normalised over the P
    pixels, then l_ii' = -g_i' . log(a_i) - (1 - g_i') . log(1 - a_i), summed over pixels (``"sum"``,
    the paper) or divided by P (``"mean"``, not in the paper). Returns [N, M].
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"membership_cost: reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    attn_hat = attn / attn.norm(dim=1, keepdim=True).clamp_min(1e-12)
    member_hat = membership / membership.norm(dim=1, keepdim=True).clamp_min(1e-12)
    attn_hat = attn_hat.clamp(LOG_CLAMP, 1.0 - LOG_CLAMP)
    log_a = torch.log(attn_hat)  # [N, P]
    log_not_a = torch.log1p(-attn_hat)  # [N, P]
    # -(g . log a) - ((1 - g) . log(1 - a)) = -(g . log a) - sum(log(1 - a)) + (g . log(1 - a))
    cost = -(log_a @ member_hat.T) - log_not_a.sum(1, keepdim=True) + log_not_a @ member_hat.T
    return cost / attn.shape[1] if reduction == "mean" else cost


@torch.no_grad()
def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost assignment of min(N, M) cluster-instance pairs; returns (cluster rows, instance cols).

    Non-finite costs (a diverged network) are matched as the worst possible pairs instead of crashing
    scipy; the loss built from them stays non-finite, so the training loop sees and skips the step.
    """
    values = cost.detach().double().cpu().numpy()
    finite = np.isfinite(values)
    if not finite.all():
        worst = np.abs(values[finite]).max() * 2 + 1 if finite.any() else 1.0
        values = np.where(finite, values, worst)
    rows, cols = linear_sum_assignment(values)
    device = cost.device
    return torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)
