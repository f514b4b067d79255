"""Score pair sets with both scorers and compute verification metrics.

Twin results are always reported on their own: positives against twin
negatives only, so the few look-alike pairs are never averaged away among
thousands of easy negatives.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..inference import Embedder, cosine_scores
from ..metrics.verification import best_accuracy_threshold, equal_error_rate, kfold_accuracy, verification_report
from .protocols import PairSet

logger = logging.getLogger(__name__)

SCORERS = ("cosine", "head")


def embed_pairs(embedder: Embedder, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Embed each distinct image of the pairs once; returns (a, b, failures) with NaN rows for failures."""
    paths = sorted(set(pairs["path_a"]) | set(pairs["path_b"]))
    position = {p: i for i, p in enumerate(paths)}
    embeddings, failures = embedder.embed_all(paths)
    a = embeddings[pairs["path_a"].map(position).to_numpy()]
    b = embeddings[pairs["path_b"].map(position).to_numpy()]
    return a, b, [(paths[i], reason) for i, reason in failures]


def score_pairs(embedder: Embedder, pairs: pd.DataFrame, scorers=SCORERS,
                ablations: bool = False) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Add one score column per scorer; pairs with an unreadable image are dropped (and returned as failures)."""
    a, b, failures = embed_pairs(embedder, pairs)
    ok = ~(np.isnan(a).any(1) | np.isnan(b).any(1))
    scored = pairs[ok].reset_index(drop=True).copy()
    a, b = a[ok], b[ok]
    if "cosine" in scorers:
        scored["cosine"] = cosine_scores(a, b)
    if "head" in scorers:
        scored["head"] = embedder.head_scores(a, b)
    if ablations and len(embedder.model.glca):
        full_parts = embedder.parts
        try:
            for parts in ("sa", "glca"):
                embedder.parts = parts
                pa, pb, _ = embed_pairs(embedder, scored)
                scored[f"cosine_{parts}"] = cosine_scores(pa, pb)
        finally:
            embedder.parts = full_parts
    return scored, failures


def choose_threshold(pair_set: PairSet, scored: pd.DataFrame, column: str, embedder: Embedder) -> tuple[float, str]:
    """Return the decision threshold for a score column and where it came from."""
    if pair_set.threshold_mode == "calibration-pairs":
        calib = scored[scored["role"] == "calibration"]
        threshold, _ = best_accuracy_threshold(calib[column].to_numpy(), calib["label"].to_numpy())
        return threshold, "best accuracy on the calibration pairs (pairsDevTrain.txt)"
    if pair_set.threshold_mode == "kfold":
        test = scored[scored["role"] == "test"]
        result = kfold_accuracy(test[column].to_numpy(), test["label"].to_numpy(), test["fold"].to_numpy())
        return float(np.mean(result["thresholds"])), "mean of the 10 per-fold thresholds (each chosen on 9 folds)"
    scorer = "head" if column == "head" else "cosine"
    stored = embedder.thresholds.get(scorer, {}).get("eer")
    if stored is not None and column in SCORERS:
        return float(stored), "calibrated on validation data at training time (EER threshold)"
    test = scored[scored["role"] == "test"]
    threshold, _ = equal_error_rate(test[column].to_numpy(), test["label"].to_numpy())
    return threshold, "EER threshold of these pairs (no calibrated threshold in the checkpoint; optimistic)"


def scorer_metrics(pair_set: PairSet, scored: pd.DataFrame, column: str, embedder: Embedder) -> dict:
    """Overall and twin metrics of one score column at its threshold."""
    threshold, source = choose_threshold(pair_set, scored, column, embedder)
    test = scored[scored["role"] == "test"]
    with_lookalikes = scored[scored["role"].isin(["test", "lookalike"])]
    overall = verification_report(test[column].to_numpy(), test["label"].to_numpy(), test["kind"].to_numpy(),
                                  threshold)["overall"]
    twins = verification_report(with_lookalikes[column].to_numpy(), with_lookalikes["label"].to_numpy(),
                                with_lookalikes["kind"].to_numpy(), threshold)["twins"]
    result = {"threshold": threshold, "threshold_source": source, "overall": overall, "twins": twins}
    if pair_set.threshold_mode == "kfold":
        result["kfold_accuracy"] = kfold_accuracy(test[column].to_numpy(), test["label"].to_numpy(),
                                                  test["fold"].to_numpy())
    return result


def pair_counts(scored: pd.DataFrame, failures: list) -> dict:
    evaluated = scored[scored["role"].isin(["test", "lookalike"])]
    return {
        "pairs": int(len(evaluated)),
        "positive": int((evaluated["kind"] == "positive").sum()),
        "negative": int((evaluated["kind"] == "negative").sum()),
        "twin_negative": int((evaluated["kind"] == "twin_negative").sum()),
        "calibration_pairs": int((scored["role"] == "calibration").sum()),
        "images": int(len(set(scored["path_a"]) | set(scored["path_b"]))),
        "unreadable_images": [{"path": p, "reason": r} for p, r in failures],
    }
