"""The verification head's loss on in-batch pairs, with twin pairs over-represented.

Pairs are drawn from one identity-balanced batch: every positive pair, every
pair whose identities are twins, and regular negatives sampled to match the
number of positives. Twin negatives get ``twin_weight`` times the weight of a
regular negative, so the head is pushed hardest where look-alikes sit.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PairBatch:
    """Index pairs into a batch with targets and per-pair weights."""

    left: torch.Tensor  # (P,) int64
    right: torch.Tensor  # (P,) int64
    target: torch.Tensor  # (P,) float32, 1 = same identity
    weight: torch.Tensor  # (P,) float32
    is_twin: torch.Tensor  # (P,) bool


def build_pair_batch(labels: torch.Tensor, twin_of: dict[int, int] | None = None,
                     twin_weight: float = 2.0, generator: torch.Generator | None = None) -> PairBatch:
    """Build the training pairs of one batch from its labels (B,).

    Args:
        labels: identity labels of the batch.
        twin_of: label -> twin sibling's label, for identities that have one.
        twin_weight: weight of a twin negative relative to a regular negative.
        generator: random source for sampling regular negatives.
    """
    device = labels.device
    B = len(labels)
    left, right = torch.triu_indices(B, B, offset=1, device=device)  # all unordered pairs
    same = labels[left] == labels[right]
    twin = torch.zeros_like(same)
    if twin_of:
        sibling = torch.tensor([twin_of.get(int(label), -1) for label in labels.tolist()], device=device)
        twin = sibling[left] == labels[right]

    negatives = (~same & ~twin).nonzero().squeeze(1)
    n_keep = min(len(negatives), max(int(same.sum()), 1))
    order = torch.randperm(len(negatives), generator=generator)[:n_keep].to(device)
    keep = torch.cat([same.nonzero().squeeze(1), twin.nonzero().squeeze(1), negatives[order]])

    target = same[keep].float()
    weight = torch.ones_like(target)
    weight[twin[keep]] = twin_weight
    return PairBatch(left[keep], right[keep], target, weight, twin[keep])


def verification_loss(logits: torch.Tensor, pairs: PairBatch) -> torch.Tensor:
    """Weighted BCE-with-logits over the pair logits (P,), balanced between classes."""
    weight = pairs.weight.clone()
    positive = pairs.target > 0.5
    # Equal total weight for positives and negatives, whatever their counts.
    if positive.any() and (~positive).any():
        weight[positive] /= weight[positive].sum()
        weight[~positive] /= weight[~positive].sum()
    else:
        weight /= weight.sum()
    loss = F.binary_cross_entropy_with_logits(logits.float(), pairs.target, reduction="none")
    return (loss * weight).sum() / weight.sum()
