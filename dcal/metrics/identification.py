"""1:N identification metrics on ranked gallery results.

Every function takes, per probe, the gallery labels in rank order (best match
first) and the probe's true identity. A ranked list may hold one entry per
identity (the aggregated output of a match) or one per gallery image. Each
function documents how it treats repeated labels.

``mean_average_precision`` follows the re-identification convention of
"Scalable Person Re-identification: A Benchmark" (Zheng et al., ICCV 2015):
the AP of a probe averages the precision at each correct gallery image over
all of that identity's gallery images. Given the full gallery counts, a
correct image ranked outside a truncated list therefore counts as precision 0.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _as_ranked_lists(ranked, true_identities) -> list[list]:
    """Return the ranked results as lists, one per probe.

    Raises:
        ValueError: unless there is one ranked list (a list, tuple or array of
            labels, not a str) per true identity, and at least one probe.
    """
    if len(ranked) != len(true_identities):
        raise ValueError(
            f"got {len(ranked)} ranked lists for {len(true_identities)} probes: "
            "pass one ranked list per probe")
    if len(ranked) == 0:
        raise ValueError("no probes: pass at least one ranked list")
    lists = []
    for index, entry in enumerate(ranked):
        if isinstance(entry, (str, bytes)) or not isinstance(entry, (Sequence, np.ndarray)):
            raise ValueError(
                f"ranked list {index} must be a list of labels, got {type(entry).__name__}")
        lists.append(list(entry))
    return lists


def _first_rank(ranked: Sequence[str], identity: str) -> float:
    """Return the 0-based position of the first ``identity`` entry, or inf if absent."""
    for position, label in enumerate(ranked):
        if label == identity:
            return position
    return float("inf")


def rank_k_accuracy(ranked_identities, true_identities, k) -> float:
    """Return the share of probes whose true identity is among the first k entries.

    Entries are counted as given, so for image-level lists this is the
    cumulative match characteristic (CMC) at rank k of re-identification. A
    probe whose identity is missing from its list counts as a miss.

    Args:
        ranked_identities: list of n lists of str, gallery labels best first.
        true_identities: list of n str, each probe's identity.
        k: rank cut-off, an int >= 1.

    Raises:
        ValueError: if the lists differ in length, are empty, or k < 1.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    ranked_lists = _as_ranked_lists(ranked_identities, true_identities)
    hits = [truth in ranked[:k] for ranked, truth in zip(ranked_lists, true_identities)]
    return float(np.mean(hits))


def _average_precision(ranked: Sequence[str], identity: str, n_relevant: int) -> float:
    hit_positions = np.flatnonzero([label == identity for label in ranked]) + 1  # 1-based ranks
    if hit_positions.size > n_relevant:
        raise ValueError(
            f"probe identity {identity!r} appears {hit_positions.size} times in its ranked "
            f"list but gallery_counts gives only {n_relevant} gallery items")
    precision_at_hits = np.arange(1, hit_positions.size + 1) / hit_positions
    return float(precision_at_hits.sum() / n_relevant)


def mean_average_precision(ranked_identities_per_probe, relevant_per_probe,
                           gallery_counts: Mapping[str, int] | None = None) -> dict:
    """Compute re-identification mAP over image-level ranked lists.

    Args:
        ranked_identities_per_probe: list of n lists of str, the identity of
            each gallery image, best match first.
        relevant_per_probe: list of n str, each probe's true identity.
        gallery_counts: number of gallery images per identity. When None,
            each ranked list is taken to be the whole gallery, and the
            identity's count in it is the number of relevant items. Pass it
            when the lists are truncated (a FAISS top-K).

    Returns:
        dict with ``map`` (float, None when every probe is excluded), ``n``
        (probes averaged) and ``n_excluded`` (probes whose identity has no
        gallery item, left out of the mean).

    Raises:
        ValueError: if the lists differ in length or are empty, or a list
            contains more items of an identity than ``gallery_counts`` allows.
    """
    ranked_lists = _as_ranked_lists(ranked_identities_per_probe, relevant_per_probe)
    average_precisions = []
    n_excluded = 0
    for ranked, identity in zip(ranked_lists, relevant_per_probe):
        if gallery_counts is None:
            n_relevant = sum(label == identity for label in ranked)
        else:
            n_relevant = int(gallery_counts.get(identity, 0))
        if n_relevant == 0:
            n_excluded += 1
            continue
        average_precisions.append(_average_precision(ranked, identity, n_relevant))

    mean = float(np.mean(average_precisions)) if average_precisions else None
    return {"map": mean, "n": len(average_precisions), "n_excluded": n_excluded}


def _sibling_map(twin_of: Mapping[str, str]) -> dict[str, set[str]]:
    """Make the twin relation symmetric. An identity may have several siblings (triplets)."""
    siblings: dict[str, set[str]] = {}
    for first, second in twin_of.items():
        if first == second:
            raise ValueError(f"twin_of maps {first!r} to itself")
        siblings.setdefault(first, set()).add(second)
        siblings.setdefault(second, set()).add(first)
    return siblings


def twin_outranks_rate(ranked_identities, true_identities, twin_of: Mapping[str, str],
                       gallery_identities=None) -> dict:
    """Return how often a probe's twin is ranked above the probe's own identity.

    A probe counts when its identity has a twin in the gallery. Its twin
    outranks it when the twin's first entry comes before the true identity's
    first entry. An identity missing from the list ranks below every entry.

    Args:
        ranked_identities: list of n lists of str, gallery labels best first.
        true_identities: list of n str, each probe's identity.
        twin_of: twin pairs as {identity: twin}. One direction is enough,
            and triplets may be given as several pairs.
        gallery_identities: identities enrolled in the gallery. When None,
            the union of all ranked lists is used.

    Returns:
        dict with ``rate`` (float, None when no probe counts) and ``n``
        (number of probes that count).

    Raises:
        ValueError: if the lists differ in length or are empty, or twin_of
            maps an identity to itself.
    """
    ranked_lists = _as_ranked_lists(ranked_identities, true_identities)
    siblings = _sibling_map(twin_of)
    if gallery_identities is None:
        # NOTE: with truncated lists a twin that never reaches any top-K is
        # missed here, which drops its probes from n. Pass gallery_identities then.
        gallery = {label for ranked in ranked_lists for label in ranked}
    else:
        gallery = set(gallery_identities)

    outranked = []
    for ranked, identity in zip(ranked_lists, true_identities):
        enrolled_siblings = siblings.get(identity, set()) & gallery
        if not enrolled_siblings:
            continue
        true_rank = _first_rank(ranked, identity)
        best_sibling_rank = min(_first_rank(ranked, sibling) for sibling in enrolled_siblings)
        outranked.append(best_sibling_rank < true_rank)

    rate = float(np.mean(outranked)) if outranked else None
    return {"rate": rate, "n": len(outranked)}
