"""Ground-truth cluster membership G (paper eq. 4) and its downsampling to each attention scale."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses.checks import check_ndim, check_same_shape


def fcm_membership(
    depth: torch.Tensor, instance_ids: torch.Tensor, valid: torch.Tensor, m: float = 2.0
) -> torch.Tensor:
    """Fuzzy C-means membership of each instance pixel to its own instance's depth centroid.

    depth: [H, W] metres; instance_ids: [H, W] integer, 0 = no instance, each positive id one instance;
    valid: [H, W] bool. Returns float32 [M, H, W], one row per instance with at least one valid depth
    pixel, in ascending id order. For pixel j of instance i (valid depth x_j):
        g_ij = |x_j - c_i|^(-2/(m-1)) / sum_k |x_j - c_k|^(-2/(m-1)),  k over all M centroids,
    with c_k the median valid depth of instance k (the mean of the two middle values for an even count).
    Where x_j equals one or more centroids the limit applies: those share 1 equally, the others get 0.
    g_ij = 0 outside instance i and at invalid pixels. Non-finite depth counts as invalid.
    """
    check_ndim("depth", depth, 2, "[H, W]")
    check_same_shape(depth=depth, instance_ids=instance_ids, valid=valid)
    if valid.dtype != torch.bool:
        raise ValueError(f"fcm_membership: valid must be bool, got {valid.dtype}")
    if instance_ids.is_floating_point():
        raise ValueError(f"fcm_membership: instance_ids must be an integer tensor, got {instance_ids.dtype}")
    if m <= 1.0:
        raise ValueError(f"fcm_membership: fuzziness m must be > 1, got {m}")

    depth64 = depth.detach().to(torch.float64)
    usable = valid & torch.isfinite(depth64)
    ids = [int(i) for i in torch.unique(instance_ids[usable & (instance_ids > 0)]).tolist()]
    height, width = depth.shape
    membership = torch.zeros(len(ids), height, width, dtype=torch.float32, device=depth.device)
    if not ids:
        return membership

    centroids = torch.stack(
        [torch.quantile(depth64[usable & (instance_ids == i)], 0.5) for i in ids]
    )  # [M]; quantile interpolates, so an even count gives the mean of the two middle values
    pixels = usable & (instance_ids > 0) & torch.isin(instance_ids, torch.tensor(ids, device=depth.device))
    x = depth64[pixels]  # [P]
    distance = (x[None, :] - centroids[:, None]).abs()  # [M, P]
    exponent = 2.0 / (m - 1.0)
    # Softmax of -exponent * log(distance) is the FCM ratio, computed without overflow for tiny distances.
    with torch.no_grad():
        at_centroid = distance == 0  # [M, P]
        log_weight = -exponent * torch.log(distance.clamp_min(torch.finfo(torch.float64).tiny))
        fuzzy = torch.softmax(log_weight, dim=0)
        exact = at_centroid / at_centroid.sum(0, keepdim=True).clamp_min(1)
        fcm = torch.where(at_centroid.any(0, keepdim=True), exact.to(fuzzy.dtype), fuzzy)  # [M, P]

    pixel_ids = instance_ids[pixels]  # [P]
    for row, instance in enumerate(ids):
        own = pixel_ids == instance
        values = torch.zeros_like(x)
        values[own] = fcm[row, own]
        membership[row][pixels] = values.to(torch.float32)
    return membership


def downsample_membership(
    membership: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid-aware area pooling of G [M, H, W] and valid [H, W] to ``size`` (h, w).

    Each low-resolution cell takes the mean membership over the valid full-resolution pixels it covers,
    and is valid when it covers at least one valid pixel (so sparse LiDAR ground truth survives).
    Returns (membership [M, h, w] float32, valid [h, w] bool).
    """
    check_ndim("membership", membership, 3, "[M, H, W]")
    check_ndim("valid", valid, 2, "[H, W]")
    if membership.shape[1:] != valid.shape:
        raise ValueError(
            f"shape mismatch: membership {tuple(membership.shape)} and valid {tuple(valid.shape)}"
        )
    weight = valid.to(torch.float32)[None, None]  # [1, 1, H, W]
    covered = F.adaptive_avg_pool2d(weight, size)[0, 0]  # [h, w] fraction of valid pixels
    if membership.shape[0] == 0:
        return membership.new_zeros((0, *size)), covered > 0
    pooled = F.adaptive_avg_pool2d(membership[None].float() * weight, size)[0]  # [M, h, w]
    small = torch.where(covered > 0, pooled / covered.clamp_min(1e-12), torch.zeros_like(pooled))
    return small, covered > 0
