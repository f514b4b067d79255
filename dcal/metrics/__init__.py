"""Evaluation metrics: 1:1 verification, 1:N identification and their plots.

The plot functions live in ``dcal.metrics.plots`` and import matplotlib only
when called.
"""
from dcal.metrics.identification import (
    mean_average_precision,
    rank_k_accuracy,
    twin_outranks_rate,
)
from dcal.metrics.verification import (
    accuracy_at_threshold,
    best_accuracy_threshold,
    equal_error_rate,
    kfold_accuracy,
    pr_auc,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
    verification_report,
)

__all__ = [
    "accuracy_at_threshold",
    "best_accuracy_threshold",
    "equal_error_rate",
    "kfold_accuracy",
    "mean_average_precision",
    "pr_auc",
    "rank_k_accuracy",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_far",
    "twin_outranks_rate",
    "verification_report",
]
