"""Enrolment inputs and outcome: (identity, path) items, file hashing, the summary.

Files are hashed before any model work, so images already in the gallery
(same sha256) are skipped without being decoded or embedded.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

logger = logging.getLogger(__name__)


@dataclass
class EnrollSummary:
    """Outcome of one enrolment run; ``identities`` and ``images`` are gallery totals after it."""

    enrolled: int = 0
    skipped_existing: int = 0  # already in the gallery, or a byte-identical copy of another input
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    identities: int = 0
    images: int = 0

    def to_dict(self) -> dict:
        return {
            "enrolled": self.enrolled,
            "skipped_existing": self.skipped_existing,
            "failed": [{"path": path, "reason": reason} for path, reason in self.failed],
            "identities": self.identities,
            "images": self.images,
        }


@dataclass
class PendingImage:
    """An input image that is not in the gallery yet."""

    identity: str
    path: str
    sha256: str


def enrolment_items(source) -> list[tuple[str, str]]:
    """Return (identity, path) pairs from a manifest, a mapping or an iterable of pairs.

    Args:
        source: an object with an ``images`` mapping identity -> paths (a
            ``FaceManifest``), a mapping identity -> paths, or an iterable of
            (identity, path) pairs.
    """
    images = getattr(source, "images", source)
    if isinstance(images, Mapping):
        return [(str(identity), os.fspath(path)) for identity, paths in images.items() for path in paths]
    return [(str(identity), os.fspath(path)) for identity, path in images]


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_items(items: list[tuple[str, str]], summary: EnrollSummary,
               progress: Callable[[int], None] | None = None) -> list[PendingImage]:
    """Hash every file and return the items with distinct content, in input order.

    A file that cannot be read is added to ``summary.failed``; a byte-identical
    copy of an earlier input counts as skipped. Either way ``progress(1)`` is
    called for it, because no later step handles it.
    """
    start = time.perf_counter()
    pending: list[PendingImage] = []
    first_path: dict[str, str] = {}
    for identity, path in items:
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            summary.failed.append((path, f"cannot read file ({exc.strerror or exc})"))
            _advance(progress)
            continue
        if sha256 in first_path:
            logger.info("skipped %s: same content as %s", path, first_path[sha256])
            summary.skipped_existing += 1
            _advance(progress)
            continue
        first_path[sha256] = path
        pending.append(PendingImage(identity, path, sha256))
    logger.info("hashed %d files in %.1f s", len(items), time.perf_counter() - start)
    return pending


def drop_enrolled(pending: list[PendingImage], enrolled: Mapping[str, str], summary: EnrollSummary,
                  progress: Callable[[int], None] | None = None) -> list[PendingImage]:
    """Remove images whose sha256 is in ``enrolled`` (sha256 -> identity) and count them as skipped."""
    remaining = []
    for image in pending:
        owner = enrolled.get(image.sha256)
        if owner is None:
            remaining.append(image)
            continue
        if owner != image.identity:
            logger.warning("skipped %s for identity %r: the same image is already enrolled as %r",
                           image.path, image.identity, owner)
        summary.skipped_existing += 1
        _advance(progress)
    return remaining


def _advance(progress: Callable[[int], None] | None) -> None:
    if progress is not None:
        progress(1)
