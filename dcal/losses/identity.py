"""Identity cross-entropy with label smoothing, computed in float32."""
import torch
import torch.nn.functional as F


def identity_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy of logits (B, K) against labels (B,); logits are cast to float32 first
    so that bf16/fp16 autocast does not lose precision in the log-softmax."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
