"""Evaluation pairs: positives, twin negatives and regular negatives, saved as CSV.

A pairs CSV has the columns ``path_a, path_b, identity_a, identity_b,
label, kind``. The label is 1 for the same identity and 0 otherwise. The
kind is ``positive``, ``twin_negative`` (the two identities are a listed
twin pair) or ``negative``. Writing the pairs down lets a run be repeated
exactly.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dcal.data.twins import twin_groups

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ["path_a", "path_b", "identity_a", "identity_b", "label", "kind"]
PAIR_KINDS = ("positive", "twin_negative", "negative")

# Give up on drawing more regular negatives after this many draws per
# requested pair; only tiny data sets with few possible pairs get there.
_MAX_DRAWS_PER_PAIR = 20


def make_eval_pairs(
    images: dict[str, list[str]],
    twin_pairs: Sequence[tuple[str, str]],
    max_positives: int | None = 3000,
    max_twin_negatives: int | None = 3000,
    negative_ratio: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Build evaluation pairs for a set of identities.

    Args:
        images: identity -> image paths (for example ``manifest.images`` of
            a val or test subset).
        twin_pairs: twin pairs; pairs with an identity not in ``images`` are
            skipped.
        max_positives: cap on same-identity pairs. When there are more, a
            uniform random sample of this size is kept. None keeps all.
        max_twin_negatives: the same cap for twin negative pairs.
        negative_ratio: regular negative pairs to draw per positive pair.
            Regular negatives never pair two members of one twin group.
        seed: random seed; the same inputs and seed give the same pairs.

    Returns:
        A data frame with ``PAIR_COLUMNS``: positives, then twin negatives,
        then regular negatives, each block sorted by paths.

    Raises:
        ValueError: a cap or the ratio is negative.
    """
    for name, value in (("max_positives", max_positives), ("max_twin_negatives", max_twin_negatives)):
        if value is not None and value < 0:
            raise ValueError(f"invalid {name} {value}: expected >= 0 or None for no cap")
    if negative_ratio < 0:
        raise ValueError(f"invalid negative_ratio {negative_ratio}: expected >= 0")
    rng = np.random.default_rng(seed)
    positives = positive_pairs(images, max_positives, rng)
    twins = twin_negative_pairs(images, twin_pairs, max_twin_negatives, rng)
    negatives = regular_negative_pairs(images, twin_pairs, round(negative_ratio * len(positives)), rng)
    frame = pd.concat([positives, twins, negatives], ignore_index=True)
    logger.info("made %d positive, %d twin negative and %d negative pairs",
                len(positives), len(twins), len(negatives))
    return frame


def positive_pairs(images: dict[str, list[str]], max_pairs: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """Return every same-identity image pair, or a uniform sample of max_pairs of them."""
    names = [name for name in sorted(images) if len(images[name]) >= 2]
    sizes = [math.comb(len(images[name]), 2) for name in names]
    rows = []
    for block, rank in _sample_ranks(sizes, max_pairs, rng):
        paths = images[names[block]]
        i, j = _unrank_combination(rank, len(paths))
        rows.append((paths[i], paths[j], names[block], names[block], 1, "positive"))
    return _frame(rows)


def twin_negative_pairs(
    images: dict[str, list[str]],
    twin_pairs: Sequence[tuple[str, str]],
    max_pairs: int | None = 3000,
    seed: int | np.random.Generator = 0,
) -> pd.DataFrame:
    """Return every cross-image pair of each twin pair, or a uniform sample of max_pairs.

    Args:
        images: identity -> image paths.
        twin_pairs: (id_a, id_b) pairs; duplicates, self-pairs and pairs
            with an identity not in ``images`` are skipped.
        max_pairs: cap on the number of pairs; None keeps all.
        seed: random seed or a numpy Generator.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    usable, seen = [], set()
    for a, b in twin_pairs:
        key = frozenset((a, b))
        if a != b and key not in seen and images.get(a) and images.get(b):
            usable.append((a, b))
            seen.add(key)
    sizes = [len(images[a]) * len(images[b]) for a, b in usable]
    rows = []
    for block, rank in _sample_ranks(sizes, max_pairs, rng):
        a, b = usable[block]
        i, j = divmod(rank, len(images[b]))
        rows.append((images[a][i], images[b][j], a, b, 0, "twin_negative"))
    return _frame(rows)


def regular_negative_pairs(
    images: dict[str, list[str]],
    twin_pairs: Sequence[tuple[str, str]],
    count: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Draw distinct pairs of images of two unrelated identities.

    Identities are drawn uniformly (not in proportion to their image
    counts), then one image of each. Fewer than ``count`` pairs are returned
    when the data set has too few distinct pairs.
    """
    names = sorted(name for name, paths in images.items() if paths)
    group_of = {m: k for k, group in enumerate(twin_groups(twin_pairs)) for m in group}
    rows, seen = [], set()
    if len(names) < 2 or count <= 0:
        return _frame(rows)
    for _ in range(count * _MAX_DRAWS_PER_PAIR):
        if len(rows) >= count:
            break
        a, b = (names[k] for k in rng.choice(len(names), size=2, replace=False))
        if a in group_of and group_of.get(b) == group_of[a]:
            continue
        path_a = images[a][rng.integers(len(images[a]))]
        path_b = images[b][rng.integers(len(images[b]))]
        key = frozenset((path_a, path_b))
        if key in seen:
            continue
        seen.add(key)
        rows.append((path_a, path_b, a, b, 0, "negative"))
    if len(rows) < count:
        logger.warning("drew %d of %d requested negative pairs: too few distinct pairs", len(rows), count)
    return _frame(rows)


def write_pairs_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write pairs to CSV atomically (temporary file, then rename).

    Raises:
        ValueError: a column of ``PAIR_COLUMNS`` is missing.
    """
    _check_columns(df, str(path))
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pairs-", suffix=".csv.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            df[PAIR_COLUMNS].to_csv(f, index=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_pairs_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a pairs CSV.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty or not CSV, a column is missing, a
            label is not 0 or 1, or a kind is unknown. The message names the
            file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pairs file not found: {path!r}; create one with 'dcal-data pairs'")
    try:
        df = pd.read_csv(path, dtype={"path_a": str, "path_b": str, "identity_a": str, "identity_b": str},
                         keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid pairs file {path!r}: {exc}") from exc
    _check_columns(df, path)
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad_labels = df.index[~labels.isin([0, 1])]
    if len(bad_labels):
        row = int(bad_labels[0])
        raise ValueError(f"invalid label {df['label'][row]!r} in {path!r} at data row {row + 1}: expected 0 or 1")
    bad_kinds = df.index[~df["kind"].isin(PAIR_KINDS)]
    if len(bad_kinds):
        row = int(bad_kinds[0])
        raise ValueError(
            f"invalid kind {df['kind'][row]!r} in {path!r} at data row {row + 1}: expected one of {', '.join(PAIR_KINDS)}"
        )
    df["label"] = labels.astype(int)
    return df


def _check_columns(df: pd.DataFrame, where: str) -> None:
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"pairs file {where!r} lacks the column(s) {', '.join(missing)}; expected {', '.join(PAIR_COLUMNS)}"
        )


def _frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    frame["label"] = frame["label"].astype(int)
    return frame.sort_values(["path_a", "path_b"], kind="stable", ignore_index=True)


def _sample_ranks(sizes: list[int], max_pairs: int | None, rng: np.random.Generator):
    """Yield (block, rank within block) for all items, or a uniform sample of max_pairs.

    Items are numbered block by block, so a sample never enumerates every
    pair of a large identity.
    """
    total = sum(sizes)
    if max_pairs is None or total <= max_pairs:
        for block, size in enumerate(sizes):
            for rank in range(size):
                yield block, rank
        return
    offsets = np.cumsum([0, *sizes])
    for flat in np.sort(rng.choice(total, size=max_pairs, replace=False)):
        block = int(np.searchsorted(offsets, flat, side="right")) - 1
        yield block, int(flat - offsets[block])


def _unrank_combination(rank: int, n: int) -> tuple[int, int]:
    """Return the rank-th pair (i, j), i < j, of range(n) in lexicographic order."""
    # Pairs starting with i are preceded by i*n - i*(i+1)/2 pairs; solve for
    # the largest such i, then correct the float estimate by integer checks.
    i = int(n - 2 - math.floor(math.sqrt(-8 * rank + 4 * n * (n - 1) - 7) / 2.0 - 0.5))

    def start(row: int) -> int:
        return row * n - row * (row + 1) // 2

    while i > 0 and start(i) > rank:
        i -= 1
    while start(i + 1) <= rank:
        i += 1
    j = rank - start(i) + i + 1
    return i, j
