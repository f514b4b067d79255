"""A face gallery: enrol images, search and match probes, remove identities.

A gallery is a folder holding the SQLite database (the source of truth, see
:mod:`indexer.store`), the FAISS index file derived from it (see
:mod:`indexer.index`) and the writer lock file.

Concurrency: enrolment and removal take the write lock for their whole run
and commit once per batch. A reader searches the snapshot of the last commit
it read. When the index file is missing or stale for that snapshot, the
reader rebuilds the index in memory. It writes the file only if it can take
the write lock at once and its snapshot is still the newest generation. So a
reader never writes while a writer works, and never writes an outdated file.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import faiss
import numpy as np

from .enrollment import EnrollSummary, PendingImage, drop_enrolled, enrolment_items, hash_items
from .index import (IndexConfig, build_index, index_file_name, index_file_state, index_kind, ivf_nlist,
                    load_index, save_index, search, to_search_device)
from .lock import WriteLock
from .matching import (IdentityCandidate, MatchResult, decide, default_threshold, rank_identities, score_hits, score_vectors,
                       twin_report)
from .store import DB_FILE, GalleryNotFoundError, GalleryStore, ImageRecord

logger = logging.getLogger(__name__)


class FingerprintMismatchError(ValueError):
    """The gallery was built with a different checkpoint than the one given."""


class EmptyGalleryError(ValueError):
    """The gallery has no enrolled images to search."""


class UnknownIdentityError(ValueError):
    """An identity named for removal is not in the gallery."""


class Gallery:
    """A gallery folder opened for reading or writing. Create one with :meth:`create` or :meth:`open`."""

    def __init__(self, store: GalleryStore, lock: WriteLock, config: IndexConfig):
        self.folder = store.folder
        self.store = store
        self.lock = lock
        self.config = config
        self._index: faiss.Index | None = None  # CPU index, the one written to the file
        self._search_index: faiss.Index | None = None  # the same index, or its GPU copy
        self._index_generation: int | None = None

    # ------------------------------------------------------------ opening

    @classmethod
    def create(cls, folder: str | os.PathLike, fingerprint: str, embedding_size: int,
               checkpoint_path: str | os.PathLike, index_type: str = "flat",
               lock_timeout: float | None = None, **search_options) -> "Gallery":
        """Create an empty gallery in ``folder`` (made if missing) for one checkpoint.

        Args:
            fingerprint: the checkpoint's sha256 fingerprint.
            embedding_size: E, the length of the checkpoint's embeddings.
            checkpoint_path: recorded so that later commands can default to it.
            index_type: "flat", "ivf" or "hnsw".
            lock_timeout: seconds to wait for the write lock; None waits without limit.
            search_options: ``ef_search``, ``nprobe`` or ``use_gpu`` (see :class:`IndexConfig`).

        Raises:
            FileExistsError: ``folder`` already contains a gallery.
            ValueError: an unknown index type or invalid search option.
            LockTimeoutError: another process holds the write lock.
        """
        config = _index_config(index_type, search_options)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lock = WriteLock(folder, lock_timeout)
        meta = {"fingerprint": fingerprint, "embedding_size": str(int(embedding_size)),
                "checkpoint_path": os.path.abspath(checkpoint_path), "index_type": index_type}
        with lock:
            store = GalleryStore.create(folder, meta)
        logger.info("created gallery %s (index %s, embedding size %d)", folder, index_type, embedding_size)
        return cls(store, lock, config)

    @classmethod
    def open(cls, folder: str | os.PathLike, expected_fingerprint: str | None = None, readonly: bool = False,
             lock_timeout: float | None = None, **search_options) -> "Gallery":
        """Open an existing gallery.

        Args:
            expected_fingerprint: when given, the fingerprint of the checkpoint
                that will embed probes or new images; it must be the gallery's.
            readonly: open the database read-only and never write the index file.
            lock_timeout: seconds a write waits for the write lock; None waits without limit.
            search_options: ``ef_search``, ``nprobe`` or ``use_gpu`` (see :class:`IndexConfig`).

        Raises:
            GalleryNotFoundError: ``folder`` contains no gallery.
            FingerprintMismatchError: ``expected_fingerprint`` differs from the gallery's.
        """
        folder = Path(folder)
        if not (folder / DB_FILE).is_file():
            raise GalleryNotFoundError(
                f"no gallery at {folder} ({DB_FILE} not found); create it with "
                f"dcal-enroll FOLDER --gallery {folder} --checkpoint CHECKPOINT")
        store = GalleryStore(folder, readonly=readonly)
        gallery = cls(store, WriteLock(folder, lock_timeout), _index_config(store.meta["index_type"], search_options))
        if expected_fingerprint is not None:
            try:
                gallery.check_fingerprint(expected_fingerprint)
            except FingerprintMismatchError:
                store.close()
                raise
        return gallery

    def close(self) -> None:
        self.store.close()
        self.lock.release()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---------------------------------------------------------- properties

    @property
    def fingerprint(self) -> str:
        return self.store.meta["fingerprint"]

    @property
    def embedding_size(self) -> int:
        return self.store.embedding_size

    @property
    def checkpoint_path(self) -> str:
        return self.store.meta["checkpoint_path"]

    @property
    def index_type(self) -> str:
        return self.store.meta["index_type"]

    def check_fingerprint(self, fingerprint: str, checkpoint_path: str | os.PathLike | None = None) -> None:
        """Raise FingerprintMismatchError unless ``fingerprint`` is the gallery's."""
        if fingerprint == self.fingerprint:
            return
        other_path = f" ({checkpoint_path})" if checkpoint_path else ""
        raise FingerprintMismatchError(
            f"gallery {self.folder} was built with checkpoint fingerprint {self.fingerprint[:16]} "
            f"({self.checkpoint_path}), but the checkpoint given has fingerprint {fingerprint[:16]}{other_path}; "
            f"use the original checkpoint (--checkpoint {self.checkpoint_path}) or rebuild the gallery "
            "with dcal-enroll into a new --gallery folder")

    def set_index_type(self, index_type: str) -> None:
        """Switch the index type; the next enrolment, removal or search builds the new index.

        Raises:
            ValueError: an unknown index type.
        """
        config = dataclasses.replace(self.config, index_type=index_type)
        if index_type == self.index_type:
            return
        with self.lock, self.store.write(bump_generation=False):
            self.store.set_meta("index_type", index_type)
        logger.info("gallery %s now uses a %s index (was %s)", self.folder, index_type, self.config.index_type)
        self.config = config
        self._index = self._search_index = self._index_generation = None

    # ------------------------------------------------------------ index

    def _set_index(self, index: faiss.Index, generation: int) -> None:
        self._index = index
        self._search_index = to_search_device(index, self.config)
        self._index_generation = generation

    def _snapshot_index(self) -> faiss.Index:
        """Return the search index for the current snapshot, loading or rebuilding it as needed."""
        generation = self.store.begin_snapshot()
        if self._search_index is not None and self._index_generation == generation:
            return self._search_index
        _, ntotal = self.store.counts()
        index = load_index(self.folder, self.index_type, generation, self.embedding_size, ntotal)
        if index is None:
            logger.info("index file for generation %d is %s; rebuilding it from the database", generation,
                        index_file_state(self.folder, self.index_type, generation))
            ids, xb = self.store.embeddings()
            index = build_index(xb, ids, self.config)
            self._save_if_unlocked(index, generation)
        self._set_index(index, generation)
        return self._search_index

    def _save_if_unlocked(self, index: faiss.Index, generation: int) -> None:
        """Write a reader's rebuilt index when no writer works and ``generation`` is still the newest."""
        if self.store.readonly:
            return
        try:
            if not self.lock.try_acquire():
                logger.info("another process has the gallery write lock, so the rebuilt index is kept in memory only")
                return
        except OSError as exc:
            logger.warning("cannot open the gallery write lock (%s); the rebuilt index is kept in memory only", exc)
            return
        try:
            if self._committed_generation() == generation:
                save_index(index, self.folder, self.index_type, generation)
        except (OSError, RuntimeError) as exc:  # faiss.write_index raises RuntimeError on I/O errors
            logger.warning("could not write the index file to %s (%s); the rebuilt index is kept in memory only",
                           self.folder, exc)
        finally:
            self.lock.release()

    def _committed_generation(self) -> int:
        """Read the newest committed generation outside this connection's snapshot."""
        probe = GalleryStore(self.folder, readonly=True)
        try:
            return probe.generation()
        finally:
            probe.close()

    def _base_index(self, generation: int) -> faiss.Index | None:
        """Return the CPU index of ``generation`` from memory or its file, without rebuilding."""
        if self._index is not None and self._index_generation == generation:
            return self._index
        _, ntotal = self.store.counts()
        return load_index(self.folder, self.index_type, generation, self.embedding_size, ntotal)

    def _expected_kind(self, ntotal: int) -> str:
        if self.config.index_type == "ivf" and ntotal < self.config.ivf_min_vectors:
            return "flat"
        return self.config.index_type

    def _update_index(self, base: faiss.Index | None, added_ids: np.ndarray, added_xb: np.ndarray) -> None:
        """Bring the index and its file up to the committed state; the caller holds the write lock.

        ``base`` (the index before this write) is extended with the added
        vectors when it still fits the gallery's size. Otherwise the index is
        rebuilt from the database, as is an IVF index once the gallery has
        outgrown its number of lists.
        """
        generation = self.store.begin_snapshot()
        _, ntotal = self.store.counts()
        fits = (base is not None and base.ntotal + len(added_ids) == ntotal
                and index_kind(base) == self._expected_kind(ntotal)
                and (index_kind(base) != "ivf" or 2 * faiss.extract_index_ivf(base).nlist >= ivf_nlist(ntotal)))
        if fits:
            if len(added_ids):
                start = time.perf_counter()
                base.add_with_ids(np.ascontiguousarray(added_xb, np.float32), np.ascontiguousarray(added_ids))
                logger.info("added %d vectors (d=%d) to the %s index, now %d: %.2f s", len(added_ids),
                            base.d, index_kind(base), base.ntotal, time.perf_counter() - start)
            index = base
        else:
            ids, xb = self.store.embeddings()
            index = build_index(xb, ids, self.config)
        if not (self.folder / index_file_name(self.index_type, generation)).is_file():
            save_index(index, self.folder, self.index_type, generation)
        self._set_index(index, generation)

    # ---------------------------------------------------------- enrolment

    def enroll(self, items, embedder, batch_size: int | None = None,
               progress: Callable[[int], None] | None = None,
               twin_pairs: Iterable[tuple[str, str]] | None = None) -> EnrollSummary:
        """Embed and store the images that are not enrolled yet, committing once per batch.

        Args:
            items: a ``FaceManifest``, a mapping identity -> paths, or (identity, path) pairs.
            embedder: a ``dcal.inference.Embedder`` of the gallery's checkpoint.
            batch_size: images per forward pass and per commit; None keeps the embedder's.
            progress: called with the number of input images handled, after each
                commit and for each skipped or failed file.
            twin_pairs: twin links to store; None takes ``items.twin_pairs`` when present.

        Returns:
            The counts of this run and the gallery totals after it.

        Raises:
            FingerprintMismatchError: ``embedder`` loaded another checkpoint.
            LockTimeoutError: another process holds the write lock.
        """
        self.check_fingerprint(embedder.fingerprint, embedder.config.get("path"))
        if twin_pairs is None:
            twin_pairs = getattr(items, "twin_pairs", ())
        items = enrolment_items(items)
        summary = EnrollSummary()
        with self.lock:
            links = list(twin_pairs)
            if links:
                with self.store.write(bump_generation=False):
                    added = self.store.add_twin_links(links)
                logger.info("stored %d new twin links (%d given)", added, len(links))
            pending = hash_items(items, summary, progress)
            generation = self.store.begin_snapshot()
            pending = drop_enrolled(pending, self.store.find_hashes([p.sha256 for p in pending]), summary, progress)
            base = self._base_index(generation)
            added_ids, added_xb = self._embed_and_store(pending, embedder, batch_size, summary, progress)
            self._update_index(base, added_ids, added_xb)
            summary.identities, summary.images = self.store.counts()
            self.store.end_snapshot()
        logger.info("enrolled %d images, skipped %d already enrolled, %d failed; gallery has %d identities, "
                    "%d images", summary.enrolled, summary.skipped_existing, len(summary.failed),
                    summary.identities, summary.images)
        return summary

    def _embed_and_store(self, pending: list[PendingImage], embedder, batch_size: int | None,
                         summary: EnrollSummary, progress: Callable[[int], None] | None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Embed ``pending`` and commit each batch (image rows, embeddings, generation) in one transaction."""
        added_ids: list[int] = []
        added_xb = [np.zeros((0, self.embedding_size), np.float32)]
        if not pending:
            return np.zeros(0, np.int64), added_xb[0]
        paths = [image.path for image in pending]
        saved_batch_size = embedder.batch_size
        if batch_size is not None:
            embedder.batch_size = batch_size
        try:
            for result in embedder.embed_paths(paths):
                if result.indices:
                    with self.store.write():
                        for position, vector in zip(result.indices, result.embeddings):
                            image = pending[int(position)]
                            added_ids.append(self.store.insert_image(image.identity, image.path, image.sha256,
                                                                     vector))
                    added_xb.append(result.embeddings)
                summary.enrolled += len(result.indices)
                summary.failed.extend((paths[int(position)], reason) for position, reason in result.failures)
                if progress is not None:
                    progress(len(result.indices) + len(result.failures))
        finally:
            embedder.batch_size = saved_batch_size
        return np.array(added_ids, dtype=np.int64), np.concatenate(added_xb)

    def remove(self, identities: Sequence[str]) -> int:
        """Delete identities with their images, vectors and twin links in one transaction.

        Returns:
            The number of images removed.

        Raises:
            UnknownIdentityError: an identity is not enrolled; nothing is removed.
            LockTimeoutError: another process holds the write lock.
        """
        names = list(dict.fromkeys(str(name) for name in identities))
        with self.lock:
            with self.store.write():
                enrolled = self.store.identity_counts()
                unknown = [name for name in names if name not in enrolled]
                if unknown:
                    raise UnknownIdentityError(
                        f"identity not found in gallery {self.folder}: {', '.join(unknown)}; nothing was removed. "
                        f"List the enrolled identities with dcal-gallery list --gallery {self.folder}")
                removed = self.store.delete_identities(names)
            self._update_index(None, np.zeros(0, np.int64), np.zeros((0, self.embedding_size), np.float32))
            self.store.end_snapshot()
        logger.info("removed %d identities with %d images from %s", len(names), removed, self.folder)
        return removed

    # ------------------------------------------------------------ search

    def _check_queries(self, xq: np.ndarray) -> np.ndarray:
        xq = np.asarray(xq, dtype=np.float32)
        if xq.ndim == 1:
            xq = xq[None]
        if xq.ndim != 2 or xq.shape[1] != self.embedding_size:
            raise ValueError(
                f"probe embeddings have shape {xq.shape} but gallery {self.folder} stores embeddings of size "
                f"{self.embedding_size}; embed probes with the gallery's checkpoint ({self.checkpoint_path}) "
                "or rebuild the gallery with the same checkpoint")
        return xq

    def require_images(self) -> None:
        """Raise EmptyGalleryError when no image is enrolled."""
        self.store.begin_snapshot()
        try:
            _, images = self.store.counts()
        finally:
            self.store.end_snapshot()
        if not images:
            raise self._empty_error()

    def _empty_error(self) -> EmptyGalleryError:
        return EmptyGalleryError(f"gallery {self.folder} has no enrolled images; enrol some with "
                                 f"dcal-enroll FOLDER --gallery {self.folder}")

    def _search_snapshot(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._snapshot_index()
        if index.ntotal == 0:
            raise self._empty_error()
        return search(index, xq, k, self.config)

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (D, I): the top-k cosines float32 (nq, k) and image ids int64 (nq, k) for unit-norm xq (nq, E).

        ``k`` is capped at the number of enrolled images. Ids are the database's
        image ids (see :meth:`image_records`); -1 marks an empty slot.

        Raises:
            EmptyGalleryError: no image is enrolled.
            ValueError: xq does not have the gallery's embedding size.
        """
        xq = self._check_queries(xq)
        try:
            return self._search_snapshot(xq, k)
        finally:
            self.store.end_snapshot()

    def match(self, probe_embeddings: np.ndarray, embedder=None, top_k: int = 50, rescore: bool = True,
              threshold: float | None = None, twin_margin: float = 0.05) -> list[MatchResult]:
        """Identify probes: FAISS top-k images, head re-scoring, per-identity ranking, twin report.

        Args:
            probe_embeddings: float32 (n, E), unit L2 norm, from the gallery's checkpoint.
            embedder: the ``Embedder`` whose verification head re-scores hits;
                may be None when ``rescore`` is False.
            top_k: gallery images retrieved per probe before re-scoring.
            rescore: score hits with the head's same-person probability; False keeps cosines.
            threshold: minimum top score for a decision other than "unknown"; None
                uses the checkpoint's calibrated threshold for the score kind.
            twin_margin: a twin report is ambiguous when the top score minus
                the twin's score is below this.

        Returns:
            One :class:`MatchResult` per probe row, in order.

        Raises:
            EmptyGalleryError, FingerprintMismatchError, ValueError (wrong embedding size).
        """
        if embedder is not None:
            self.check_fingerprint(embedder.fingerprint, embedder.config.get("path"))
        elif rescore:
            raise ValueError("re-scoring needs the embedder of the gallery's checkpoint; pass it or rescore=False")
        xq = self._check_queries(probe_embeddings)
        threshold = default_threshold(embedder, rescore) if threshold is None else float(threshold)
        try:
            D, I = self._search_snapshot(xq, top_k)
            hit_ids = sorted({int(i) for i in I.ravel() if i >= 0})
            records = self.store.records(hit_ids)
            ids, xb = self.store.embeddings(hit_ids)
            vectors = dict(zip(ids.tolist(), xb))
            twins = self._enrolled_twins()
            results = []
            for row in range(len(xq)):
                hits = score_hits(xq[row], D[row], I[row], records, vectors, embedder, rescore)
                candidates = rank_identities(hits)
                result = MatchResult(decide(candidates, threshold), threshold, rescore, candidates, hits)
                if result.top is not None and twins.get(result.top.identity):
                    self._settle_twins(result, xq[row], twins, embedder, threshold, twin_margin)
                results.append(result)
            return results
        finally:
            self.store.end_snapshot()

    def _identity_best(self, q: np.ndarray, identity: str, embedder, rescore: bool) -> IdentityCandidate | None:
        """Score every enrolled image of ``identity`` against probe q; return its best one."""
        ids, xb = self.store.embeddings(self.store.image_ids_of(identity))
        if not len(ids):
            return None
        cosines, scores = score_vectors(q, xb, embedder, rescore)
        best = int(np.argmax(scores))
        image_id = int(ids[best])
        path = self.store.records([image_id])[image_id].path
        return IdentityCandidate(identity, float(scores[best]), float(cosines[best]), path, image_id)

    def _settle_twins(self, result: MatchResult, q: np.ndarray, twins: dict[str, list[str]], embedder,
                      threshold: float, twin_margin: float) -> None:
        """Score the top identity and its enrolled twins over all their images, re-rank, then report the twin.

        The shortlist may hold only some of a twin's images, so without this a
        twin could score higher in the report than the identity it lost to.
        """
        scored: dict[str, IdentityCandidate] = {}
        for _ in range(2):  # a second pass when a twin takes the top place
            top = result.candidates[0].identity
            for name in [top, *twins.get(top, [])]:
                if name not in scored:
                    best = self._identity_best(q, name, embedder, result.rescored)
                    if best is not None:
                        scored[name] = best
            others = [c for c in result.candidates if c.identity not in scored]
            result.candidates = sorted(others + list(scored.values()), key=lambda c: (-c.score, c.identity))
            if result.candidates[0].identity == top:
                break
        result.decision = decide(result.candidates, threshold)
        top = result.candidates[0]
        result.twin = twin_report(top, {name: scored[name].score for name in twins.get(top.identity, [])
                                        if name in scored}, twin_margin)

    def _enrolled_twins(self) -> dict[str, list[str]]:
        """Return identity -> its enrolled twins, for links whose two identities are both enrolled."""
        enrolled = self.store.identity_counts()
        twins: dict[str, list[str]] = {}
        for a, b in self.store.twin_links():
            if a in enrolled and b in enrolled:
                twins.setdefault(a, []).append(b)
                twins.setdefault(b, []).append(a)
        return twins

    # ------------------------------------------------------------- reports

    def info(self) -> dict:
        """Return counts and state: identities, images, embedding size, fingerprint, index and generation."""
        generation = self.store.begin_snapshot()
        try:
            identities, images = self.store.counts()
            links = sum(len(twins) for twins in self._enrolled_twins().values()) // 2
            return {
                "gallery": str(self.folder),
                "identities": identities,
                "images": images,
                "twin_links": links,
                "embedding_size": self.embedding_size,
                "fingerprint": self.fingerprint,
                "checkpoint": self.checkpoint_path,
                "index_type": self.index_type,
                "generation": generation,
                "index_file": index_file_state(self.folder, self.index_type, generation),
                "created_at": float(self.store.meta["created_at"]),
            }
        finally:
            self.store.end_snapshot()

    def list_identities(self) -> list[dict]:
        """Return one entry per identity: name, image count and enrolled twins, sorted by name."""
        self.store.begin_snapshot()
        try:
            twins = self._enrolled_twins()
            return [{"identity": name, "images": count, "twins": sorted(twins.get(name, []))}
                    for name, count in self.store.identity_counts().items()]
        finally:
            self.store.end_snapshot()

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (ids int64 (n,), xb float32 (n, E) with unit L2 norm) of every enrolled image."""
        self.store.begin_snapshot()
        try:
            return self.store.embeddings()
        finally:
            self.store.end_snapshot()

    def image_records(self, ids: Iterable[int] | None = None) -> dict[int, ImageRecord]:
        """Return image id -> identity, path, sha256 and enrolment time, for all images or ``ids``."""
        self.store.begin_snapshot()
        try:
            return self.store.records(ids)
        finally:
            self.store.end_snapshot()


def _index_config(index_type: str, search_options: dict) -> IndexConfig:
    unknown = set(search_options) - {"ef_search", "nprobe", "use_gpu"}
    if unknown:
        raise TypeError(f"unknown search options {sorted(unknown)}; use ef_search, nprobe or use_gpu")
    return IndexConfig(index_type=index_type, **{k: v for k, v in search_options.items() if v is not None})
