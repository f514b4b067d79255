"""Explicit multi-head attention over a timm ViT block's own parameters.

Fused attention (``F.scaled_dot_product_attention``) does not return the
attention probabilities that attention rollout needs, and it cannot take
queries and keys of different lengths from different streams in the way GLCA
and PWCA do. These functions reuse a timm ``Block``'s parameters (qkv, q/k
norms, projection, MLP, layer scale, drop path) so the SA stream stays the
backbone itself and GLCA blocks can be plain deep copies of a timm block.

Shape legend: B batch, N tokens including the class token, M query tokens,
C width, H heads, D head size (C = H * D).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    B, N, A = x.shape  # A = H * D, the attention width
    return x.reshape(B, N, num_heads, A // num_heads).transpose(1, 2)  # (B, H, N, D)


def _project_qkv(attn: nn.Module, x: torch.Tensor):
    """Return q, k, v of shape (B, H, N, D), with the block's q/k norms applied."""
    B, N, C = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, D)
    return attn.q_norm(q), attn.k_norm(k), v


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            x_query: torch.Tensor):
    """Return the projected output (B, M, C) and the probabilities (B, H, M, N).

    ``x_query`` is the normalised query input (B, M, C); timm's optional
    output gate is computed from it.
    """
    B, H, M, D = q.shape
    logits = (q * attn.scale) @ k.transpose(-2, -1)  # (B, H, M, N)
    # Softmax in float32 so bf16/fp16 autocast does not saturate long rows
    # (785 keys at 448 px, 1,570 under PWCA).
    probs = logits.float().softmax(dim=-1).to(v.dtype)
    out = attn.attn_drop(probs) @ v  # (B, H, M, D)
    out = out.transpose(1, 2).reshape(B, M, H * D)  # (B, M, C)
    out = getattr(attn, "norm", nn.Identity())(out)
    gate = getattr(attn, "gate", None)
    if gate is not None:
        out = out * gate(x_query).sigmoid()
    out = attn.proj_drop(attn.proj(out))
    return out, probs


def _finish_block(block: nn.Module, x: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
    """Apply the block's residual, layer scale, drop path and MLP half."""
    x = x + block.drop_path1(block.ls1(attn_out))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def self_attention_block(block: nn.Module, x: torch.Tensor):
    """Run a timm ViT ``Block`` with explicit attention.

    Returns the block output (B, N, C), equal to ``block(x)`` within float
    tolerance, and the attention probabilities (B, H, N, N).
    """
    x_norm = block.norm1(x)
    q, k, v = _project_qkv(block.attn, x_norm)
    attn_out, probs = _attend(block.attn, q, k, v, x_norm)
    return _finish_block(block, x, attn_out), probs


def cross_attention_block(block: nn.Module, x_query: torch.Tensor, x_keys: torch.Tensor):
    """Run a block whose queries come from ``x_query`` and keys/values from ``x_keys``.

    Args:
        block: a timm ViT ``Block``.
        x_query: (B, M, C) tokens that are updated (residual stream).
        x_keys: (B, N, C) tokens that supply keys and values; the block's
            ``norm1`` is applied to them as it is to the queries.

    Returns:
        (B, M, C) updated query tokens.
    """
    attn = block.attn
    A = attn.attn_dim
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q_in = block.norm1(x_query)
    q = F.linear(q_in, weight[:A], None if bias is None else bias[:A])  # (B, M, A)
    q = attn.q_norm(_split_heads(q, attn.num_heads))  # (B, H, M, D)
    kv = F.linear(block.norm1(x_keys), weight[A:], None if bias is None else bias[A:])  # (B, N, 2A)
    k, v = kv.chunk(2, dim=-1)
    k = attn.k_norm(_split_heads(k, attn.num_heads))  # (B, H, N, D)
    v = _split_heads(v, attn.num_heads)  # (B, H, N, D)
    attn_out, _ = _attend(attn, q, k, v, q_in)
    return _finish_block(block, x_query, attn_out)
