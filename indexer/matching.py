"""Results of a 1:N search: per-image hits, per-identity candidates, the twin report.

A probe's FAISS hits are re-scored with the verification head (a same-person
probability) or kept at their cosine, then grouped by identity: an identity's
score is its best image's score. The decision is the top identity when its
score reaches the threshold, else ``unknown`` (open-set identification).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"
# Used with rescore=False when the checkpoint stores no calibrated cosine threshold.
# NOTE: an uncalibrated guess; pass a threshold measured on validation pairs instead.
DEFAULT_COSINE_THRESHOLD = 0.5


@dataclass
class ImageHit:
    """One gallery image among a probe's top-k FAISS results."""

    image_id: int  # the image's row id in the gallery database and its FAISS id
    identity: str
    image: str  # the image's path at enrolment
    cosine: float  # inner product of the unit-norm embeddings
    score: float  # head probability when re-scored, else equal to cosine


@dataclass
class IdentityCandidate:
    """An identity with at least one image among a probe's top-k hits."""

    identity: str
    score: float  # the best score among this identity's hits
    cosine: float  # the cosine of that best-scoring image
    image: str  # the path of that best-scoring image
    image_id: int


@dataclass
class TwinReport:
    """The enrolled twin of the top identity, and how close it came."""

    identity: str
    score: float  # the twin's best score against the probe, over all its enrolled images
    margin: float  # top identity's score minus the twin's score
    ambiguous: bool  # margin below the twin margin


@dataclass
class MatchResult:
    """The identification result of one probe. ``candidates`` and ``hits`` are sorted by score, best first."""

    decision: str  # the top identity, or "unknown" when its score is under the threshold
    threshold: float
    rescored: bool  # True: scores are head probabilities; False: cosines
    candidates: list[IdentityCandidate] = field(default_factory=list)
    hits: list[ImageHit] = field(default_factory=list)
    twin: TwinReport | None = None

    @property
    def top(self) -> IdentityCandidate | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self, probe: str | None = None, with_hits: bool = False) -> dict:
        """Return JSON-ready data; ``probe`` is added first when given."""
        data = {} if probe is None else {"probe": probe}
        data.update(
            decision=self.decision,
            threshold=self.threshold,
            score_kind="head" if self.rescored else "cosine",
            candidates=[asdict(candidate) for candidate in self.candidates],
            twin=None if self.twin is None else asdict(self.twin),
        )
        if with_hits:
            data["hits"] = [asdict(hit) for hit in self.hits]
        return data


def rank_identities(hits: list[ImageHit]) -> list[IdentityCandidate]:
    """Group hits by identity (best score wins) and sort by score, then identity name."""
    best: dict[str, ImageHit] = {}
    for hit in hits:
        current = best.get(hit.identity)
        if current is None or hit.score > current.score:
            best[hit.identity] = hit
    ranked = sorted(best.values(), key=lambda hit: (-hit.score, hit.identity))
    return [IdentityCandidate(hit.identity, hit.score, hit.cosine, hit.image, hit.image_id) for hit in ranked]


def decide(candidates: list[IdentityCandidate], threshold: float) -> str:
    if candidates and candidates[0].score >= threshold:
        return candidates[0].identity
    return UNKNOWN


def twin_report(top: IdentityCandidate, twin_scores: dict[str, float], twin_margin: float) -> TwinReport | None:
    """Report the top identity's closest enrolled twin, given each twin's best score."""
    if not twin_scores:
        return None
    identity = max(sorted(twin_scores), key=lambda name: twin_scores[name])
    score = twin_scores[identity]
    margin = top.score - score
    return TwinReport(identity=identity, score=score, margin=margin, ambiguous=margin < twin_margin)


def default_threshold(embedder, rescore: bool) -> float:
    """Return the checkpoint's calibrated threshold for head probabilities or, without re-scoring, cosines."""
    if rescore:
        return embedder.head_threshold()
    value = embedder.cosine_threshold() if embedder is not None else None
    if value is None:
        logger.warning("no calibrated cosine threshold in the checkpoint; using %.2f, set one with --threshold",
                       DEFAULT_COSINE_THRESHOLD)
        return DEFAULT_COSINE_THRESHOLD
    return value


def score_vectors(q: np.ndarray, xb: np.ndarray, embedder, rescore: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return (cosines, scores) (n,) of probe q (E,) against gallery vectors xb (n, E).

    Scores are the verification head's probabilities when ``rescore``, else the cosines.
    """
    cosines = xb @ q
    if not rescore or not len(xb):
        return cosines, cosines
    return cosines, embedder.head_scores(np.repeat(q[None], len(xb), axis=0), xb)


def score_hits(q: np.ndarray, D_row: np.ndarray, I_row: np.ndarray, records: Mapping, vectors: Mapping,
               embedder, rescore: bool) -> list[ImageHit]:
    """Score one probe's FAISS results (D_row, I_row), best first.

    Args:
        q: the probe embedding (E,).
        D_row, I_row: the probe's row of FAISS distances and ids; -1 ids are empty slots.
        records: image id -> ``ImageRecord`` of the same database snapshot.
        vectors: image id -> stored embedding (E,) of the same snapshot.
    """
    found = [(int(i), float(d)) for d, i in zip(D_row, I_row) if i >= 0 and int(i) in vectors]
    missing = int((I_row >= 0).sum()) - len(found)
    if missing:
        # The index and the records come from one snapshot, so this means an inconsistent index file.
        logger.warning("%d search hits are missing from the database snapshot and were dropped", missing)
    xb = np.stack([vectors[i] for i, _ in found]) if found else np.zeros((0, len(q)), np.float32)
    _, scores = score_vectors(q, xb, embedder, rescore)
    hits = [ImageHit(i, records[i].identity, records[i].path, d, float(s) if rescore else d)
            for (i, d), s in zip(found, scores)]
    return sorted(hits, key=lambda hit: (-hit.score, hit.image_id))
