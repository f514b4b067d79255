"""Tests for dcal.metrics: hand-computed cases, scikit-learn parity and plots."""
import math

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import brentq
from sklearn import metrics as skm

from dcal.metrics import (
    accuracy_at_threshold,
    best_accuracy_threshold,
    equal_error_rate,
    kfold_accuracy,
    mean_average_precision,
    pr_auc,
    rank_k_accuracy,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
    twin_outranks_rate,
    verification_report,
)
from dcal.metrics.plots import plot_det, plot_roc, plot_score_histograms


def pairs(positive, negative):
    """Build (scores, labels) from genuine and impostor score lists."""
    scores = np.array(list(positive) + list(negative), dtype=np.float64)
    labels = np.array([1] * len(positive) + [0] * len(negative))
    return scores, labels


def random_pairs(seed, size, decimals=None):
    """Return overlapping genuine and impostor scores. Rounding them creates many ties."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size)
    labels[:2] = [1, 0]
    scores = rng.normal(size=size) + 1.2 * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, labels


def sklearn_eer(scores, labels):
    """EER as the root of 1 - FAR = TAR on sklearn's linearly interpolated ROC."""
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-12)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------

def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([0.1, 0.2], [1])


def test_label_not_binary_raises():
    with pytest.raises(ValueError, match="got 2 at index 1"):
        roc_auc([0.1, 0.2], [1, 2])


def test_nan_score_raises():
    with pytest.raises(ValueError, match="must be finite"):
        roc_auc([0.1, float("nan")], [1, 0])


def test_empty_input_raises():
    with pytest.raises(ValueError, match="empty"):
        accuracy_at_threshold([], [], 0.5)


def test_single_class_roc_raises():
    with pytest.raises(ValueError, match="both genuine and impostor"):
        roc_curve([0.1, 0.2], [1, 1])


def test_far_out_of_range_raises():
    scores, labels = pairs([0.9], [0.1])
    with pytest.raises(ValueError, match="far must be in"):
        tar_at_far(scores, labels, 0.0)


# ---------------------------------------------------------------------------
# Hand-computed verification cases
# ---------------------------------------------------------------------------

def test_roc_curve_groups_ties():
    """A genuine and an impostor pair share 0.7, so they enter the curve together."""
    scores, labels = pairs([0.9, 0.7], [0.7, 0.3])
    far, tar, thresholds = roc_curve(scores, labels)
    np.testing.assert_allclose(far, [0.0, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(tar, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.7, 0.3])


def test_roc_auc_ties_count_half():
    # Genuine-impostor orderings: 0.5 vs 0.5 twice (1/2 each), 0.5 vs 0.1 twice.
    scores, labels = pairs([0.5, 0.5], [0.5, 0.1])
    assert roc_auc(scores, labels) == pytest.approx(0.75)


def test_roc_auc_all_equal_scores():
    scores, labels = pairs([0.4, 0.4, 0.4], [0.4, 0.4])
    assert roc_auc(scores, labels) == pytest.approx(0.5)


def test_eer_all_equal_scores():
    scores, labels = pairs([0.4, 0.4, 0.4], [0.4, 0.4])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(0.5)
    assert threshold == pytest.approx(0.4)


def test_eer_perfect_separation():
    scores, labels = pairs([0.8, 0.9], [0.1, 0.2])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == 0.0
    assert 0.2 < threshold < 0.8
    assert accuracy_at_threshold(scores, labels, threshold) == 1.0


def test_eer_inverted_scores():
    """Every impostor outscores every genuine pair: the worst possible ranking."""
    scores, labels = pairs([0.1, 0.2], [0.8, 0.9])
    eer, _ = equal_error_rate(scores, labels)
    assert eer == pytest.approx(1.0)
    assert roc_auc(scores, labels) == 0.0


def test_eer_exact_roc_point():
    # ROC: (0,1/3) at 0.9, (1/3,1/3) at 0.8, (1/3,2/3) at 0.6, where FAR = FRR = 1/3.
    scores, labels = pairs([0.9, 0.6, 0.4], [0.8, 0.5, 0.2])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.55)


def test_eer_interpolated_between_points():
    # At 0.8: FAR 1/3, FRR 1/2. At 0.7: FAR 2/3, FRR 1/2. Crossing halfway.
    scores, labels = pairs([0.9, 0.3], [0.8, 0.7, 0.1])
    eer, threshold = equal_error_rate(scores, labels)
    assert eer == pytest.approx(0.5)
    assert threshold == pytest.approx(0.75)


def test_pr_auc_hand_case():
    # Ranked: P N P N -> AP = (1/2)(1/1) + (1/2)(2/3).
    scores, labels = pairs([0.9, 0.5], [0.7, 0.1])
    assert pr_auc(scores, labels) == pytest.approx(0.5 + 1 / 3)


def test_tar_at_far_hand_case():
    # Ten impostors, one above 0.6, so FAR 0.1 allows accepting down to 0.6.
    negative = [0.7, 0.5, 0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.0, 0.0]
    scores, labels = pairs([0.9, 0.8, 0.6, 0.4], negative)
    result = tar_at_far(scores, labels, 0.1)
    assert result["tar"] == pytest.approx(0.75)
    assert result["threshold"] == pytest.approx(0.6)
    assert result["far_achieved"] == pytest.approx(0.1)
    assert result["resolvable"] is True
    assert result["note"] is None


def test_tar_at_far_unresolvable_note():
    scores, labels = pairs(np.linspace(0.5, 1.0, 50), np.linspace(0.0, 0.6, 300))
    result = tar_at_far(scores, labels, 1e-3)
    assert result["resolvable"] is False
    assert result["note"] == "only 300 negatives: FAR 1e-3 needs at least 1000"


def test_tar_at_far_enough_negatives():
    scores, labels = pairs([0.9], np.linspace(0.0, 0.5, 1000))
    assert tar_at_far(scores, labels, 1e-3)["resolvable"] is True


def test_tar_at_far_top_impostor():
    """When the top score is an impostor, FAR 0 means rejecting every pair."""
    scores, labels = pairs([0.5, 0.4], [0.9, 0.1])
    result = tar_at_far(scores, labels, 0.1)
    assert result["tar"] == 0.0
    assert result["far_achieved"] == 0.0
    assert result["threshold"] > 0.9
    assert math.isfinite(result["threshold"])


def test_threshold_at_far_matches_tar_at_far():
    scores, labels = random_pairs(seed=3, size=400)
    expected = tar_at_far(scores, labels, 1e-2)["threshold"]
    assert threshold_at_far(scores, labels, 1e-2) == expected


def test_accuracy_threshold_inclusive():
    """A score equal to the threshold is accepted."""
    assert accuracy_at_threshold([0.5, 0.2], [1, 0], 0.5) == 1.0


def test_best_accuracy_threshold_midpoint():
    scores, labels = pairs([0.6, 0.9], [0.1, 0.4])
    threshold, accuracy = best_accuracy_threshold(scores, labels)
    assert threshold == pytest.approx(0.5)
    assert accuracy == 1.0


def test_best_accuracy_threshold_rejects_all():
    """With only impostors, the best threshold must sit above every score."""
    threshold, accuracy = best_accuracy_threshold([0.3, 0.7], [0, 0])
    assert threshold > 0.7
    assert accuracy == 1.0


def test_kfold_accuracy_known_answer():
    # Folds 0 and 1 separate at any threshold in (0.3, 0.6). Fold 2 has an
    # impostor at 0.65, which the 0.45 threshold learnt on folds 0 and 1 accepts.
    scores = np.array([0.6, 0.7, 0.2, 0.3] * 2 + [0.6, 0.7, 0.2, 0.65])
    labels = np.array([1, 1, 0, 0] * 3)
    folds = np.repeat([0, 1, 2], 4)
    result = kfold_accuracy(scores, labels, folds)
    assert result["per_fold"] == pytest.approx([1.0, 1.0, 0.75])
    assert result["thresholds"] == pytest.approx([0.45, 0.45, 0.45])
    assert result["mean"] == pytest.approx(2.75 / 3)
    assert result["std"] == pytest.approx(np.std([1.0, 1.0, 0.75]))


def test_kfold_accuracy_one_fold_raises():
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold_accuracy([0.1, 0.9], [0, 1], [0, 0])


def test_kfold_accuracy_float_folds_raise():
    with pytest.raises(ValueError, match="integer fold ids"):
        kfold_accuracy([0.1, 0.9], [0, 1], [0.0, 1.0])


# ---------------------------------------------------------------------------
# Parity with scikit-learn
# ---------------------------------------------------------------------------

PARITY_CASES = [(0, 10, None), (1, 101, None), (2, 2000, None), (3, 500, 1), (4, 3000, 2)]


@pytest.mark.parametrize("seed,size,decimals", PARITY_CASES)
def test_roc_auc_matches_sklearn(seed, size, decimals):
    scores, labels = random_pairs(seed, size, decimals)
    assert roc_auc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed,size,decimals", PARITY_CASES)
def test_pr_auc_matches_sklearn(seed, size, decimals):
    scores, labels = random_pairs(seed, size, decimals)
    expected = skm.average_precision_score(labels, scores)
    assert pr_auc(scores, labels) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed,size,decimals", PARITY_CASES)
def test_roc_points_match_sklearn(seed, size, decimals):
    scores, labels = random_pairs(seed, size, decimals)
    far, tar, thresholds = roc_curve(scores, labels)
    fpr, tpr, sk_thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, fpr, atol=1e-12)
    np.testing.assert_allclose(tar, tpr, atol=1e-12)
    np.testing.assert_array_equal(thresholds, sk_thresholds)


@pytest.mark.parametrize("seed,size,decimals", PARITY_CASES)
def test_eer_matches_sklearn_roc(seed, size, decimals):
    scores, labels = random_pairs(seed, size, decimals)
    eer, _ = equal_error_rate(scores, labels)
    assert eer == pytest.approx(sklearn_eer(scores, labels), abs=1e-6)


@pytest.mark.parametrize("seed,size,decimals", PARITY_CASES)
def test_tar_at_far_within_target(seed, size, decimals):
    scores, labels = random_pairs(seed, size, decimals)
    result = tar_at_far(scores, labels, 0.05)
    negatives = scores[labels == 0]
    positives = scores[labels == 1]
    assert np.mean(negatives >= result["threshold"]) == pytest.approx(result["far_achieved"])
    assert result["far_achieved"] <= 0.05
    assert np.mean(positives >= result["threshold"]) == pytest.approx(result["tar"])


# ---------------------------------------------------------------------------
# Verification report
# ---------------------------------------------------------------------------

def report_case():
    scores = np.array([0.9, 0.8, 0.7, 0.4, 0.2, 0.1, 0.3, 0.75, 0.35])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    kinds = np.array(["positive"] * 4 + ["negative"] * 3 + ["twin_negative"] * 2)
    return scores, labels, kinds


def test_report_overall_section():
    scores, labels, kinds = report_case()
    overall = verification_report(scores, labels, kinds, 0.5)["overall"]
    assert overall["n_positive"] == 4
    assert overall["n_negative"] == 5
    assert overall["accuracy"] == pytest.approx(7 / 9)
    assert overall["negative_accept_rate"] == 0.0
    assert overall["twin_pair_accuracy"] == pytest.approx(0.5)
    assert overall["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))


def test_report_twin_section():
    scores, labels, kinds = report_case()
    twins = verification_report(scores, labels, kinds, 0.5)["twins"]
    assert twins["available"] is True
    assert twins["n_positive"] == 4
    assert twins["n_negative"] == 2
    assert twins["accuracy"] == pytest.approx(4 / 6)
    assert twins["twin_pair_accuracy"] == pytest.approx(0.5)
    # Twin 0.75 is beaten by 2 of 4 genuine scores, twin 0.35 by all 4.
    assert twins["roc_auc"] == pytest.approx(6 / 8)
    assert twins["tar_at_far_1e-2"]["resolvable"] is False


def test_report_without_twins():
    scores, labels, kinds = report_case()
    keep = kinds != "twin_negative"
    report = verification_report(scores[keep], labels[keep], kinds[keep], 0.5)
    assert report["twins"]["available"] is False
    assert "twin_negative" in report["twins"]["note"]
    assert "twin_pair_accuracy" not in report["overall"]


def test_report_has_both_tar_keys():
    scores, labels, kinds = report_case()
    overall = verification_report(scores, labels, kinds, 0.5)["overall"]
    assert set(overall["tar_at_far_1e-3"]) == {"tar", "threshold", "far_achieved", "resolvable", "note"}
    assert "tar_at_far_1e-2" in overall


def test_report_kind_label_mismatch():
    scores, labels, kinds = report_case()
    kinds[0] = "negative"
    with pytest.raises(ValueError, match="contradicts label 1"):
        verification_report(scores, labels, kinds, 0.5)


def test_report_unknown_kind_raises():
    scores, labels, kinds = report_case()
    kinds = kinds.astype(object)
    kinds[4] = "sibling"
    with pytest.raises(ValueError, match="'sibling' at index 4"):
        verification_report(scores, labels, kinds, 0.5)


# ---------------------------------------------------------------------------
# Identification
# ---------------------------------------------------------------------------

RANKED = [["b", "a", "c"], ["a", "c", "b"], ["c", "b", "a"]]
TRUTH = ["a", "a", "a"]


@pytest.mark.parametrize("k,expected", [(1, 1 / 3), (2, 2 / 3), (3, 1.0)])
def test_rank_k_accuracy_hand_case(k, expected):
    assert rank_k_accuracy(RANKED, TRUTH, k) == pytest.approx(expected)


def test_rank_k_zero_raises():
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        rank_k_accuracy(RANKED, TRUTH, 0)


def test_rank_k_length_mismatch_raises():
    with pytest.raises(ValueError, match="3 ranked lists for 2 probes"):
        rank_k_accuracy(RANKED, TRUTH[:2], 1)


def test_map_hand_case():
    # Probe 1: hits at ranks 1 and 3 -> (1 + 2/3) / 2. Probe 2: hit at rank 3 -> 1/3.
    ranked = [["a", "b", "a", "c"], ["b", "a", "c"]]
    result = mean_average_precision(ranked, ["a", "c"])
    assert result["map"] == pytest.approx((5 / 6 + 1 / 3) / 2)
    assert result["n"] == 2
    assert result["n_excluded"] == 0


def test_map_excludes_absent_identity():
    result = mean_average_precision([["a", "b"], ["a", "b"]], ["a", "z"])
    assert result["map"] == pytest.approx(1.0)
    assert result["n"] == 1
    assert result["n_excluded"] == 1


def test_map_truncated_list_counts():
    """A top-K list misses a third 'a' image: it must still count in the denominator."""
    result = mean_average_precision([["a", "b", "a"]], ["a"], gallery_counts={"a": 3, "b": 1})
    assert result["map"] == pytest.approx((1 + 2 / 3) / 3)


def test_map_all_excluded():
    result = mean_average_precision([["a"]], ["z"])
    assert result["map"] is None


def test_twin_outranks_rate_hand_case():
    ranked = [["y", "x", "a"], ["y", "x", "a"], ["a", "x", "y"]]
    result = twin_outranks_rate(ranked, ["x", "y", "a"], {"x": "y"})
    assert result["rate"] == pytest.approx(0.5)
    assert result["n"] == 2


def test_twin_outranks_missing_true_identity():
    """A twin in the list outranks a true identity that is missing from it."""
    result = twin_outranks_rate([["y", "b"]], ["x"], {"y": "x"}, gallery_identities={"x", "y", "b"})
    assert result["rate"] == 1.0


def test_twin_outranks_twin_not_enrolled():
    result = twin_outranks_rate([["x", "b"]], ["x"], {"x": "y"}, gallery_identities={"x", "b"})
    assert result["n"] == 0
    assert result["rate"] is None


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

def assert_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_plot_roc_writes_png(tmp_path):
    curves = {"model": random_pairs(5, 600), "empty": ([], []), "one class": ([0.2], [1])}
    path = plot_roc(curves, tmp_path / "roc.png", "ROC")
    assert_png(path)


def test_plot_det_writes_png(tmp_path):
    curves = {"model": random_pairs(6, 600), "ties": random_pairs(7, 300, decimals=1)}
    path = plot_det(curves, tmp_path / "plots" / "det.png", "DET")
    assert_png(path)


def test_plot_histograms_writes_png(tmp_path):
    scores, labels = random_pairs(8, 500)
    scores_by_kind = {"positive": scores[labels == 1], "negative": scores[labels == 0],
                      "twin_negative": np.array([])}
    path = plot_score_histograms(scores_by_kind, tmp_path / "hist.png", "Scores", threshold=0.6)
    assert_png(path)


def test_plot_leaves_no_temp_files(tmp_path):
    plot_score_histograms({"positive": [0.5, 0.6]}, tmp_path / "hist.png", "Scores")
    assert [entry.name for entry in tmp_path.iterdir()] == ["hist.png"]


def test_plots_without_data(tmp_path):
    """Every input skipped still gives a readable PNG rather than an error."""
    assert_png(plot_roc({"empty": ([], [])}, tmp_path / "roc.png", "ROC"))
    assert_png(plot_det({}, tmp_path / "det.png", "DET"))
    assert_png(plot_score_histograms({"negative": []}, tmp_path / "hist.png", "Scores"))
