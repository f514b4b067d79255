"""The FAISS index over a gallery's embeddings: build, save, load and search.

All index types use inner product, which is the cosine for the gallery's
unit-norm embeddings. FAISS ids are the image row ids of the database.

- ``flat``: exact search, ``IndexIDMap2`` over ``IndexFlatIP``.
- ``ivf``: ``IndexIVFFlat`` with nlist = 4 sqrt(ntotal) lists, trained on the
  stored vectors; below ``ivf_min_vectors`` vectors it falls back to flat,
  because k-means needs about 39 training points per list.
- ``hnsw``: ``IndexHNSWFlat`` (inner product) wrapped in ``IndexIDMap2``.

A GPU copy is used for searching when faiss was built with GPU support and a
GPU is visible; HNSW has no GPU version in faiss and stays on the CPU.

The index file is a cache of the database, named after the generation it was
built from (``index-<type>-g<generation>.faiss``), so a stale file is never
mistaken for a current one. It is written to a temporary file and renamed
into place, so readers see either the old file or the complete new one.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

logger = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "ivf", "hnsw")
INDEX_FILE_GLOB = "index-*.faiss"
_gpu_resources = None


@dataclass
class IndexConfig:
    """Build and search settings of the FAISS index."""

    index_type: str = "flat"  # one of INDEX_TYPES
    hnsw_m: int = 32  # HNSW neighbours per node
    ef_construction: int = 200  # HNSW candidate list size while adding vectors
    ef_search: int = 128  # HNSW candidate list size while searching; raised to k when smaller
    nprobe: int | None = None  # IVF lists visited per query; None means nlist / 8, at least 16
    ivf_min_vectors: int = 4096  # below this many vectors "ivf" builds a flat index
    use_gpu: bool | None = None  # None: use a GPU when faiss-gpu detects one

    def __post_init__(self):
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {', '.join(INDEX_TYPES)}, got {self.index_type!r}")
        for name in ("hnsw_m", "ef_construction", "ef_search"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.nprobe is not None and self.nprobe < 1:
            raise ValueError(f"nprobe must be at least 1, got {self.nprobe}")


def gpu_available() -> bool:
    """Return whether this faiss build has GPU support and detects at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def ivf_nlist(ntotal: int) -> int:
    return max(1, int(round(4 * math.sqrt(ntotal))))


def build_index(xb: np.ndarray, ids: np.ndarray, config: IndexConfig) -> faiss.Index:
    """Build a CPU index of ``config.index_type`` over xb float32 (n, d) with int64 ids (n,)."""
    start = time.perf_counter()
    ntotal, d = xb.shape
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    kind = config.index_type
    if kind == "ivf" and ntotal < config.ivf_min_vectors:
        logger.info("ivf index needs at least %d vectors, the gallery has %d: building a flat index instead",
                    config.ivf_min_vectors, ntotal)
        kind = "flat"

    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    elif kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = config.ef_construction
        index = faiss.IndexIDMap2(hnsw)
    else:
        nlist = ivf_nlist(ntotal)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(xb)
    if ntotal:
        index.add_with_ids(xb, ids)
    logger.info("built %s index: %d vectors, d=%d, %.2f s", describe_index(index), ntotal, d,
                time.perf_counter() - start)
    return index


def index_kind(index: faiss.Index) -> str:
    """Return "flat", "ivf" or "hnsw" for an index made by :func:`build_index`."""
    index = faiss.downcast_index(index)
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        index = faiss.downcast_index(index.index)
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


def describe_index(index: faiss.Index) -> str:
    kind = index_kind(index)
    if kind == "ivf":
        return f"ivf (nlist={faiss.extract_index_ivf(index).nlist})"
    return kind


def to_search_device(index: faiss.Index, config: IndexConfig) -> faiss.Index:
    """Return a GPU copy of ``index`` when one is requested or available, else ``index`` itself.

    When faiss cannot copy the index (RuntimeError), the error is logged and
    the CPU index is returned.
    """
    use_gpu = gpu_available() if config.use_gpu is None else config.use_gpu
    if not use_gpu:
        return index
    if not gpu_available():
        logger.warning("a GPU index was requested but faiss has no GPU support or detects no GPU; "
                       "searching on the CPU")
        return index
    if index_kind(index) == "hnsw":
        logger.info("faiss has no GPU HNSW index; searching the HNSW index on the CPU")
        return index
    global _gpu_resources
    try:
        if _gpu_resources is None:
            _gpu_resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(_gpu_resources, 0, index)
    except (RuntimeError, AttributeError) as exc:
        logger.warning("could not copy the %s index to the GPU (%s); searching on the CPU", index_kind(index), exc)
        return index
    logger.info("copied the %s index (%d vectors) to GPU 0", index_kind(index), index.ntotal)
    return gpu_index


def search(index: faiss.Index, xq: np.ndarray, k: int, config: IndexConfig) -> tuple[np.ndarray, np.ndarray]:
    """Return (D, I): the top-k inner products float32 (nq, k) and ids int64 (nq, k), -1 where empty.

    ``k`` is capped at the number of stored vectors.
    """
    start = time.perf_counter()
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    k = min(k, index.ntotal)
    if k <= 0:
        return np.zeros((len(xq), 0), np.float32), np.zeros((len(xq), 0), np.int64)
    # NOTE: faiss GPU indexes accept k up to a build-dependent limit (getMaxKSelection in
    # faiss/gpu/impl/IndexUtils.cu: 2048 for plain CUDA builds) and raise RuntimeError above it.
    set_search_parameters(index, k, config)
    D, I = index.search(xq, k)
    logger.debug("searched %d queries in %d vectors (d=%d, k=%d): %.4f s", len(xq), index.ntotal, index.d, k,
                 time.perf_counter() - start)
    return D, I


def set_search_parameters(index: faiss.Index, k: int, config: IndexConfig) -> None:
    """Set HNSW efSearch (at least k) and IVF nprobe on a CPU index; GPU copies keep their build values."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        inner = faiss.downcast_index(inner.index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = max(config.ef_search, k)
    elif isinstance(inner, faiss.IndexIVF):
        inner.nprobe = min(inner.nlist, config.nprobe or max(16, inner.nlist // 8))


# ------------------------------------------------------------------ files

def index_file_name(index_type: str, generation: int) -> str:
    return f"index-{index_type}-g{generation}.faiss"


def save_index(index: faiss.Index, folder: str | os.PathLike, index_type: str, generation: int) -> Path:
    """Write a CPU ``index`` built from ``generation`` atomically and delete older index files.

    The caller must hold the gallery's write lock, because this also deletes
    other processes' leftover temporary files.
    """
    folder = Path(folder)
    target = folder / index_file_name(index_type, generation)
    tmp = folder / f".{target.name}.tmp-{os.getpid()}"
    start = time.perf_counter()
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    for old in list(folder.glob(INDEX_FILE_GLOB)) + list(folder.glob(".index-*.tmp-*")):
        if old != target:
            old.unlink(missing_ok=True)
    logger.info("wrote %s: %d vectors, d=%d, %.2f s", target, index.ntotal, index.d, time.perf_counter() - start)
    return target


def load_index(folder: str | os.PathLike, index_type: str, generation: int, d: int, ntotal: int
               ) -> faiss.Index | None:
    """Read the index file for ``generation``; return None when it is missing or does not fit.

    A file that cannot be read, or whose dimension or vector count differs
    from the database's, is logged and ignored, and the caller rebuilds.
    """
    path = Path(folder) / index_file_name(index_type, generation)
    if not path.is_file():
        return None
    start = time.perf_counter()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        logger.warning("could not read index file %s (%s); rebuilding it from the database", path, exc)
        return None
    if index.d != d or index.ntotal != ntotal:
        logger.warning("index file %s has %d vectors of d=%d but the database has %d of d=%d; rebuilding",
                       path, index.ntotal, index.d, ntotal, d)
        return None
    logger.info("read %s: %d vectors, d=%d, %.2f s", path, index.ntotal, index.d, time.perf_counter() - start)
    return index


def index_file_state(folder: str | os.PathLike, index_type: str, generation: int) -> str:
    """Return "current", "missing", or "stale (<file names>)" when only other generations' files exist."""
    folder = Path(folder)
    if (folder / index_file_name(index_type, generation)).is_file():
        return "current"
    others = sorted(folder.glob(INDEX_FILE_GLOB))
    if others:
        return f"stale ({', '.join(path.name for path in others)})"
    return "missing"
