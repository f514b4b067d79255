"""Gallery cost: enrolment throughput and 1:N match latency at growing gallery sizes.

Part 1, enrolment: images/s of a real ``Gallery.enroll`` (hash, decode,
preprocess, embed, insert into SQLite, update FAISS) against model-only
forward throughput on the same images already decoded into one tensor,
interleaved so machine load hits both alike.

Part 2, match latency: real LFW embeddings from the checkpoint, padded with
synthetic ones up to 1e3 ... 1e6 vectors (each synthetic vector is a real
embedding plus Gaussian noise, re-normalised, so it sits in the same region of
the sphere as faces do). For flat, IVF and HNSW it reports the per-probe p50
and p99 latency of a warm top-50 search and recall@10 against flat. For flat
it also reports the bytes scanned per second next to the machine's memory
bandwidth, measured by a numpy copy of a large array in the same run. Then one probe's time split between
embedding it, the FAISS search and the head re-scoring of the shortlist, and
the disk bytes per enrolled face.

    python benchmarks/bench_gallery.py --checkpoint RUN_DIR [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (describe_machine, format_machine, interleaved_timings, markdown_table,  # noqa: E402
                    paired_ratios, summarize, write_json)


def lfw_paths(data: Path, count: int, skip: int = 0) -> list[str]:
    root = data / "lfw" / "images_deepfunneled"
    paths = sorted(str(p) for p in root.glob("*/*.jpg"))
    step = max(1, len(paths) // (count + skip))
    return paths[::step][skip:skip + count]


def enrolment(embedder, paths: list[str], repeats: int) -> dict:
    """Time end-to-end enrolment against model-only forward passes on the same images."""
    import torch

    from dcal.data.images import load_image
    from indexer import Gallery

    batch = torch.stack([embedder.transform(load_image(p)) for p in paths])

    def model_only():
        for start in range(0, len(paths), embedder.batch_size):
            embedder.embed_tensor(batch[start:start + embedder.batch_size])

    def end_to_end():
        with tempfile.TemporaryDirectory() as folder:
            gallery = Gallery.create(Path(folder) / "g", embedder.fingerprint, embedder.embedding_size,
                                     embedder.config["path"])
            try:
                gallery.enroll([(Path(p).parent.name, p) for p in paths], embedder)
            finally:
                gallery.close()

    timings = interleaved_timings({"model_only": model_only, "end_to_end": end_to_end}, warmup=1, repeats=repeats)
    wall = timings["wall"]
    ratios = paired_ratios(wall, "model_only", "end_to_end")  # >1 would mean end to end is faster
    return {
        "images": len(paths),
        "model_only_img_per_s": len(paths) / summarize(wall["model_only"])["median"],
        "end_to_end_img_per_s": len(paths) / summarize(wall["end_to_end"])["median"],
        "end_to_end_share_of_model_only": summarize(ratios),
        "raw_seconds": wall,
    }


def synthetic_gallery(real: np.ndarray, size: int, rng: np.random.Generator, noise: float = 0.6) -> np.ndarray:
    """Real embeddings, then real-plus-noise vectors up to ``size`` rows, all unit norm."""
    d = real.shape[1]
    xb = np.empty((size, d), np.float32)
    take = min(size, len(real))
    xb[:take] = real[:take]
    for start in range(take, size, 100_000):
        stop = min(size, start + 100_000)
        base = real[rng.integers(0, len(real), stop - start)]
        xb[start:stop] = base + noise * rng.standard_normal((stop - start, d)).astype(np.float32) / np.sqrt(d)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    return xb


def memory_bandwidth(megabytes: int = 1024, repeats: int = 5) -> float:
    """Bytes per second of a numpy copy (bytes read plus written)."""
    src = np.ones(megabytes * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / float(np.median(times))


def latency(index, xq: np.ndarray, k: int, config) -> np.ndarray:
    from indexer.index import search

    search(index, xq[:5], k, config)  # warm-up
    per_query = []
    for q in xq:
        start = time.perf_counter()
        search(index, q[None], k, config)
        per_query.append(time.perf_counter() - start)
    return np.array(per_query)


def recall_at_10(index, flat, xq: np.ndarray, config, flat_config) -> float:
    from indexer.index import search

    _, I = search(index, xq, 10, config)
    _, truth = search(flat, xq, 10, flat_config)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, truth)]))


def match_latency(real: np.ndarray, xq: np.ndarray, sizes: list[int], k: int, seed: int) -> list[dict]:
    from indexer.index import IndexConfig, build_index

    rng = np.random.default_rng(seed)
    bandwidth = memory_bandwidth()
    rows = []
    for size in sizes:
        xb = synthetic_gallery(real, size, rng)
        ids = np.arange(size, dtype=np.int64)
        flat_config = IndexConfig("flat")
        flat = build_index(xb, ids, flat_config)
        for kind in ("flat", "ivf", "hnsw"):
            config = IndexConfig(kind, ivf_min_vectors=1000)
            if kind == "hnsw" and size > 200_000:
                rows.append({"size": size, "index": kind, "note": "skipped: HNSW build over 2e5 vectors takes "
                             "too long on 2 cores"})
                continue
            start = time.perf_counter()
            index = flat if kind == "flat" else build_index(xb, ids, config)
            build_s = time.perf_counter() - start
            seconds = latency(index, xq, k, config)
            row = {"size": size, "index": kind, "build_s": build_s, "p50_ms": 1e3 * np.percentile(seconds, 50),
                   "p99_ms": 1e3 * np.percentile(seconds, 99),
                   "recall_at_10": 1.0 if kind == "flat" else recall_at_10(index, flat, xq, config, flat_config)}
            if kind == "flat":
                row["scan_gb_per_s"] = xb.nbytes / np.percentile(seconds, 50) / 1e9
                row["memory_bandwidth_gb_per_s"] = bandwidth / 1e9
            rows.append(row)
            print(row, file=sys.stderr)
        del xb, flat
    return rows


def probe_breakdown(embedder, probe_paths: list[str], real: np.ndarray, k: int) -> dict:
    """Split one probe's match time into embedding, FAISS search and head re-scoring."""
    from indexer.index import IndexConfig, build_index, search

    config = IndexConfig("flat")
    index = build_index(real, np.arange(len(real), dtype=np.int64), config)
    parts = {"embed_probe": [], "faiss_search": [], "head_rescore": []}
    for path in probe_paths:
        start = time.perf_counter()
        q, _ = embedder.embed_all([path])
        t1 = time.perf_counter()
        _, I = search(index, q, k, config)
        t2 = time.perf_counter()
        shortlist = real[I[0]]
        embedder.head_scores(np.repeat(q, len(shortlist), axis=0), shortlist)
        t3 = time.perf_counter()
        parts["embed_probe"].append(t1 - start)
        parts["faiss_search"].append(t2 - t1)
        parts["head_rescore"].append(t3 - t2)
    medians = {name: float(np.median(v)) for name, v in parts.items()}
    total = sum(medians.values())
    return {name: {"median_ms": 1e3 * v, "share": v / total} for name, v in medians.items()}


def disk_per_face(embedder, paths: list[str]) -> dict:
    from indexer import Gallery

    with tempfile.TemporaryDirectory() as folder:
        gallery = Gallery.create(Path(folder) / "g", embedder.fingerprint, embedder.embedding_size,
                                 embedder.config["path"])
        gallery.enroll([(Path(p).parent.name, p) for p in paths], embedder)
        gallery.close()
        files = {p.name: p.stat().st_size for p in (Path(folder) / "g").iterdir() if p.is_file()}
    db = sum(v for n, v in files.items() if n.startswith("gallery.db"))
    index = sum(v for n, v in files.items() if n.endswith(".faiss"))
    return {"faces": len(paths), "sqlite_bytes_per_face": db / len(paths), "faiss_bytes_per_face": index / len(paths),
            "embedding_bytes": 4 * embedder.embedding_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder or dcal-train run folder")
    parser.add_argument("--data", default=os.environ.get("DCAL_TEST_DATA"), help="folder holding lfw/")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check in minutes")
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--faiss-threads", type=int, default=1,
                        help="faiss OpenMP threads for the single-probe searches (default 1: on a shared "
                             "2-core machine, OpenMP threads waiting on each other cost more than they save)")
    parser.add_argument("--top-k", type=int, default=50, help="shortlist size (default 50)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args()
    if not args.data:
        parser.error("--data or DCAL_TEST_DATA is required")

    import faiss
    import torch

    from dcal.inference import Embedder

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.faiss_threads)
    embedder = Embedder(args.checkpoint, device="cpu", batch_size=args.batch_size)
    data = Path(args.data)
    n_enrol, n_real, sizes = (200, 1000, [1_000, 10_000, 50_000]) if args.quick else \
        (1000, 4000, [1_000, 10_000, 100_000, 1_000_000])
    machine = describe_machine(["torch", "timm", "faiss-cpu", "numpy"], threads=args.threads,
                               faiss_threads=args.faiss_threads,
                               batch_size=args.batch_size, dtype="float32", checkpoint=str(args.checkpoint),
                               embedding_size=embedder.embedding_size)
    print(format_machine(machine))

    enrol = enrolment(embedder, lfw_paths(data, n_enrol), repeats=2 if args.quick else 3)
    real, _ = embedder.embed_all(lfw_paths(data, n_real))
    real = real[~np.isnan(real).any(1)]
    probes = lfw_paths(data, 100, skip=n_real)
    xq, _ = embedder.embed_all(probes)
    rows = match_latency(real, xq[~np.isnan(xq).any(1)], sizes, args.top_k, seed=0)
    breakdown = probe_breakdown(embedder, probes[:30], real, args.top_k)
    disk = disk_per_face(embedder, lfw_paths(data, 300))

    print("\n## Enrolment")
    print(markdown_table(["images", "model-only img/s", "end-to-end img/s", "end-to-end / model-only (median, IQR)"],
                         [[enrol["images"], f"{enrol['model_only_img_per_s']:.1f}", f"{enrol['end_to_end_img_per_s']:.1f}",
                           f"{enrol['end_to_end_share_of_model_only']['median']:.2f} "
                           f"({enrol['end_to_end_share_of_model_only']['q1']:.2f}-"
                           f"{enrol['end_to_end_share_of_model_only']['q3']:.2f})"]]))
    print("\n## Match latency (one probe, top-%d)" % args.top_k)
    table = []
    for row in rows:
        if "note" in row:
            table.append([row["size"], row["index"], "", "", "", "", row["note"]])
            continue
        extra = (f"scan {row['scan_gb_per_s']:.1f} GB/s vs copy {row['memory_bandwidth_gb_per_s']:.1f} GB/s"
                 if "scan_gb_per_s" in row else "")
        table.append([row["size"], row["index"], f"{row['build_s']:.2f}", f"{row['p50_ms']:.3f}",
                      f"{row['p99_ms']:.3f}", f"{row['recall_at_10']:.3f}", extra])
    print(markdown_table(["vectors", "index", "build s", "p50 ms", "p99 ms", "recall@10", "flat vs memory"], table))
    print("\n## One probe, where the time goes (gallery of %d real embeddings)" % len(real))
    print(markdown_table(["part", "median ms", "share"],
                         [[k, f"{v['median_ms']:.2f}", f"{100 * v['share']:.1f}%"] for k, v in breakdown.items()]))
    print("\n## Disk per enrolled face")
    print(markdown_table(list(disk), [[f"{v:.0f}" if isinstance(v, float) else v for v in disk.values()]]))
    out = args.out or Path(__file__).resolve().parent / "results" / f"bench_gallery{'_quick' if args.quick else ''}.json"
    write_json(out, {"machine": machine, "enrolment": enrol, "match": rows, "probe_breakdown": breakdown,
                     "disk": disk})


if __name__ == "__main__":
    main()
