"""Twin-pair lists: reading ``twin_pairs_infor.json`` and grouping related identities.

An identity may appear in several pairs (a parent listed with each child,
triplets listed pairwise). Splits and batches therefore work with connected
groups: every identity linked to another by some chain of pairs.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable

logger = logging.getLogger(__name__)


def load_twin_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read a twin-pairs JSON file: a list of ``[id_a, id_b]`` pairs.

    Integer identity ids are converted to strings, because identity ids in
    ``dataset_infor.json`` are JSON object keys and therefore strings.
    Duplicates and self-pairs are kept here; :func:`load_manifest` reports
    and drops them.

    Args:
        path: the JSON file.

    Returns:
        The pairs in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON, not a list, or an entry is
            not a list of two string or integer ids. The message names the
            file and the entry's position.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"twin pairs file not found: {path!r}; pass an existing JSON file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON in twin pairs file {path!r}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"twin pairs file {path!r} is not UTF-8 text: {exc}") from exc
    if not isinstance(data, list):
        raise ValueError(
            f"invalid twin pairs file {path!r}: expected a JSON list of [id_a, id_b] pairs, "
            f"found {type(data).__name__}"
        )
    return [_parse_pair(path, index, entry) for index, entry in enumerate(data)]


def _parse_pair(path: str, index: int, entry) -> tuple[str, str]:
    if not isinstance(entry, list) or len(entry) != 2:
        raise ValueError(
            f"invalid twin pair at index {index} in {path!r}: expected a list of 2 identity ids, found {entry!r}"
        )
    ids = []
    for value in entry:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(
                f"invalid twin pair at index {index} in {path!r}: identity id {value!r} "
                "must be a string or an integer"
            )
        ids.append(str(value))
    return ids[0], ids[1]


def twin_groups(pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Group identities connected by twin pairs.

    Args:
        pairs: (id_a, id_b) pairs; self-pairs are ignored.

    Returns:
        Groups of 2 or more identities, each sorted, ordered by their first
        member. Identities in no pair are not listed.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in pairs:
        if a == b:
            continue
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    groups: dict[str, list[str]] = {}
    for member in parent:
        groups.setdefault(find(member), []).append(member)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])
