"""1:1 verification metrics on pair scores: ROC, EER, TAR at FAR, accuracy.

Conventions shared by every function here:

- ``scores``: float64 of shape (n,), one score per pair. Higher means more
  likely the same person. Scores must be finite.
- ``labels``: int of shape (n,), 1 for a genuine pair (same person) and 0 for
  an impostor pair (different people).
- A pair is accepted when ``score >= threshold``. FAR (false accept rate) is
  the share of impostor pairs accepted, TAR (true accept rate) the share of
  genuine pairs accepted and FRR (false reject rate) is ``1 - TAR``.

ROC AUC counts tied genuine/impostor scores as half a correct ordering, and
PR AUC is average precision, ``AP = sum_n (R_n - R_{n-1}) P_n`` over the
distinct thresholds, without interpolation. Both match
``sklearn.metrics.roc_auc_score`` and ``average_precision_score``
(scikit-learn 1.9), which the tests check.

``kfold_accuracy`` follows the View 2 protocol of "Labeled Faces in the Wild:
A Database for Studying Face Recognition in Unconstrained Environments"
(Huang, Ramesh, Berg and Learned-Miller, UMass Amherst, 2007): each fold is
scored with the threshold chosen on the other folds.
"""
from __future__ import annotations

import math

import numpy as np

PAIR_KINDS = ("positive", "negative", "twin_negative")
REPORT_FARS = (1e-3, 1e-2)


# ---------------------------------------------------------------------------
# Input checks and the shared sorted-count pass
# ---------------------------------------------------------------------------

def _check_pairs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Convert and validate pair scores and labels.

    Raises:
        ValueError: if the arrays are not 1-D, differ in length, are empty,
            contain a non-finite score or a label other than 0 and 1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels_in = np.asarray(labels)
    if scores.ndim != 1 or labels_in.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1-D, got shapes {scores.shape} and {labels_in.shape}")
    if scores.shape != labels_in.shape:
        raise ValueError(
            f"scores and labels differ in length: {scores.size} scores, {labels_in.size} labels")
    if scores.size == 0:
        raise ValueError("scores and labels are empty: at least one pair is needed")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(
            f"scores must be finite, got {scores[bad[0]]} at index {bad[0]} "
            f"({bad.size} non-finite in total)")
    invalid = ~np.isin(labels_in, (0, 1))
    if invalid.any():
        index = int(np.flatnonzero(invalid)[0])
        raise ValueError(
            f"labels must be 0 (impostor) or 1 (genuine), got {labels_in[index].tolist()!r} "
            f"at index {index}")
    return scores, labels_in.astype(np.int64)


def _require_both_classes(labels: np.ndarray, metric: str) -> tuple[int, int]:
    """Return (n_positive, n_negative), raising ValueError when either is zero."""
    n_positive = int(labels.sum())
    n_negative = int(labels.size - n_positive)
    if n_positive == 0 or n_negative == 0:
        raise ValueError(
            f"{metric} needs both genuine and impostor pairs, got "
            f"{n_positive} genuine (label 1) and {n_negative} impostor (label 0)")
    return n_positive, n_negative


def _check_far(far) -> float:
    far = float(far)
    if not 0.0 < far <= 1.0:
        raise ValueError(f"far must be in (0, 1], got {far}")
    return far


def _check_threshold(threshold) -> float:
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN: pass a number (inf rejects every pair)")
    return threshold


def _cumulative_counts(scores: np.ndarray, labels: np.ndarray):
    """Count accepted pairs at each distinct score, from the highest down.

    Returns:
        (tps, fps, thresholds): int64, int64 and float64 arrays of shape (m,)
        where m is the number of distinct scores. Entry j counts the genuine
        (tps) and impostor (fps) pairs with ``score >= thresholds[j]``, and
        ``thresholds`` is decreasing. Grouping equal scores into one entry is
        what makes ties correct.
    """
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]
    tps = np.cumsum(sorted_labels)[last_of_group]
    fps = last_of_group + 1 - tps
    return tps, fps, sorted_scores[last_of_group]


def _reject_all_threshold(scores: np.ndarray) -> float:
    """Return the smallest float above every score, so that no pair is accepted."""
    return float(np.nextafter(scores.max(), np.inf))


# ---------------------------------------------------------------------------
# Curves and areas
# ---------------------------------------------------------------------------

def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute the ROC curve at every distinct score.

    Args:
        scores: float64 of shape (n,), finite.
        labels: int of shape (n,), 1 genuine and 0 impostor.

    Returns:
        (far, tar, thresholds), each float64 of shape (m + 1,) for m distinct
        scores. Point 0 is (0, 0) with threshold ``inf``, and point j > 0 is
        the operating point of ``score >= thresholds[j]``. far and tar are
        non-decreasing, thresholds decreasing. The points equal
        ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``.

    Raises:
        ValueError: on invalid input, or when one of the classes is absent.
    """
    scores, labels = _check_pairs(scores, labels)
    n_positive, n_negative = _require_both_classes(labels, "roc_curve")
    tps, fps, thresholds = _cumulative_counts(scores, labels)
    far = np.r_[0, fps] / n_negative
    tar = np.r_[0, tps] / n_positive
    return far, tar, np.r_[np.inf, thresholds]


def roc_auc(scores, labels) -> float:
    """Compute the area under the ROC curve by the trapezoidal rule.

    Equals the probability that a random genuine pair scores above a random
    impostor pair, with ties counted as one half.

    Raises:
        ValueError: on invalid input, or when one of the classes is absent.
    """
    far, tar, _ = roc_curve(scores, labels)
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def pr_auc(scores, labels) -> float:
    """Compute average precision, the step-wise area under the PR curve.

    Args:
        scores: float64 of shape (n,), finite.
        labels: int of shape (n,), 1 genuine and 0 impostor. Impostor pairs
            may be absent (AP is then 1.0), genuine pairs may not.

    Raises:
        ValueError: on invalid input or when there is no genuine pair.
    """
    scores, labels = _check_pairs(scores, labels)
    n_positive = int(labels.sum())
    if n_positive == 0:
        raise ValueError("pr_auc needs at least one genuine pair (label 1), got none")
    tps, fps, _ = _cumulative_counts(scores, labels)
    precision = tps / (tps + fps)
    recall = tps / n_positive
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# ---------------------------------------------------------------------------
# Operating points
# ---------------------------------------------------------------------------

def equal_error_rate(scores, labels) -> tuple[float, float]:
    """Find the rate where FAR equals FRR on the piecewise-linear ROC curve.

    Between two neighbouring ROC points the crossing and its threshold are
    interpolated linearly. When FAR equals FRR exactly at a ROC point, the
    threshold is the midpoint between that score and the next lower one, so
    perfectly separated classes give EER 0.0 with a threshold between them.

    Returns:
        (eer, threshold): the EER in [0, 1] and its threshold. If the crossing
        lies before the highest score (for example when all scores are equal,
        which gives 0.5), the threshold is the highest score.

    Raises:
        ValueError: on invalid input, or when one of the classes is absent.
    """
    scores, labels = _check_pairs(scores, labels)
    n_positive, n_negative = _require_both_classes(labels, "equal_error_rate")
    tps, fps, distinct = _cumulative_counts(scores, labels)
    fps = np.r_[0, fps]
    thresholds = np.r_[np.inf, distinct]
    # FAR - FRR times n_positive * n_negative, kept in integers so that an exact
    # crossing is detected exactly. It is negative at the (0, 0) start and
    # positive at the accept-all end.
    gap = fps * n_positive - (n_positive - np.r_[0, tps]) * n_negative
    i = int(np.argmax(gap >= 0))

    if gap[i] == 0:
        # Any threshold in (thresholds[i + 1], thresholds[i]] gives this point,
        # and i + 1 exists because the last point has a positive gap.
        return float(fps[i] / n_negative), float(thresholds[i] / 2.0 + thresholds[i + 1] / 2.0)

    weight = -gap[i - 1] / (gap[i] - gap[i - 1])
    eer = (fps[i - 1] + weight * (fps[i] - fps[i - 1])) / n_negative
    if i == 1:
        return float(eer), float(thresholds[1])
    threshold = thresholds[i - 1] + weight * (thresholds[i] - thresholds[i - 1])
    return float(eer), float(threshold)


def _format_far(far: float) -> str:
    return np.format_float_scientific(far, trim="-", exp_digits=1)


def tar_at_far(scores, labels, far) -> dict:
    """Find the largest TAR whose FAR does not exceed a target.

    Among ROC points with the same TAR, the one with the highest threshold
    (lowest FAR) is returned.

    Args:
        scores: float64 of shape (n,), finite.
        labels: int of shape (n,), 1 genuine and 0 impostor.
        far: target false accept rate in (0, 1].

    Returns:
        dict with ``tar``, ``threshold``, ``far_achieved``, ``resolvable``
        and ``note``. The threshold is always finite. When no pair may be
        accepted, it is the next float above the highest score.
        ``resolvable`` is False when there are fewer than ``1 / far``
        impostor pairs, because a single false accept then exceeds the
        target. ``note`` explains an unresolvable target and is None
        otherwise.

    Raises:
        ValueError: on invalid input, on ``far`` outside (0, 1], or when one
            of the classes is absent.
    """
    far = _check_far(far)
    scores, labels = _check_pairs(scores, labels)
    far_points, tar_points, thresholds = roc_curve(scores, labels)

    last_allowed = int(np.flatnonzero(far_points <= far)[-1])  # point 0 always qualifies
    best = int(np.searchsorted(tar_points[: last_allowed + 1], tar_points[last_allowed]))
    threshold = thresholds[best] if best > 0 else _reject_all_threshold(scores)

    n_negative = int(labels.size - labels.sum())
    needed = math.ceil(1.0 / far - 1e-9)  # 1e-9 absorbs rounding, as 1 / 1e-3 must be 1000
    resolvable = n_negative >= needed
    note = None
    if not resolvable:
        noun = "negative" if n_negative == 1 else "negatives"
        note = f"only {n_negative} {noun}: FAR {_format_far(far)} needs at least {needed}"
    return {
        "tar": float(tar_points[best]),
        "threshold": float(threshold),
        "far_achieved": float(far_points[best]),
        "resolvable": bool(resolvable),
        "note": note,
    }


def threshold_at_far(scores, labels, far) -> float:
    """Return the threshold of ``tar_at_far`` for the same target FAR.

    Raises:
        ValueError: as ``tar_at_far``.
    """
    return tar_at_far(scores, labels, far)["threshold"]


def accuracy_at_threshold(scores, labels, threshold) -> float:
    """Return the share of pairs classified correctly by ``score >= threshold``.

    Raises:
        ValueError: on invalid input or a NaN threshold.
    """
    threshold = _check_threshold(threshold)
    scores, labels = _check_pairs(scores, labels)
    return float(np.mean((scores >= threshold) == (labels == 1)))


def best_accuracy_threshold(scores, labels) -> tuple[float, float]:
    """Choose the threshold that maximises accuracy on the given pairs.

    Candidates are the midpoints between neighbouring distinct scores, the
    lowest score (accept all) and the next float above the highest score
    (reject all). Ties go to the highest threshold, which accepts fewest
    impostors.

    Returns:
        (threshold, accuracy) as floats.

    Raises:
        ValueError: on invalid input.
    """
    scores, labels = _check_pairs(scores, labels)
    n_negative = int(labels.size - labels.sum())
    tps, fps, distinct = _cumulative_counts(scores, labels)

    # Candidate 0 rejects all. Candidate j + 1 accepts exactly the scores >= distinct[j].
    correct = np.r_[n_negative, tps + n_negative - fps]
    midpoints = distinct[:-1] / 2.0 + distinct[1:] / 2.0
    # Adjacent floats can round their midpoint down onto the lower score.
    midpoints = np.where(midpoints > distinct[1:], midpoints, distinct[:-1])
    candidates = np.r_[_reject_all_threshold(scores), midpoints, distinct[-1]]

    best = int(np.argmax(correct))
    return float(candidates[best]), float(correct[best] / labels.size)


def kfold_accuracy(scores, labels, folds) -> dict:
    """Score each fold at the threshold chosen on all the other folds.

    Args:
        scores: float64 of shape (n,), finite.
        labels: int of shape (n,), 1 genuine and 0 impostor.
        folds: int of shape (n,), the fold id of each pair (LFW View 2 uses
            10 folds of 600 pairs). At least two distinct ids are needed.

    Returns:
        dict with ``mean`` and ``std`` (population standard deviation) of the
        per-fold accuracies, ``per_fold`` and ``thresholds`` (lists in the
        order of ``fold_ids``) and ``fold_ids`` (sorted distinct fold ids).

    Raises:
        ValueError: on invalid input, folds of another length, non-integer
            fold ids or fewer than two folds.
    """
    scores, labels = _check_pairs(scores, labels)
    folds = np.asarray(folds)
    if folds.shape != scores.shape:
        raise ValueError(
            f"folds must have one id per pair: got shape {folds.shape} for {scores.size} pairs")
    if not np.issubdtype(folds.dtype, np.integer):
        raise ValueError(f"folds must be integer fold ids, got dtype {folds.dtype}")
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ValueError(
            f"kfold_accuracy needs at least 2 folds, got {fold_ids.size} (fold ids {fold_ids.tolist()})")

    per_fold, thresholds = [], []
    for fold in fold_ids:
        test = folds == fold
        threshold, _ = best_accuracy_threshold(scores[~test], labels[~test])
        thresholds.append(threshold)
        per_fold.append(accuracy_at_threshold(scores[test], labels[test], threshold))
    return {
        "mean": float(np.mean(per_fold)),
        "std": float(np.std(per_fold)),
        "per_fold": per_fold,
        "thresholds": thresholds,
        "fold_ids": fold_ids.tolist(),
    }


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def _check_kinds(kinds, labels: np.ndarray) -> np.ndarray:
    """Validate pair kinds against labels: 'positive' must be label 1, the others 0."""
    kinds = np.asarray(kinds, dtype=object)
    if kinds.shape != labels.shape:
        raise ValueError(
            f"kinds must have one entry per pair: got shape {kinds.shape} for {labels.size} pairs")
    unknown = ~np.isin(kinds, PAIR_KINDS)
    if unknown.any():
        index = int(np.flatnonzero(unknown)[0])
        raise ValueError(
            f"kinds must be one of {PAIR_KINDS}, got {kinds[index]!r} at index {index}")
    mismatch = (kinds == "positive") != (labels == 1)
    if mismatch.any():
        index = int(np.flatnonzero(mismatch)[0])
        raise ValueError(
            f"kind {kinds[index]!r} at index {index} contradicts label {labels[index]}: "
            "'positive' pairs need label 1 and the negative kinds label 0")
    return kinds


def _metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    n_positive, n_negative = _require_both_classes(labels, "verification_report")
    eer, eer_threshold = equal_error_rate(scores, labels)
    result = {
        "n_positive": n_positive,
        "n_negative": n_negative,
        "accuracy": accuracy_at_threshold(scores, labels, threshold),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "roc_auc": roc_auc(scores, labels),
        "pr_auc": pr_auc(scores, labels),
    }
    for far in REPORT_FARS:
        result[f"tar_at_far_{_format_far(far)}"] = tar_at_far(scores, labels, far)
    return result


def _reject_rate(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores < threshold))


def verification_report(scores, labels, kinds, threshold) -> dict:
    """Summarise verification quality overall and on twin impostors alone.

    Args:
        scores: float64 of shape (n,), finite.
        labels: int of shape (n,), 1 genuine and 0 impostor.
        kinds: str of shape (n,), each 'positive', 'negative' (regular
            impostor) or 'twin_negative' (the two people are twins).
        threshold: the calibrated decision threshold, at which accuracy and
            accept rates are measured.

    Returns:
        dict with ``threshold``, ``overall`` and ``twins``. Each metrics dict
        contains n_positive, n_negative, accuracy, eer, eer_threshold, roc_auc,
        pr_auc, and ``tar_at_far_1e-3`` and ``tar_at_far_1e-2`` (dicts from
        ``tar_at_far``). ``overall`` adds ``negative_accept_rate`` (share of
        regular negatives accepted, None without regular negatives) and, when
        twin negatives exist, ``twin_pair_accuracy`` (share of twin negatives
        rejected). ``twins`` scores positives against twin negatives only and
        contains ``available`` (True) and ``twin_pair_accuracy``, or
        ``{'available': False, 'note': ...}`` when there is no twin negative.

    Raises:
        ValueError: on invalid input, a NaN threshold, an unknown kind, a kind
            that contradicts its label, or when positives or negatives are
            absent.
    """
    threshold = _check_threshold(threshold)
    scores, labels = _check_pairs(scores, labels)
    kinds = _check_kinds(kinds, labels)
    twin = kinds == "twin_negative"
    regular = kinds == "negative"

    overall = _metrics(scores, labels, threshold)
    overall["negative_accept_rate"] = (
        1.0 - _reject_rate(scores[regular], threshold) if regular.any() else None)
    if not twin.any():
        twins = {"available": False,
                 "note": "no twin_negative pairs: twin metrics need at least one"}
        return {"threshold": threshold, "overall": overall, "twins": twins}

    twin_pair_accuracy = _reject_rate(scores[twin], threshold)
    overall["twin_pair_accuracy"] = twin_pair_accuracy
    subset = twin | (kinds == "positive")
    twins = {"available": True, **_metrics(scores[subset], labels[subset], threshold),
             "twin_pair_accuracy": twin_pair_accuracy}
    return {"threshold": threshold, "overall": overall, "twins": twins}
