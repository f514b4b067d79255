"""Resolution of image paths listed in a manifest written on another machine.

A path is tried as given, then relative to the manifest's folder, then
through each ``OLD=NEW`` prefix rewrite in the order the user gave them.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)


def parse_path_map(strings: Iterable[str]) -> list[tuple[str, str]]:
    """Parse ``OLD=NEW`` prefix rewrites.

    The first ``=`` separates the two prefixes, so NEW may contain ``=``.

    Args:
        strings: items such as ``/kaggle/input/lfw=/data/lfw``.

    Returns:
        (old_prefix, new_prefix) tuples in the given order.

    Raises:
        ValueError: an item has no ``=`` or an empty OLD prefix.
    """
    mapping = []
    for item in strings:
        old, sep, new = str(item).partition("=")
        if not sep:
            raise ValueError(f"invalid path map {item!r}: expected OLD=NEW, for example /kaggle/input/lfw=/data/lfw")
        if not old:
            raise ValueError(f"invalid path map {item!r}: the OLD prefix before '=' is empty")
        mapping.append((old, new))
    return mapping


def rewrite_prefix(path: str, old: str, new: str) -> str | None:
    """Replace the leading ``old`` of path by ``new``; None when it does not match.

    The prefix must end at a path separator, so ``/data/lfw`` rewrites
    ``/data/lfw/a.jpg`` but not ``/data/lfw2/a.jpg``.
    """
    old_dir = old.rstrip("/\\")
    if path == old_dir:
        return new
    if not old_dir:
        return None
    if path.startswith(old_dir) and path[len(old_dir)] in "/\\":
        rest = path[len(old_dir) + 1 :]
        return os.path.join(new, rest) if new else rest
    return None


class PathResolver:
    """Find the local file for each path listed in a manifest.

    Args:
        base_dir: folder of the manifest; relative paths are tried against it.
        path_map: (old_prefix, new_prefix) rewrites, tried in order.
    """

    def __init__(self, base_dir: str | os.PathLike, path_map: Sequence[tuple[str, str]] = ()):
        self.base_dir = os.path.abspath(base_dir)
        self.path_map = [(str(old), str(new)) for old, new in path_map]

    def resolve(self, listed: str) -> str | None:
        """Return the absolute path of an existing file, or None when no candidate exists."""
        for candidate in self._candidates(listed):
            if os.path.isfile(candidate):
                return os.path.abspath(candidate)
        return None

    def _candidates(self, listed: str):
        yield from self._as_given(listed)
        for old, new in self.path_map:
            rewritten = rewrite_prefix(listed, old, new)
            if rewritten is None and "\\" in listed:
                rewritten = rewrite_prefix(listed.replace("\\", "/"), old.replace("\\", "/"), new)
            if rewritten is not None:
                yield from self._as_given(rewritten)

    def _as_given(self, path: str):
        yield path
        if not os.path.isabs(path):
            yield os.path.join(self.base_dir, path)
        if "\\" in path and os.sep == "/":
            # Manifests written on Windows use backslashes.
            yield from self._as_given(path.replace("\\", "/"))


def suggest_path_map(missing: Sequence[str]) -> str | None:
    """Guess the foreign prefix of unresolved paths, for a ``--path-map`` hint.

    Takes the folder two levels above each missing absolute path (the data
    set root in an ``<root>/<identity>/<file>`` layout) and returns the most
    common one, or None when no path is absolute.
    """
    roots = Counter()
    for path in missing:
        normal = path.replace("\\", "/")
        if not normal.startswith("/") and not (len(normal) > 2 and normal[1] == ":"):
            continue
        root = normal.rsplit("/", 2)[0]
        if root:
            roots[root] += 1
    if not roots:
        return None
    return roots.most_common(1)[0][0]
