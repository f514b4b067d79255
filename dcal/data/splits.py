"""Identity-disjoint train/val/test splits that keep twin groups whole.

A random split by identity would put most twins' siblings in different
splits and leave the test set almost without twin negatives. Here every
group of identities connected by twin pairs goes to one split, and the
groups are spread over the splits in proportion to the ratios. Ratios are
fractions of identities, not of images.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
from collections.abc import Sequence

from dcal.data.manifest import FaceManifest

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
SPLITS_VERSION = 1


def make_splits(manifest: FaceManifest, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict:
    """Split a manifest's identities into train, val and test.

    Args:
        manifest: the data set; its usable twin pairs define the groups.
        ratios: fractions of identities for train, val and test; each >= 0,
            summing to 1.
        seed: random seed; the same manifest, ratios and seed give the same
            splits.

    Returns:
        A dict with ``train``, ``val``, ``test`` (sorted identity names),
        ``seed``, ``ratios``, ``counts`` (identities per split), ``version``
        and ``source``.

    Raises:
        ValueError: the ratios are invalid.
    """
    ratios = validate_ratios(ratios)
    assignment = _assign(manifest.identities(), manifest.twin_groups(), ratios, random.Random(seed))
    splits = _splits_dict(assignment, ratios, seed, manifest.source)
    for name, ratio in zip(SPLIT_NAMES, ratios):
        if ratio > 0 and not splits[name]:
            logger.warning("split %r is empty although its ratio is %s: the data set has too few identities",
                           name, ratio)
    logger.info("split %d identities: %s", len(manifest.images), splits["counts"])
    return splits


def given_splits(train_manifest: FaceManifest, test_manifest: FaceManifest, val_ratio: float = 0.1,
                 seed: int = 0) -> dict:
    """Use a data set's own train and test files, carving val out of train.

    Val takes about ``val_ratio`` of the train identities, keeping twin
    groups whole. Test is the test manifest's identities, as they are.

    Args:
        train_manifest: the set shipped for training.
        test_manifest: the set shipped for testing.
        val_ratio: fraction of the train identities moved to val, in [0, 1).
        seed: random seed for choosing the val identities.

    Returns:
        The same dict layout as :func:`make_splits`; ``ratios`` is None
        because the split between train and test was given.

    Raises:
        ValueError: val_ratio is outside [0, 1).
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"invalid val_ratio {val_ratio!r}: expected a fraction in [0, 1)")
    ratios = (1.0 - val_ratio, val_ratio, 0.0)
    assignment = _assign(train_manifest.identities(), train_manifest.twin_groups(), ratios, random.Random(seed))
    assignment["test"] = list(test_manifest.identities())
    overlap = sorted(set(assignment["test"]) & (set(assignment["train"]) | set(assignment["val"])))
    if overlap:
        logger.warning(
            "%d identities are in both the given train and test sets, for example %s; "
            "the splits are not identity-disjoint", len(overlap), overlap[:5],
        )
    splits = _splits_dict(assignment, None, seed, f"{train_manifest.source} + {test_manifest.source}")
    splits["val_ratio"] = val_ratio
    return splits


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Return ratios as a 3-tuple of floats, or raise ValueError naming the problem."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3:
        raise ValueError(f"invalid ratios {list(ratios)}: expected 3 values (train val test)")
    if any(r < 0 or math.isnan(r) for r in values):
        raise ValueError(f"invalid ratios {list(values)}: every ratio must be >= 0")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"invalid ratios {list(values)}: they sum to {sum(values):g}, expected 1")
    if values[0] == 0:
        raise ValueError(f"invalid ratios {list(values)}: the train ratio must be > 0")
    return values


def save_splits(splits: dict, path: str | os.PathLike) -> None:
    """Write splits to a JSON file atomically (temporary file, then rename)."""
    _validate_splits(splits, str(path))
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".splits-", suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(splits, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_splits(path: str | os.PathLike) -> dict:
    """Read and validate a splits JSON file written by :func:`save_splits`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, lacks ``train``, ``val`` or
            ``test``, a split is not a list of strings, or an identity is in
            two splits. Train and test may share identities only in files
            made from given train and test sets, whose ``ratios`` is null.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"splits file not found: {path!r}; create one with 'dcal-data split'")
    try:
        with open(path, encoding="utf-8") as f:
            splits = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON in splits file {path!r}: {exc}") from exc
    _validate_splits(splits, path)
    return splits


def _validate_splits(splits, where: str) -> None:
    if not isinstance(splits, dict):
        raise ValueError(f"invalid splits in {where!r}: expected a JSON object with train, val and test lists")
    for name in SPLIT_NAMES:
        if name not in splits:
            raise ValueError(f"invalid splits in {where!r}: the {name!r} list is missing")
        members = splits[name]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise ValueError(f"invalid splits in {where!r}: {name!r} must be a list of identity names")
    # Given train and test files may share identities (a warning when they
    # are read); every other pair of splits must be disjoint.
    checked = [(0, 1), (0, 2), (1, 2)] if splits.get("ratios") is not None else [(0, 1)]
    for a, b in checked:
        shared = set(splits[SPLIT_NAMES[a]]) & set(splits[SPLIT_NAMES[b]])
        if shared:
            raise ValueError(
                f"invalid splits in {where!r}: {len(shared)} identities are in both "
                f"{SPLIT_NAMES[a]!r} and {SPLIT_NAMES[b]!r}, for example {sorted(shared)[:5]}"
            )


def _splits_dict(assignment: dict[str, list[str]], ratios, seed: int, source: str) -> dict:
    splits = {name: sorted(assignment[name]) for name in SPLIT_NAMES}
    splits.update(
        version=SPLITS_VERSION,
        seed=seed,
        ratios=list(ratios) if ratios is not None else None,
        counts={name: len(splits[name]) for name in SPLIT_NAMES},
        source=source,
    )
    return splits


def _assign(identities: list[str], groups: list[list[str]], ratios, rng: random.Random) -> dict[str, list[str]]:
    """Assign identities to splits, each twin group whole, with the given ratios.

    Twin groups are placed first, largest first. Each goes to a random split
    that still has room for it among its target number of twin identities,
    chosen with probability proportional to that room, so every split with a
    positive ratio receives twin groups in proportion. Single identities
    then fill each split up to its target.
    """
    known = set(identities)
    groups = [[m for m in g if m in known] for g in groups]
    groups = [g for g in groups if len(g) >= 2]
    grouped = {m for g in groups for m in g}
    singles = [i for i in identities if i not in grouped]

    rng.shuffle(groups)
    groups.sort(key=len, reverse=True)
    twin_targets = _targets(len(grouped), ratios)
    assignment = {name: [] for name in SPLIT_NAMES}
    twin_counts = [0, 0, 0]
    for group in groups:
        choice = _choose_split(len(group), twin_targets, twin_counts, ratios, rng)
        twin_counts[choice] += len(group)
        assignment[SPLIT_NAMES[choice]].extend(group)

    totals = _targets(len(identities), ratios)
    room = [max(totals[k] - twin_counts[k], 0) for k in range(3)]
    single_targets = _targets(len(singles), room if sum(room) > 0 else ratios)
    rng.shuffle(singles)
    start = 0
    for k, name in enumerate(SPLIT_NAMES):
        assignment[name].extend(singles[start : start + single_targets[k]])
        start += single_targets[k]
    return assignment


def _choose_split(size: int, targets, counts, ratios, rng: random.Random) -> int:
    """Pick a split index for a twin group of the given size."""
    room = [targets[k] - counts[k] if ratios[k] > 0 else -math.inf for k in range(3)]
    fitting = [k for k in range(3) if room[k] >= size]
    if fitting:
        return rng.choices(fitting, weights=[room[k] for k in fitting])[0]
    # No split has room left for the whole group: use the one furthest below target.
    best = max(room)
    return rng.choice([k for k in range(3) if room[k] == best])


def _targets(total: int, weights: Sequence[float]) -> list[int]:
    """Split total into integer parts proportional to weights (largest remainder)."""
    weight_sum = float(sum(weights))
    if total == 0 or weight_sum <= 0:
        return [0] * len(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda k: (parts[k] - exact[k], k))
    for k in order[: total - sum(parts)]:
        parts[k] += 1
    return parts
