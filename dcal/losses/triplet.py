"""Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss
for Person Re-Identification", arXiv:1703.07737) on cosine distance."""
import torch
import torch.nn.functional as F


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Mean over anchors of relu(hardest positive distance - hardest negative distance + margin).

    Args:
        embeddings: (B, E) unit-norm embeddings; distance is 1 - cosine.
        labels: (B,) identity labels.
        margin: required gap between the distances.

    Anchors without a positive or a negative in the batch are left out. A
    batch with no valid anchor returns a zero that keeps the graph.
    """
    emb = embeddings.float()
    dist = 1.0 - emb @ emb.t()  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    negative = ~same
    valid = positive.any(1) & negative.any(1)
    if not valid.any():
        return emb.sum() * 0.0
    hardest_positive = dist.masked_fill(~positive, float("-inf")).amax(1)
    hardest_negative = dist.masked_fill(~negative, float("inf")).amin(1)
    loss = F.relu(hardest_positive - hardest_negative + margin)
    return loss[valid].mean()
