"""Gallery database, generation counter, write lock and reader snapshots.

These tests replace the model with a small stand-in embedder (unit vectors
derived from each file's bytes), so they run in seconds. The real model and
real faces are covered by test_gallery_enroll.py and test_cli_gallery.py.
"""
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from indexer import (EmptyGalleryError, FingerprintMismatchError, Gallery, GalleryNotFoundError, LockTimeoutError,
                     UnknownIdentityError)
from indexer.index import index_file_name, index_file_state
from indexer.lock import WriteLock
from indexer.store import DB_FILE, GalleryStore

REPO = Path(__file__).resolve().parents[1]
FINGERPRINT = "ab" * 32
E = 16


def file_vector(path: str) -> np.ndarray:
    """A unit vector (E,) seeded by the file's content, so equal files get equal vectors."""
    seed = int.from_bytes(hashlib.sha256(Path(path).read_bytes()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(E).astype(np.float32)
    return vector / np.linalg.norm(vector)


class StandInEmbedder:
    """The part of dcal.inference.Embedder that enrolment uses, without a model.

    ``after_first_batch`` runs when enrolment requests the second batch, which
    is after it has committed the first one.
    """

    fingerprint = FINGERPRINT
    embedding_size = E
    config = {"path": "/checkpoints/stand-in"}

    def __init__(self, batch_size: int = 2, after_first_batch=None):
        self.batch_size = batch_size
        self.after_first_batch = after_first_batch

    def embed_paths(self, paths, progress=None):
        for start in range(0, len(paths), self.batch_size):
            indices = list(range(start, min(start + self.batch_size, len(paths))))
            yield SimpleNamespace(indices=indices, embeddings=np.stack([file_vector(paths[i]) for i in indices]),
                                  failures=[])
            if start == 0 and self.after_first_batch is not None:
                self.after_first_batch()


def make_items(folder: Path, identities: int = 3, per_identity: int = 2) -> dict[str, list[str]]:
    """Write small files with distinct content; the stand-in embedder never decodes them."""
    items = {}
    for i in range(identities):
        person = folder / f"person_{i}"
        person.mkdir(parents=True)
        items[person.name] = []
        for j in range(per_identity):
            path = person / f"{j}.bin"
            path.write_bytes(f"{person.name}/{j}".encode())
            items[person.name].append(str(path))
    return items


def new_gallery(tmp_path: Path, **options) -> Gallery:
    return Gallery.create(tmp_path / "gallery", FINGERPRINT, E, tmp_path / "checkpoint", **options)


def test_create_and_open_roundtrip(tmp_path):
    new_gallery(tmp_path, index_type="hnsw").close()
    with Gallery.open(tmp_path / "gallery", expected_fingerprint=FINGERPRINT) as gallery:
        info = gallery.info()
    assert info["fingerprint"] == FINGERPRINT
    assert info["embedding_size"] == E
    assert info["index_type"] == "hnsw"
    assert info["checkpoint"] == str(tmp_path / "checkpoint")
    assert info["generation"] == 0
    assert info["images"] == 0
    assert info["index_file"] == "missing"


def test_create_twice_rejected(tmp_path):
    new_gallery(tmp_path).close()
    with pytest.raises(FileExistsError, match="already contains a gallery"):
        new_gallery(tmp_path)


def test_open_missing_gallery(tmp_path):
    with pytest.raises(GalleryNotFoundError, match="no gallery at .*dcal-enroll"):
        Gallery.open(tmp_path / "nowhere")


def test_open_with_other_fingerprint(tmp_path):
    new_gallery(tmp_path).close()
    with pytest.raises(FingerprintMismatchError) as error:
        Gallery.open(tmp_path / "gallery", expected_fingerprint="cd" * 32)
    message = str(error.value)
    assert FINGERPRINT[:16] in message
    assert ("cd" * 32)[:16] in message
    assert "rebuild the gallery" in message


def test_embeddings_roundtrip_exact(tmp_path):
    items = make_items(tmp_path / "faces")
    with new_gallery(tmp_path) as gallery:
        gallery.enroll(items, StandInEmbedder())
        ids, xb = gallery.embeddings()
        records = gallery.image_records(ids)
    paths = [records[i].path for i in ids.tolist()]
    expected = np.stack([file_vector(path) for path in paths])
    assert xb.dtype == np.float32
    assert xb.shape == (6, E)
    np.testing.assert_array_equal(xb, expected)
    assert sorted(paths) == sorted(p for paths in items.values() for p in paths)


def test_generation_counts_committed_batches(tmp_path):
    items = make_items(tmp_path / "faces", identities=3, per_identity=2)
    with new_gallery(tmp_path) as gallery:
        summary = gallery.enroll(items, StandInEmbedder(batch_size=2))
        assert summary.enrolled == 6
        assert gallery.info()["generation"] == 3  # one commit per batch of 2
        again = gallery.enroll(items, StandInEmbedder(batch_size=2))
        assert again.enrolled == 0
        assert again.skipped_existing == 6
        assert gallery.info()["generation"] == 3
        assert gallery.info()["index_file"] == "current"


def test_failed_write_rolls_back(tmp_path):
    with new_gallery(tmp_path) as gallery:
        with pytest.raises(ValueError, match="embedding size"):
            with gallery.store.write():
                gallery.store.insert_image("a", "/a.jpg", "1" * 64, np.ones(E, np.float32) / 4)
                gallery.store.insert_image("a", "/b.jpg", "2" * 64, np.ones(E + 1, np.float32))
        assert gallery.info()["images"] == 0
        assert gallery.info()["identities"] == 0
        assert gallery.info()["generation"] == 0


def test_remove_unknown_identity_keeps_all(tmp_path):
    items = make_items(tmp_path / "faces")
    with new_gallery(tmp_path) as gallery:
        gallery.enroll(items, StandInEmbedder())
        with pytest.raises(UnknownIdentityError, match="nobody.*nothing was removed"):
            gallery.remove(["person_0", "nobody"])
        assert gallery.info()["images"] == 6
        assert gallery.remove(["person_0"]) == 2
        assert [entry["identity"] for entry in gallery.list_identities()] == ["person_1", "person_2"]


def test_empty_gallery_search(tmp_path):
    with new_gallery(tmp_path) as gallery:
        with pytest.raises(EmptyGalleryError, match="no enrolled images.*dcal-enroll"):
            gallery.search(np.ones((1, E), np.float32), 5)


def test_twin_links_by_name(tmp_path):
    """A twin link given before the second twin is enrolled applies once it is."""
    items = make_items(tmp_path / "faces")
    with new_gallery(tmp_path) as gallery:
        gallery.enroll({"person_0": items["person_0"]}, StandInEmbedder(), twin_pairs=[("person_1", "person_0")])
        assert gallery.list_identities()[0]["twins"] == []
        gallery.enroll(items, StandInEmbedder())
        twins = {entry["identity"]: entry["twins"] for entry in gallery.list_identities()}
    assert twins == {"person_0": ["person_1"], "person_1": ["person_0"], "person_2": []}


def test_lock_timeout_names_holder(tmp_path):
    folder = tmp_path / "gallery"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from indexer.lock import WriteLock; lock = WriteLock(sys.argv[1]); lock.acquire(); "
         "print('locked', flush=True); time.sleep(30)", str(folder)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = WriteLock(folder, timeout=0.3)
        with pytest.raises(LockTimeoutError) as error:
            lock.acquire()
        assert f"held by process {holder.pid}" in str(error.value)
        assert "--lock-timeout" in str(error.value)
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock.
    with WriteLock(folder, timeout=0):
        pass


def test_second_writer_waits(tmp_path, caplog):
    folder = tmp_path / "gallery"
    folder.mkdir()
    first = WriteLock(folder)
    first.acquire()
    threading.Timer(0.5, first.release).start()
    start = time.monotonic()
    with WriteLock(folder, timeout=10):
        waited = time.monotonic() - start
    assert waited >= 0.4
    assert "waiting for the gallery write lock" in caplog.text


def test_reader_snapshot_during_write(tmp_path):
    items = make_items(tmp_path / "faces", identities=3, per_identity=2)
    new_gallery(tmp_path).close()
    first_batch_committed = threading.Event()
    resume = threading.Event()

    def pause():
        first_batch_committed.set()
        assert resume.wait(20)

    def enrol():
        with Gallery.open(tmp_path / "gallery") as writer:
            writer.enroll(items, StandInEmbedder(batch_size=2, after_first_batch=pause))

    thread = threading.Thread(target=enrol)
    thread.start()
    try:
        assert first_batch_committed.wait(20)
        with Gallery.open(tmp_path / "gallery") as reader:
            _, ids = reader.search(np.ones((1, E), np.float32) / 4, 10)
            assert (ids >= 0).sum() == 2
            # The writer holds the lock, so the reader kept its rebuilt index in memory.
            assert reader.info()["index_file"] == "missing"
    finally:
        resume.set()
        thread.join(20)
    with Gallery.open(tmp_path / "gallery") as reader:
        _, ids = reader.search(np.ones((1, E), np.float32) / 4, 10)
        assert (ids >= 0).sum() == 6
        assert reader.info()["index_file"] == "current"


def test_store_snapshot_ignores_new_commits(tmp_path):
    items = make_items(tmp_path / "faces")
    new_gallery(tmp_path).close()
    reader = GalleryStore(tmp_path / "gallery", readonly=True)
    assert reader.begin_snapshot() == 0
    with Gallery.open(tmp_path / "gallery") as writer:
        writer.enroll(items, StandInEmbedder())
    assert reader.counts() == (0, 0)
    reader.end_snapshot()
    assert reader.begin_snapshot() == 3
    assert reader.counts() == (3, 6)
    reader.close()


def test_reader_writes_stale_index_when_unlocked(tmp_path):
    items = make_items(tmp_path / "faces")
    with new_gallery(tmp_path) as gallery:
        gallery.enroll(items, StandInEmbedder())
        generation = gallery.info()["generation"]
    folder = tmp_path / "gallery"
    (folder / index_file_name("flat", generation)).unlink()
    with Gallery.open(folder, readonly=True) as reader:
        reader.search(np.ones((1, E), np.float32) / 4, 3)
    assert index_file_state(folder, "flat", generation) == "missing"
    with Gallery.open(folder) as reader:
        reader.search(np.ones((1, E), np.float32) / 4, 3)
    assert index_file_state(folder, "flat", generation) == "current"


def test_database_uses_wal(tmp_path):
    new_gallery(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "gallery" / DB_FILE)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
