"""Embedding neck and pair verification head.

Shape legend: B batch, C width, E embedding size.
"""
from __future__ import annotations

import torch
from torch import nn


class BNNeck(nn.Module):
    """BatchNorm without a learned shift, as in the re-identification "BNNeck".

    The feature after this layer feeds both the identity classifier and the
    cosine embedding; the missing bias keeps the classifier's features centred.
    """

    def __init__(self, width: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(width)
        self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        """Normalise (B, C) features; ``update_stats=False`` leaves the running statistics alone."""
        if update_stats or not self.training:
            return self.bn(x)
        bn = self.bn
        return torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)


class VerificationHead(nn.Module):
    """Score whether two embeddings show the same person; one logit per pair.

    The pair feature is [|a - b|, a * b]; both are exactly symmetric in float
    arithmetic, so ``head(a, b) == head(b, a)`` bit for bit. Train with
    ``BCEWithLogitsLoss`` and apply ``sigmoid`` only to report a probability.
    """

    def __init__(self, embed_dim: int, hidden_dim: int = 512):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * embed_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Return logits (B,) for embedding pairs a, b of shape (B, E)."""
        pair = torch.cat([(a - b).abs(), a * b], dim=-1)  # (B, 2E)
        return self.mlp(pair).squeeze(-1)
