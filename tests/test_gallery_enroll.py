"""Enrolment and matching through the real model on real LFW faces, and crash safety.

The identity folders are symlinks into the shared LFW copy. The checkpoint is
a randomly initialised model, so its verification head is meaningless: tests
that need a correct identity use the enrolled image itself as probe (cosine
1.0) and check head re-scoring against a brute-force computation.
"""
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dcal.data.manifest import load_manifest
from dcal.inference import Embedder
from dcal.model import DCALConfig, DCALModel, read_checkpoint_config, save_checkpoint
from indexer import Gallery
from indexer.store import DB_FILE
from conftest import link_tree

REPO = Path(__file__).resolve().parents[1]

# Identities with 1 to 3 images each; the Mowry, Williams and Schumacher pairs are in twin_pairs_infor.json.
PEOPLE = {"Tia_Mowry": 1, "Tamara_Mowry": 1, "Serena_Williams": 3, "Venus_Williams": 3, "Michael_Schumacher": 3,
          "Ralf_Schumacher": 3, "George_W_Bush": 3, "Colin_Powell": 3}


@pytest.fixture(scope="module")
def checkpoint(trained_checkpoint) -> Path:
    """The checkpoint of a short real training run on LFW faces (see conftest)."""
    return trained_checkpoint


@pytest.fixture(scope="module")
def embedder(checkpoint) -> Embedder:
    return Embedder(checkpoint, device="cpu", batch_size=8, num_workers=0)


@pytest.fixture(scope="module")
def head_is_trained(checkpoint) -> bool:
    return "head" in read_checkpoint_config(checkpoint).get("thresholds", {})


@pytest.fixture(scope="module")
def face_tree(tmp_path_factory, lfw_images) -> Path:
    return link_tree(tmp_path_factory.mktemp("faces"), lfw_images, PEOPLE)


@pytest.fixture(scope="module")
def manifest(face_tree, lfw_twins):
    return load_manifest(face_tree, twins=lfw_twins, verify_images="none")


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, manifest, embedder) -> Path:
    """A gallery folder holding the whole face tree (tests must not modify it)."""
    folder = tmp_path_factory.mktemp("gallery") / "gallery"
    with Gallery.create(folder, embedder.fingerprint, embedder.embedding_size, embedder.config["path"]) as gallery:
        gallery.enroll(manifest, embedder, batch_size=4)
    return folder


def probe_embedding(embedder: Embedder, path: Path) -> np.ndarray:
    embeddings, failures = embedder.embed_all([str(path)])
    assert failures == []
    return embeddings


def first_image(face_tree: Path, name: str) -> Path:
    return sorted((face_tree / name).iterdir())[0]


def test_enroll_counts(enrolled):
    with Gallery.open(enrolled) as gallery:
        info = gallery.info()
        identities = {entry["identity"]: entry["images"] for entry in gallery.list_identities()}
    assert identities == PEOPLE
    assert info["images"] == sum(PEOPLE.values())
    assert info["index_file"] == "current"
    assert info["twin_links"] == 3


def test_reenroll_adds_nothing(enrolled, manifest, embedder, monkeypatch):
    def no_model_work(*args, **kwargs):
        raise AssertionError("a re-run must not embed any image")

    with Gallery.open(enrolled) as gallery:
        generation = gallery.info()["generation"]
        monkeypatch.setattr(embedder, "embed_paths", no_model_work)
        summary = gallery.enroll(manifest, embedder)
        assert gallery.info()["generation"] == generation
    images = sum(PEOPLE.values())
    assert summary.to_dict() == {"enrolled": 0, "skipped_existing": images, "failed": [],
                                 "identities": len(PEOPLE), "images": images}


def test_unreadable_file_skipped(tmp_path, lfw_images, embedder):
    tree = link_tree(tmp_path / "faces", lfw_images, {"Colin_Powell": 2})
    bad = tree / "Colin_Powell" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a JPEG")
    folder = tmp_path / "gallery"
    with Gallery.create(folder, embedder.fingerprint, embedder.embedding_size, embedder.config["path"]) as gallery:
        summary = gallery.enroll(load_manifest(tree, verify_images="none"), embedder, batch_size=8)
    assert summary.enrolled == 2
    assert [path for path, _ in summary.failed] == [str(bad)]
    assert "broken.jpg" in summary.failed[0][1]


@pytest.mark.parametrize("name", ["George_W_Bush", "Serena_Williams", "Tia_Mowry"])
def test_enrolled_image_ranks_first(enrolled, face_tree, embedder, head_is_trained, name):
    xq = probe_embedding(embedder, first_image(face_tree, name))
    with Gallery.open(enrolled, expected_fingerprint=embedder.fingerprint) as gallery:
        by_cosine = gallery.match(xq, embedder, rescore=False)[0]
        by_head = gallery.match(xq, embedder, rescore=True)[0]
        ids, xb = gallery.embeddings()
        records = gallery.image_records()

    assert by_cosine.candidates[0].identity == name
    assert by_cosine.candidates[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert by_cosine.hits[0].image == str(first_image(face_tree, name))
    assert len(by_cosine.candidates) == len(PEOPLE)  # top_k 50 covers the whole gallery

    # Re-scoring ranks identities by their best head probability over the retrieved images.
    head = embedder.head_scores(np.repeat(xq, len(xb), axis=0), xb)
    best: dict[str, float] = {}
    for image_id, score in zip(ids.tolist(), head.tolist()):
        identity = records[image_id].identity
        best[identity] = max(best.get(identity, -1.0), score)
    expected = sorted(best, key=lambda identity: (-best[identity], identity))
    assert [c.identity for c in by_head.candidates] == expected
    assert [c.score for c in by_head.candidates] == pytest.approx([best[i] for i in expected], abs=1e-6)
    if head_is_trained:
        assert by_head.candidates[0].identity == name


def test_twin_report(enrolled, face_tree, embedder):
    xq = probe_embedding(embedder, first_image(face_tree, "Tia_Mowry"))
    twin_xq = probe_embedding(embedder, first_image(face_tree, "Tamara_Mowry"))
    with Gallery.open(enrolled) as gallery:
        result = gallery.match(xq, embedder, rescore=False, twin_margin=0.05)[0]
    expected_score = float(twin_xq[0] @ xq[0])
    assert result.decision == "Tia_Mowry"
    assert result.twin is not None
    assert result.twin.identity == "Tamara_Mowry"
    assert result.twin.score == pytest.approx(expected_score, abs=1e-5)
    assert result.twin.margin == pytest.approx(result.candidates[0].score - expected_score, abs=1e-5)
    assert result.twin.ambiguous == (result.twin.margin < 0.05)
    assert result.to_dict("probe.jpg")["twin"]["identity"] == "Tamara_Mowry"


def test_open_set_unknown(enrolled, face_tree, embedder):
    xq = probe_embedding(embedder, first_image(face_tree, "Colin_Powell"))
    with Gallery.open(enrolled) as gallery:
        result = gallery.match(xq, embedder, rescore=False, threshold=1.01)[0]
    assert result.decision == "unknown"
    assert result.candidates[0].identity == "Colin_Powell"


def test_remove_identity_leaves_search(tmp_path, enrolled, embedder, face_tree):
    folder = Path(shutil.copytree(enrolled, tmp_path / "gallery"))
    with Gallery.open(folder) as gallery:
        removed_ids = {i for i, record in gallery.image_records().items() if record.identity == "Colin_Powell"}
        assert gallery.remove(["Colin_Powell"]) == PEOPLE["Colin_Powell"]
    with Gallery.open(folder) as gallery:
        xq = probe_embedding(embedder, first_image(face_tree, "Colin_Powell"))
        _, ids = gallery.search(xq, 100)
        result = gallery.match(xq, embedder, rescore=False)[0]
        info = gallery.info()
    assert len(removed_ids) == PEOPLE["Colin_Powell"]
    assert not removed_ids & set(ids[0].tolist())
    assert "Colin_Powell" not in [c.identity for c in result.candidates]
    assert info["images"] == sum(PEOPLE.values()) - PEOPLE["Colin_Powell"]


# ---------------------------------------------------------------- crash safety

def committed_images(folder: Path) -> int:
    """Return the number of committed image rows, or -1 while the database does not exist."""
    path = folder / DB_FILE
    if not path.exists():
        return -1
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    finally:
        conn.close()


def start_enrolment(tree: Path, folder: Path, checkpoint: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "cli.enroll", str(tree), "--gallery", str(folder), "--checkpoint",
               str(checkpoint), "--batch-size", "2", "--device", "cpu"]
    with open(log, "ab") as stderr:
        return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
                                env={**os.environ, "PYTHONPATH": str(REPO)})


def kill_when(process: subprocess.Popen, condition, log: Path, timeout: float = 120) -> None:
    """SIGKILL ``process`` as soon as ``condition()`` holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"enrolment ended with status {process.returncode} before the kill point:\n"
                        f"{log.read_text()[-2000:]}")
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        time.sleep(0.005)
    process.kill()
    pytest.fail("the kill point was not reached in time")


def check_consistent(folder: Path) -> int:
    """Check that every image row has a full unit vector and the index contains exactly the rows."""
    conn = sqlite3.connect(folder / DB_FILE)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Gallery.open(folder) as gallery:
        ids, xb = gallery.embeddings()
        info = gallery.info()
        np.testing.assert_allclose(np.linalg.norm(xb, axis=1), 1.0, atol=1e-4)
        if len(ids):
            _, found = gallery.search(xb[:1], len(ids) + 10)
            assert sorted(found[0].tolist()) == sorted(ids.tolist())
    assert info["images"] == len(ids)
    return len(ids)


def test_enrolment_survives_sigkill(tmp_path, lfw_images, checkpoint, embedder):
    people = {"George_W_Bush": 4, "Colin_Powell": 4, "Serena_Williams": 4, "Venus_Williams": 4}
    tree = link_tree(tmp_path / "faces", lfw_images, people)
    folder = tmp_path / "gallery"
    log = tmp_path / "enrol.log"

    # Kill as soon as the database exists: while hashing, or before or at the first commit.
    kill_when(start_enrolment(tree, folder, checkpoint, log), lambda: committed_images(folder) >= 0, log)
    before = check_consistent(folder)

    # Kill a resumed run in the middle, after it has committed two batches of 2.
    kill_when(start_enrolment(tree, folder, checkpoint, log), lambda: committed_images(folder) >= before + 4, log)
    assert check_consistent(folder) >= before + 4

    finish = start_enrolment(tree, folder, checkpoint, log)
    assert finish.wait(120) == 0, log.read_text()[-2000:]
    assert check_consistent(folder) == sum(people.values())

    # The resumed gallery equals a clean enrolment of the same tree.
    clean = tmp_path / "clean"
    with Gallery.create(clean, embedder.fingerprint, embedder.embedding_size, embedder.config["path"]) as gallery:
        gallery.enroll(load_manifest(tree, verify_images="none"), embedder)
    vectors = {}
    for gallery_folder in (folder, clean):
        with Gallery.open(gallery_folder) as gallery:
            ids, xb = gallery.embeddings()
            records = gallery.image_records()
        vectors[gallery_folder] = {records[i].sha256: x for i, x in zip(ids.tolist(), xb)}
    assert vectors[folder].keys() == vectors[clean].keys()
    for sha256, vector in vectors[clean].items():
        np.testing.assert_allclose(vectors[folder][sha256], vector, atol=1e-4)


def test_twin_report_agrees_with_ranking(embedder, lfw_subset, lfw_twins, tmp_path):
    """The twin is scored over all its images, so it can never outscore the identity it is reported under."""
    from dcal.data.manifest import load_manifest

    manifest = load_manifest(str(lfw_subset), twins=str(lfw_twins), verify_images="none")
    gallery = Gallery.create(tmp_path / "g", embedder.fingerprint, embedder.embedding_size, embedder.config["path"])
    gallery.enroll(manifest, embedder)
    probes = [manifest.images[name][0] for name in ("Venus_Williams", "Serena_Williams", "Jeb_Bush", "Colin_Powell")]
    xq, _ = embedder.embed_all(probes)
    for top_k in (3, 50):
        for result in gallery.match(xq, embedder, top_k=top_k):
            if result.twin is None:
                continue
            assert result.twin.score <= result.candidates[0].score
            assert result.twin.margin >= 0.0
    gallery.close()
