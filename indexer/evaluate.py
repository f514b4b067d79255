"""Identification metrics through a real gallery: rank-1, rank-5, mAP, twins.

Each identity with two or more images gives up to half of them (at least
one) as probes and enrolls the rest. Identities with one image are enrolled
as distractors. Probes are matched through the same FAISS search and head
re-scoring that ``dcal-match`` uses, once with re-scoring and once with the
FAISS cosine alone.
"""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np

from dcal.metrics.identification import mean_average_precision, rank_k_accuracy, twin_outranks_rate

from .gallery import Gallery

logger = logging.getLogger(__name__)


def split_gallery_probes(images: dict[str, list[str]], seed: int = 0) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Return (gallery images per identity, [(identity, probe path)])."""
    rng = random.Random(seed)
    gallery, probes = {}, []
    for identity in sorted(images):
        paths = sorted(images[identity])
        if len(paths) < 2:
            gallery[identity] = paths
            continue
        held_out = set(rng.sample(paths, max(1, len(paths) // 2)))
        gallery[identity] = [p for p in paths if p not in held_out]
        probes += [(identity, p) for p in sorted(held_out)]
    return gallery, probes


def _scores(results, truths: list[str], gallery: dict[str, list[str]], twin_of: dict[str, str]) -> dict:
    ranked_identities = [[c.identity for c in r.candidates] for r in results]
    ranked_images = [[h.identity for h in r.hits] for r in results]
    counts = {identity: len(paths) for identity, paths in gallery.items()}
    twins = twin_outranks_rate(ranked_identities, truths, twin_of, gallery_identities=list(gallery))
    return {
        "rank1": rank_k_accuracy(ranked_identities, truths, 1),
        "rank5": rank_k_accuracy(ranked_identities, truths, 5),
        "map": mean_average_precision(ranked_images, truths, counts)["map"],
        "twin_outranks_rate": twins["rate"],
        "twin_probes": twins["n"],
    }


def gallery_evaluation(embedder, manifest, workdir: Path, top_k: int = 50, seed: int = 0) -> dict:
    """Build a gallery in ``workdir`` from ``manifest`` and score its held-out probes.

    Returns:
        {"cosine": {...}, "rescored": {...}, "probes", "gallery_images", "identities", "seconds"}
        where each scorer has rank1, rank5, map, twin_outranks_rate and twin_probes.

    Raises:
        ValueError: no identity has two images, so there is no probe.
    """
    gallery_images, probes = split_gallery_probes(manifest.images, seed)
    if not probes:
        raise ValueError("gallery evaluation needs identities with 2 or more images; none were found")
    start = time.monotonic()
    workdir = Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise ValueError(f"{workdir} is not empty; gallery evaluation builds a fresh gallery there")
    gallery = Gallery.create(workdir, embedder.fingerprint, embedder.embedding_size, embedder.config["path"])
    try:
        gallery.enroll(gallery_images, embedder, twin_pairs=manifest.twin_pairs)
        probe_paths = [p for _, p in probes]
        xq, failures = embedder.embed_all(probe_paths)
        ok = ~np.isnan(xq).any(1)
        truths = [identity for (identity, _), keep in zip(probes, ok) if keep]
        twin_of = {}
        for a, b in manifest.twin_pairs:
            twin_of.setdefault(a, b)
        metrics = {}
        for name, rescore in (("cosine", False), ("rescored", True)):
            results = gallery.match(xq[ok], embedder, top_k=top_k, rescore=rescore)
            metrics[name] = _scores(results, truths, gallery_images, twin_of)
    finally:
        gallery.close()
    metrics.update(probes=len(truths), unreadable_probes=len(failures),
                   gallery_images=sum(len(p) for p in gallery_images.values()),
                   identities=len(gallery_images), top_k=top_k, seconds=round(time.monotonic() - start, 1))
    logger.info("gallery evaluation: %d probes against %d images; rank-1 %.3f (cosine) / %.3f (re-scored)",
                metrics["probes"], metrics["gallery_images"], metrics["cosine"]["rank1"], metrics["rescored"]["rank1"])
    return metrics
