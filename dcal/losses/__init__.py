"""DCAL training losses, one per module."""
from .identity import identity_loss
from .pair import PairBatch, build_pair_batch, verification_loss
from .triplet import batch_hard_triplet_loss
from .uncertainty import UncertaintyWeighting

__all__ = [
    "PairBatch",
    "UncertaintyWeighting",
    "batch_hard_triplet_loss",
    "build_pair_batch",
    "identity_loss",
    "verification_loss",
]
