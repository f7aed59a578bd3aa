"""Depth clusters: pixels -> clusters (eq. 1, transposed cross-attention) and clusters -> pixels (eq. 2)."""
from __future__ import annotations

import math

import torch
from torch import nn

# iDisc adds this before renormalising each cluster's attention over the pixels, so that a cluster no
# pixel votes for still takes a (uniform) mean instead of dividing by ~0.
ATTENTION_FLOOR = 1e-6


def mlp(dim: int, expansion: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * expansion), nn.GELU(), nn.Linear(dim * expansion, dim))


class ClusterUpdate(nn.Module):
    """Eq. 1: A1 = softmax_N(C_q F_k^T / sqrt(D)); C' = A1 F_v + C, then a residual MLP.

    Softmax runs over the N clusters (each pixel is a distribution over clusters); the values are then
    averaged per cluster with A1's rows renormalised over the pixels, as iDisc does.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm_clusters = nn.LayerNorm(dim)
        self.norm_pixels = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = mlp(dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, clusters: torch.Tensor, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """clusters [B, N, D], pixels [B, P, D] -> (updated clusters [B, N, D], A1 [B, N, P])."""
        query = self.query(self.norm_clusters(clusters))  # [B, N, D]
        normed = self.norm_pixels(pixels)
        key, value = self.key(normed), self.value(normed)  # [B, P, D]
        attn = torch.softmax(query @ key.transpose(1, 2) * self.scale, dim=1)  # [B, N, P], sums to 1 over N
        weights = attn + ATTENTION_FLOOR
        weights = weights / weights.sum(dim=2, keepdim=True)  # each cluster: a weighted mean over pixels
        clusters = clusters + self.proj(weights @ value)
        clusters = clusters + self.mlp(clusters)
        return clusters, attn


class ClusterToPixel(nn.Module):
    """Eq. 2: A2 = softmax_N(F_q C_k^T / sqrt(D)); F' = A2 C_v + F (softmax over clusters per pixel)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm_pixels = nn.LayerNorm(dim)
        self.norm_clusters = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, pixels: torch.Tensor, clusters: torch.Tensor) -> torch.Tensor:
        """pixels [B, P, D], clusters [B, N, D] -> updated pixels [B, P, D]."""
        query = self.query(self.norm_pixels(pixels))  # [B, P, D]
        normed = self.norm_clusters(clusters)
        key, value = self.key(normed), self.value(normed)  # [B, N, D]
        attn = torch.softmax(query @ key.transpose(1, 2) * self.scale, dim=2)  # [B, P, N]
        return pixels + self.proj(attn @ value)


class DepthClusters(nn.Module):
    """One learnable cluster matrix C [N, D] updated by ``iterations`` shared-weight passes per scale."""

    def __init__(self, num_clusters: int, dim: int, num_scales: int, iterations: int):
        super().__init__()
        self.clusters = nn.Parameter(torch.randn(num_clusters, dim) * 0.02)
        self.updates = nn.ModuleList(ClusterUpdate(dim) for _ in range(num_scales))
        self.iterations = iterations

    def update(self, clusters: torch.Tensor, pixels: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply scale ``scale``'s update ``iterations`` times; A1 of the last pass is returned."""
        attn = None
        for _ in range(self.iterations):
            clusters, attn = self.updates[scale](clusters, pixels)
        return clusters, attn

    def initial(self, batch: int) -> torch.Tensor:
        return self.clusters[None].expand(batch, -1, -1)  # [B, N, D]
