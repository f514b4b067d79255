"""The DCAL training objective as one module, so DDP syncs every learned weight.

The learned uncertainty weights live next to the model inside this module:
wrapping both in one DDP instance keeps their gradients averaged across
processes like any other parameter.
"""
from __future__ import annotations

import torch
from torch import nn

from ..losses import (
    UncertaintyWeighting,
    batch_hard_triplet_loss,
    build_pair_batch,
    identity_loss,
    verification_loss,
)
from ..model import DCALModel

LOSS_NAMES = ("sa", "glca", "pwca", "triplet", "verify")


class DCALObjective(nn.Module):
    """Compute every DCAL loss term and their uncertainty-weighted sum."""

    def __init__(self, model: DCALModel, label_smoothing: float, triplet_margin: float,
                 twin_weight: float, twin_of: dict[int, int]):
        super().__init__()
        self.model = model
        self.weighting = UncertaintyWeighting(list(LOSS_NAMES))
        self.label_smoothing = label_smoothing
        self.triplet_margin = triplet_margin
        self.twin_weight = twin_weight
        self.twin_of = twin_of

    def forward(self, images: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor | None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        pairs = build_pair_batch(labels, self.twin_of, self.twin_weight, generator)
        out = self.model(images, partner, pairs=(pairs.left, pairs.right))

        losses = {"sa": identity_loss(out["sa_logits"], labels, self.label_smoothing)}
        if "glca_logits" in out:
            losses["glca"] = identity_loss(out["glca_logits"], labels, self.label_smoothing)
        if "pwca_logits" in out:
            # The PWCA stream is trained with image 1's label: the partner is only a distractor.
            losses["pwca"] = identity_loss(out["pwca_logits"], labels, self.label_smoothing)
        losses["triplet"] = batch_hard_triplet_loss(out["embedding"], labels, self.triplet_margin)
        losses["verify"] = verification_loss(out["pair_logits"], pairs)
        losses["total"] = self.weighting(losses)
        losses["twin_pairs"] = pairs.is_twin.sum().float()
        return losses
