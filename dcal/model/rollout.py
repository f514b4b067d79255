"""Attention rollout and top-R token selection for GLCA.

Rollout follows Abnar and Zuidema, "Quantifying Attention Flow in
Transformers" (arXiv:2005.00928): per block, average the attention over heads,
add the identity for the residual path, S' = 0.5 S + 0.5 I, then multiply the
blocks in order, R = S'_L ... S'_1. Row 0 of R measures how much each token
contributed to the final class token.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Multiply head-averaged, residual-mixed attention maps over blocks.

    Args:
        attentions: per-block attention probabilities, each (B, H, N, N), in
            block order (first block first).

    Returns:
        float32 tensor (B, N, N); each row sums to 1.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one attention map")
    B, H, N, _ = attentions[0].shape
    eye = torch.eye(N, device=attentions[0].device, dtype=torch.float32)
    rollout = eye.expand(B, N, N)
    for probs in attentions:
        mixed = 0.5 * probs.float().mean(dim=1) + 0.5 * eye  # (B, N, N)
        rollout = mixed @ rollout  # later blocks multiply from the left
    return rollout


def class_token_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Return row 0 of :func:`attention_rollout` without forming the full product.

    Row 0 of S'_L ... S'_1 is e_0 S'_L ... S'_1, so a row vector multiplied
    through the blocks from the last to the first gives it in L * N^2 work
    instead of L * N^3. At 448 px (785 tokens) that is about 0.015 instead of
    11.6 GFLOPs per image for ViT-B, counted with torch.utils.flop_counter.

    Returns:
        float32 tensor (B, 1, N); it sums to 1 over N.
    """
    if not attentions:
        raise ValueError("class_token_rollout needs at least one attention map")
    B, H, N, _ = attentions[0].shape
    row = torch.zeros(B, 1, N, device=attentions[0].device, dtype=torch.float32)
    row[:, 0, 0] = 1.0
    for probs in reversed(attentions):
        mean = probs.float().mean(dim=1)  # (B, N, N)
        row = 0.5 * (row @ mean) + 0.5 * row  # row @ (0.5 S + 0.5 I)
    return row


def num_local_tokens(num_patches: int, ratio: float) -> int:
    """Return how many patch tokens a ratio R selects: ceil(R * patches), at least 1."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"local token ratio must be in (0, 1], got {ratio}")
    return max(1, min(num_patches, math.ceil(ratio * num_patches)))


def select_local_tokens(rollout: torch.Tensor, ratio: float, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Pick the class token plus the top-R patch tokens by the class token's rollout row.

    Args:
        rollout: (B, N, N) from :func:`attention_rollout`, or its row 0 alone
            (B, 1, N) from :func:`class_token_rollout`.
        ratio: share of patch tokens to keep, in (0, 1].
        num_prefix_tokens: class (and register) tokens at the front; index 0
            (the class token) is always kept first.

    Returns:
        int64 indices (B, 1 + k) into the token axis, class token first, then
        patches in descending rollout order.
    """
    B, N, _ = rollout.shape
    scores = rollout[:, 0, num_prefix_tokens:]  # (B, N - prefix)
    k = num_local_tokens(scores.shape[1], ratio)
    top = scores.topk(k, dim=1).indices + num_prefix_tokens  # (B, k)
    cls = torch.zeros(B, 1, dtype=top.dtype, device=top.device)
    return torch.cat([cls, top], dim=1)
