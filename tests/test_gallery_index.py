"""FAISS index: exact search against brute force, IVF/HNSW recall, index files and GPU fallback.

All vectors are fixed-seed synthetic unit vectors, so expected results are
computed exactly with numpy.
"""
import logging

import faiss
import numpy as np
import pytest

from indexer import Gallery, IndexConfig
from indexer.index import (build_index, gpu_available, index_file_name, index_file_state, index_kind, load_index,
                           save_index, search, to_search_device)

FINGERPRINT = "12" * 32


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered_vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres, shaped like face embeddings grouped by identity."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def filled_gallery(tmp_path, vectors: np.ndarray, index_type: str = "flat") -> Gallery:
    """A gallery whose images are the given vectors, one identity per 5 images, written directly."""
    gallery = Gallery.create(tmp_path / "gallery", FINGERPRINT, vectors.shape[1], tmp_path / "checkpoint",
                             index_type=index_type)
    with gallery.store.write():
        for row, vector in enumerate(vectors):
            gallery.store.insert_image(f"identity_{row // 5}", f"/faces/{row}.jpg", f"{row:064x}", vector)
    return gallery


def brute_force(stored: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores, row positions) of the top-k inner products, best first."""
    scores = queries @ stored.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact))
    return hits / exact.size


def test_flat_search_equals_brute_force(tmp_path):
    stored = unit_vectors(600, 32, seed=0)
    queries = unit_vectors(25, 32, seed=1)
    with filled_gallery(tmp_path, stored) as gallery:
        scores, ids = gallery.search(queries, 10)
        stored_ids, xb = gallery.embeddings()
    expected_scores, positions = brute_force(xb, queries, 10)
    np.testing.assert_array_equal(ids, stored_ids[positions])
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_search_k_capped_at_gallery_size(tmp_path):
    with filled_gallery(tmp_path, unit_vectors(7, 8, seed=2)) as gallery:
        scores, ids = gallery.search(unit_vectors(2, 8, seed=3), 50)
    assert ids.shape == (2, 7)
    assert (ids >= 0).all()


def test_query_dimension_mismatch(tmp_path):
    with filled_gallery(tmp_path, unit_vectors(10, 8, seed=2)) as gallery:
        with pytest.raises(ValueError, match="embedding.* size 8.*same checkpoint"):
            gallery.search(unit_vectors(1, 9, seed=3), 5)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_recall_against_flat(index_type):
    vectors = clustered_vectors(5200, 64, clusters=200, seed=4)
    stored, queries = vectors[:5000], vectors[5000:]
    ids = np.arange(len(stored), dtype=np.int64) * 7 + 3
    config = IndexConfig(index_type=index_type)
    exact_index = build_index(stored, ids, IndexConfig("flat"))
    approximate = build_index(stored, ids, config)
    assert index_kind(approximate) == index_type
    _, exact = search(exact_index, queries, 10, IndexConfig("flat"))
    _, found = search(approximate, queries, 10, config)
    assert recall_at_k(found, exact) >= 0.9


def test_ivf_small_gallery_uses_flat(caplog):
    stored = unit_vectors(300, 16, seed=5)
    with caplog.at_level(logging.INFO, logger="indexer.index"):
        index = build_index(stored, np.arange(300), IndexConfig("ivf"))
    assert index_kind(index) == "flat"
    assert "building a flat index instead" in caplog.text


def test_ivf_nlist_grows_with_size():
    stored = clustered_vectors(4096, 16, clusters=50, seed=6)
    index = build_index(stored, np.arange(len(stored)), IndexConfig("ivf"))
    assert faiss.extract_index_ivf(index).nlist == 256  # 4 * sqrt(4096)


def test_hnsw_returns_k_above_ef_search():
    stored = unit_vectors(400, 16, seed=7)
    config = IndexConfig("hnsw", ef_search=16)
    index = build_index(stored, np.arange(400), config)
    _, ids = search(index, unit_vectors(3, 16, seed=8), 100, config)
    assert (ids >= 0).sum(axis=1).tolist() == [100, 100, 100]


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_index_file_roundtrip(tmp_path, index_type):
    # IVF needs ivf_min_vectors (4096) vectors; the others are tested at a smaller size.
    stored = clustered_vectors(4200 if index_type == "ivf" else 500, 32, clusters=100, seed=9)
    ids = np.arange(len(stored), dtype=np.int64) + 100
    config = IndexConfig(index_type)
    index = build_index(stored, ids, config)
    path = save_index(index, tmp_path, index_type, generation=7)
    assert path.name == index_file_name(index_type, 7) == f"index-{index_type}-g7.faiss"
    assert not list(tmp_path.glob(".*tmp*"))
    loaded = load_index(tmp_path, index_type, 7, d=32, ntotal=len(stored))
    queries = unit_vectors(5, 32, seed=10)
    np.testing.assert_array_equal(search(loaded, queries, 10, config)[1], search(index, queries, 10, config)[1])


def test_index_file_follows_generation(tmp_path):
    with filled_gallery(tmp_path, unit_vectors(20, 8, seed=11)) as gallery:
        gallery.search(unit_vectors(1, 8, seed=12), 3)
        assert [path.name for path in (tmp_path / "gallery").glob("index-*")] == ["index-flat-g1.faiss"]
        gallery.remove(["identity_0"])
        assert [path.name for path in (tmp_path / "gallery").glob("index-*")] == ["index-flat-g2.faiss"]
        _, ids = gallery.search(unit_vectors(1, 8, seed=12), 20)
    assert ids.shape == (1, 15)


def test_mismatched_index_file_rebuilt(tmp_path, caplog):
    """A file with the right name but other contents (say, copied from another gallery) is not trusted."""
    with filled_gallery(tmp_path, unit_vectors(20, 8, seed=13)) as gallery:
        wrong = build_index(unit_vectors(5, 8, seed=14), np.arange(5), IndexConfig())
        faiss.write_index(wrong, str(tmp_path / "gallery" / index_file_name("flat", 1)))
        with caplog.at_level(logging.WARNING, logger="indexer.index"):
            _, ids = gallery.search(unit_vectors(1, 8, seed=15), 20)
    assert ids.shape == (1, 20)
    assert "has 5 vectors of d=8 but the database has 20" in caplog.text


def test_corrupt_index_file_rebuilt(tmp_path, caplog):
    with filled_gallery(tmp_path, unit_vectors(20, 8, seed=16)) as gallery:
        (tmp_path / "gallery" / index_file_name("flat", 1)).write_bytes(b"not a faiss index")
        with caplog.at_level(logging.WARNING, logger="indexer.index"):
            _, ids = gallery.search(unit_vectors(1, 8, seed=17), 20)
        assert ids.shape == (1, 20)
        assert "could not read index file" in caplog.text


def test_index_type_switch(tmp_path):
    stored = unit_vectors(50, 8, seed=18)
    with filled_gallery(tmp_path, stored) as gallery:
        flat_scores, flat_ids = gallery.search(stored[:3], 5)
        gallery.set_index_type("hnsw")
        hnsw_scores, hnsw_ids = gallery.search(stored[:3], 5)
        assert gallery.info()["index_type"] == "hnsw"
        assert index_file_state(tmp_path / "gallery", "hnsw", gallery.info()["generation"]) == "current"
    np.testing.assert_array_equal(hnsw_ids, flat_ids)
    np.testing.assert_allclose(hnsw_scores, flat_scores, atol=1e-5)


def test_unknown_index_type_rejected(tmp_path):
    with pytest.raises(ValueError, match="index_type must be one of flat, ivf, hnsw"):
        Gallery.create(tmp_path / "gallery", FINGERPRINT, 8, tmp_path / "checkpoint", index_type="lsh")


@pytest.mark.skipif(gpu_available(), reason="checks the CPU fallback of a machine without a faiss GPU")
def test_gpu_request_falls_back_to_cpu(caplog):
    index = build_index(unit_vectors(10, 8, seed=19), np.arange(10), IndexConfig())
    with caplog.at_level(logging.WARNING, logger="indexer.index"):
        chosen = to_search_device(index, IndexConfig(use_gpu=True))
    assert chosen is index
    assert "searching on the CPU" in caplog.text


@pytest.mark.skipif(not gpu_available(), reason="needs faiss-gpu and a visible GPU")
@pytest.mark.parametrize("index_type", ["flat", "ivf"])
def test_gpu_search_matches_cpu(index_type):
    stored = clustered_vectors(5000, 32, clusters=100, seed=20)
    queries = unit_vectors(10, 32, seed=21)
    config = IndexConfig(index_type, use_gpu=True)
    index = build_index(stored, np.arange(5000), config)
    gpu_index = to_search_device(index, config)
    assert gpu_index is not index
    cpu_scores, cpu_ids = search(index, queries, 10, config)
    gpu_scores, gpu_ids = search(gpu_index, queries, 10, config)
    np.testing.assert_array_equal(gpu_ids, cpu_ids)
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=1e-4)
