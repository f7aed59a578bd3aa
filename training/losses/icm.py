"""The instance clustering membership (ICM) loss (paper eq. 5-6)."""
from __future__ import annotations

import torch

from training.losses.checks import check_ndim
from training.losses.matcher import hungarian_match, membership_cost


def icm_loss(attn: torch.Tensor, membership: list[torch.Tensor], valid: torch.Tensor,
             reduction: str = "sum") -> torch.Tensor:
    """ICM loss of one scale, averaged over the images of the batch that have an instance.

    attn: [B, N, h, w] cluster attention A1 (softmax over N); membership: B tensors [M_b, h, w] (G at this
    scale); valid: [B, h, w] bool. Per image, only valid pixels take part; the N x M_b cost of eq. 5 is
    matched by the Hungarian algorithm and the matched costs are summed and divided by N (eq. 6).
    ``reduction``: the cost sums over the image's valid pixels ("sum", the paper) or averages them ("mean",
    a deviation: the three scales' terms no longer carry their pixel counts; see membership_cost).
    Images with M_b = 0 (or no valid pixel) add nothing; with none left the result is 0, attached to
    ``attn``'s graph. Computed in float32 with autocast off.
    """
    check_ndim("attn", attn, 4, "[B, N, h, w]")
    batch, clusters, height, width = attn.shape
    if valid.shape != (batch, height, width):
        raise ValueError(f"shape mismatch: attn {tuple(attn.shape)} needs valid [B, h, w], got {tuple(valid.shape)}")
    if valid.dtype != torch.bool:
        raise ValueError(f"icm_loss: valid must be bool, got {valid.dtype}")
    if len(membership) != batch:
        raise ValueError(f"icm_loss: {len(membership)} membership tensors for a batch of {batch}")

    losses = []
    with torch.autocast(device_type=attn.device.type, enabled=False):
        for b in range(batch):
            member = membership[b]
            if member.ndim != 3 or member.shape[1:] != (height, width):
                raise ValueError(
                    f"shape mismatch: membership[{b}] {tuple(member.shape)} needs [M, {height}, {width}] "
                    f"to match attn {tuple(attn.shape)}"
                )
            mask = valid[b]
            if member.shape[0] == 0 or not bool(mask.any()):
                continue
            attn_pixels = attn[b].float()[:, mask]  # [N, P]
            member_pixels = member.float()[:, mask]  # [M, P]
            # An instance that vanished at this scale (no valid pixel left) has nothing to match.
            member_pixels = member_pixels[member_pixels.sum(1) > 0]
            if member_pixels.shape[0] == 0:
                continue
            cost = membership_cost(attn_pixels, member_pixels, reduction)  # [N, M]
            rows, cols = hungarian_match(cost)
            loss = cost[rows, cols].sum() / clusters
            if not bool(torch.isfinite(cost).all()):
                loss = loss + cost.sum() * 0.0  # NaN/inf anywhere makes the loss non-finite: the step is skipped
            losses.append(loss)
    if not losses:
        return attn.sum() * 0.0
    return torch.stack(losses).mean()
