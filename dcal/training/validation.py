"""Validation during training: score held-out pairs and calibrate thresholds.

Pairs come from the validation identities (never seen in training). Both
scorers are reported: embedding cosine and the verification head's
probability; the twin columns use positives against twin negatives only.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..data.dataset import PathDataset, collate_paths
from ..metrics.verification import equal_error_rate, roc_auc, tar_at_far, threshold_at_far
from ..model import DCALModel

logger = logging.getLogger(__name__)


@torch.inference_mode()
def embed_paths(model: DCALModel, paths: list[str], transform, device: torch.device,
                batch_size: int = 64, num_workers: int = 0, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Embed images with a model in eval mode; unreadable images give NaN rows."""
    out = np.full((len(paths), model.embed_dim), np.nan, dtype=np.float32)
    loader = DataLoader(PathDataset(paths, transform), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_paths)
    for images, indices, failures in loader:
        for index, reason in failures:
            logger.warning("validation image skipped: %s: %s", paths[index], reason)
        if not len(indices):
            continue
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            emb = model.embed(images.to(device))
        out[list(indices)] = emb.float().cpu().numpy()
    return out


@torch.inference_mode()
def head_probabilities(model: DCALModel, a: np.ndarray, b: np.ndarray, device: torch.device) -> np.ndarray:
    logits = model.verify_logits(torch.from_numpy(a).to(device), torch.from_numpy(b).to(device))
    return torch.sigmoid(logits.float()).cpu().numpy()


def _scorer_metrics(scores: np.ndarray, labels: np.ndarray, twin_mask: np.ndarray, target_far: float) -> dict:
    eer, eer_threshold = equal_error_rate(scores, labels)
    tar = tar_at_far(scores, labels, target_far)
    metrics = {
        "eer": eer,
        "eer_threshold": eer_threshold,
        "roc_auc": roc_auc(scores, labels),
        "tar_at_far": tar["tar"],
        "far_threshold": threshold_at_far(scores, labels, target_far),
    }
    twins = (labels == 1) | twin_mask
    if twin_mask.any():
        twin_eer, _ = equal_error_rate(scores[twins], labels[twins])
        metrics["twin_eer"] = twin_eer
        metrics["twin_roc_auc"] = roc_auc(scores[twins], labels[twins])
        # Share of twin negatives rejected at the overall EER threshold.
        metrics["twin_reject_rate"] = float((scores[twin_mask] < eer_threshold).mean())
    return metrics


def validate(model: DCALModel, pairs: pd.DataFrame, transform, device: torch.device,
             target_far: float = 0.01, amp_dtype: torch.dtype | None = None) -> dict:
    """Score validation pairs with cosine and head; returns metrics and thresholds.

    Returns:
        {"cosine": {...}, "head": {...}, "pairs": n} where each scorer has eer,
        eer_threshold, roc_auc, tar_at_far, far_threshold and, when twin
        negatives exist, twin_eer, twin_roc_auc and twin_reject_rate.
    """
    was_training = model.training
    model.eval()
    try:
        paths = sorted(set(pairs["path_a"]) | set(pairs["path_b"]))
        position = {p: i for i, p in enumerate(paths)}
        emb = embed_paths(model, paths, transform, device, amp_dtype=amp_dtype)
        a = emb[pairs["path_a"].map(position).to_numpy()]
        b = emb[pairs["path_b"].map(position).to_numpy()]
        ok = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
        a, b = a[ok], b[ok]
        labels = pairs["label"].to_numpy()[ok].astype(int)
        twin_mask = (pairs["kind"].to_numpy()[ok] == "twin_negative")
        cosine = np.einsum("ij,ij->i", a, b)
        head = head_probabilities(model, a, b, device)
        return {
            "pairs": int(ok.sum()),
            "cosine": _scorer_metrics(cosine, labels, twin_mask, target_far),
            "head": _scorer_metrics(head, labels, twin_mask, target_far),
        }
    finally:
        model.train(was_training)


def thresholds_from(metrics: dict, target_far: float) -> dict:
    """Pick the decision thresholds stored in a checkpoint from validation metrics."""
    return {
        scorer: {"eer": metrics[scorer]["eer_threshold"], "far": metrics[scorer]["far_threshold"],
                 "target_far": target_far}
        for scorer in ("cosine", "head")
    }
