"""Measure a pretrained peer, dlib's ResNet through face_recognition, on LFW View 1 and LFW look-alikes.

The peer is a side-by-side reference for dcal's accuracy and speed, never a
dcal dependency, so it lives in its own virtual environment and this script
does not import dcal or torch. Install the environment with:

    python3 -m venv /work/venv-peer
    /work/venv-peer/bin/pip install numpy pillow "setuptools<81" dlib-bin face_recognition_models
    /work/venv-peer/bin/pip install --no-deps face_recognition

``--no-deps`` skips face_recognition's dependency on the source ``dlib``
package, which would compile dlib; ``dlib-bin`` ships the same module
prebuilt. face_recognition_models finds its model files through
pkg_resources, which setuptools 82.0.0 removed (setuptools changelog), so
``setuptools<81`` keeps a release that still has it. The ``click``
dependency is only needed by face_recognition's command-line tools.

Run (the data folder contains lfw/):

    /work/venv-peer/bin/python benchmarks/bench_peer.py --data /path/to/data --quick
    DCAL_TEST_DATA=/path/to/data /work/venv-peer/bin/python benchmarks/bench_peer.py

Protocol:
  - every image of the LFW View 1 pairs (pairsDevTrain.txt, pairsDevTest.txt)
    and of the look-alike pairs is decoded, searched for a face with dlib's HOG
    detector and encoded to 128 floats. When HOG finds no face, the centre box
    (top 60, right 190, bottom 190, left 60) of the 250x250 deep-funneled image
    is used and counted as a fallback. When it finds several, the one closest
    to the image centre is used;
  - score = -Euclidean distance; the threshold with the best accuracy on
    DevTrain is applied to DevTest (accuracy, share of negatives accepted),
    and EER and ROC AUC are computed on DevTest;
  - look-alikes: for every identity pair in lfw/relatives.tsv with images of
    both people, the image pairs across the two people (capped, see
    --lookalike-cap) and the share of them accepted at the same threshold,
    with the pairs marked as twins in the relation column reported one by one;
  - enrolment throughput: images/s end to end (decode + detect + encode) on one
    thread, over every image encoded in the run, with the share of each stage.

Everything here comes from one pass over the images, so there is no baseline
to interleave with: the stage shares and the pair acceptance rates are the
within-run ratios, and the absolute img/s depends on the machine and its load.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

# The throughput figure is for one thread. OpenMP and BLAS read these variables
# only when they load, so they are set before numpy and dlib are imported. A
# value already in the environment wins.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import dlib  # noqa: E402
import face_recognition  # noqa: E402
import numpy as np  # noqa: E402

from common import (  # noqa: E402
    default_output,
    describe_machine,
    format_machine,
    markdown_table,
    summarize,
    write_csv,
    write_json,
)

PACKAGES = ("dlib-bin", "face_recognition", "face_recognition_models", "numpy", "pillow")

# Centre box of a 250x250 deep-funneled LFW image, as face_recognition's (top, right, bottom, left).
CENTRE_BOX = (60, 190, 190, 60)
LIBRARY_TOLERANCE = 0.6  # face_recognition.compare_faces' default distance threshold
WARMUP_IMAGES = 5  # first encoded images left out of the throughput figures

# Figures from an earlier measurement of this protocol on the project's 2-core
# development machine (HOG detection, one thread), printed for comparison.
REFERENCE = {
    "devtest_accuracy": 0.985,
    "images_per_second": 9.0,
    "negatives_accepted": 0.018,
    "lookalikes_accepted": 0.21,
    "twin_pairs_accepted": "4 of 4",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    parser.add_argument("--data", type=Path, default=os.environ.get("DCAL_TEST_DATA"),
                        help="data folder that contains lfw/ (default: the DCAL_TEST_DATA environment variable)")
    parser.add_argument("--quick", action="store_true",
                        help="a seeded subset: 100+100 test pairs, 100+100 calibration pairs, "
                             "100 look-alike pairs")

    parser.add_argument("--test-pairs", type=int, default=None,
                        help="same-person pairs and as many different-person pairs taken from DevTest "
                             "(default all 500, or 100 with --quick)")
    parser.add_argument("--calibration-pairs", type=int, default=None,
                        help="same-person pairs and as many different-person pairs taken from DevTrain "
                             "(default all 1100, or 100 with --quick)")
    parser.add_argument("--lookalike-cap", type=int, default=None,
                        help="maximum look-alike image pairs, spread evenly over the identity pairs; "
                             "twin pairs are always kept whole (default 3000, or 100 with --quick)")

    parser.add_argument("--upsample", type=int, default=1,
                        help="HOG detector upsampling passes (face_recognition's default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for pair subsets")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON result file (default benchmarks/results/bench_peer.json, or "
                             "bench_peer-quick.json with --quick); per-pair scores go to a CSV beside it")
    args = parser.parse_args()
    if args.data is None:
        parser.error("missing data folder: pass --data or set DCAL_TEST_DATA to the folder that contains lfw/")

    # Options left unset take the quick or the full default; None means every pair of the file.
    if args.quick:
        args.test_pairs = 100 if args.test_pairs is None else args.test_pairs
        args.calibration_pairs = 100 if args.calibration_pairs is None else args.calibration_pairs
    if args.lookalike_cap is None:
        args.lookalike_cap = 100 if args.quick else 3000
    if args.output is None:
        args.output = default_output("bench_peer", args.quick)
    return args


# -------------------------------------------------------------------- pairs

def image_path(root: Path, name: str, number: int) -> Path:
    return root / name / f"{name}_{number:04d}.jpg"


def read_view1_pairs(path: Path, root: Path) -> list[tuple[Path, Path, bool]]:
    """Read an LFW View 1 pair file: a count N, N same-person lines, then N different-person lines.

    Raises:
        FileNotFoundError: the pair file is missing.
        ValueError: a line does not have the expected fields.
    """
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f if line.strip()]
    try:
        count = int(lines[0][0])
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{path}: first line must be the pair count per class") from exc
    if len(lines) - 1 != 2 * count:
        raise ValueError(f"{path}: expected {2 * count} pair lines after the count {count}, found {len(lines) - 1}")

    pairs = []
    for line_number, fields in enumerate(lines[1:], start=2):
        if line_number - 2 < count and len(fields) == 3:
            name, i, j = fields
            pairs.append((image_path(root, name, int(i)), image_path(root, name, int(j)), True))
        elif line_number - 2 >= count and len(fields) == 4:
            name_a, i, name_b, j = fields
            pairs.append((image_path(root, name_a, int(i)), image_path(root, name_b, int(j)), False))
        else:
            raise ValueError(f"{path}:{line_number}: expected 'name i j' for the first {count} pairs "
                             f"and 'name1 i name2 j' after them, got {' '.join(fields)!r}")
    return pairs


def balanced_subset(pairs: list, per_class: int | None, seed: int) -> list:
    """Return ``per_class`` seeded-random same-person and as many different-person pairs (all if None)."""
    if per_class is None:
        return pairs
    rng = random.Random(seed)
    same = [p for p in pairs if p[2]]
    different = [p for p in pairs if not p[2]]
    return rng.sample(same, min(per_class, len(same))) + rng.sample(different, min(per_class, len(different)))


def read_relatives(path: Path) -> list[dict]:
    """Read relatives.tsv: a header line, then identity_a, identity_b, relation per tab-separated line."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    expected = {"identity_a", "identity_b", "relation"}
    if rows and not expected <= set(rows[0]):
        raise ValueError(f"{path}: expected the columns {sorted(expected)}, found {sorted(rows[0])}")
    return rows


def spread_cap(sizes: list[int], cap: int) -> list[int]:
    """Split ``cap`` over groups of the given sizes as evenly as possible (water-filling).

    Groups smaller than the even share keep all their items; the rest share
    what is left. Without this, the two George W. Bush pairs (530 images of
    him) would fill almost all of a uniform sample.
    """
    quota = [0] * len(sizes)
    remaining = cap
    open_groups = sorted(range(len(sizes)), key=lambda g: sizes[g])
    while open_groups and remaining > 0:
        share = remaining // len(open_groups)
        if share == 0:
            for g in open_groups[:remaining]:
                quota[g] += 1
            break
        still_open = []
        for g in open_groups:
            take = min(share, sizes[g] - quota[g])
            quota[g] += take
            remaining -= take
            if quota[g] < sizes[g]:
                still_open.append(g)
        open_groups = still_open
    return quota


def lookalike_pairs(relatives: list[dict], root: Path, cap: int, seed: int) -> tuple[list[dict], dict]:
    """Build the image pairs across each relative identity pair, at most ``cap`` in all unless twins exceed it.

    Returns:
        a list of pair dicts (a, b, identity_pair, relation, twins) and a
        summary with the identity pairs used and skipped and the totals.
    """
    groups, skipped = [], []
    for row in relatives:
        name_a, name_b, relation = row["identity_a"], row["identity_b"], row["relation"]
        images_a = sorted((root / name_a).glob("*.jpg"))
        images_b = sorted((root / name_b).glob("*.jpg"))
        if not images_a or not images_b:
            skipped.append(f"{name_a}/{name_b}")
            continue
        pairs = [(a, b) for a in images_a for b in images_b]
        groups.append({"identity_pair": f"{name_a}/{name_b}", "relation": relation,
                       "twins": "twin" in relation.lower(), "pairs": pairs})

    # Twin pairs are few (four image pairs in LFW) and reported one by one, so
    # they are always kept whole and the cap applies to the other relatives.
    rng = random.Random(seed)
    others = [g for g in groups if not g["twins"]]
    twin_pairs = sum(len(g["pairs"]) for g in groups if g["twins"])
    quotas = dict(zip(map(id, others), spread_cap([len(g["pairs"]) for g in others], max(cap - twin_pairs, 0))))
    selected = []
    for group in groups:
        quota = quotas.get(id(group), len(group["pairs"]))
        chosen = group["pairs"] if quota >= len(group["pairs"]) else rng.sample(group["pairs"], quota)
        for a, b in chosen:
            selected.append({"a": a, "b": b, "identity_pair": group["identity_pair"],
                             "relation": group["relation"], "twins": group["twins"]})
    summary = {
        "identity_pairs_used": len(groups),
        "identity_pairs_skipped_no_images": skipped,
        "image_pairs_available": sum(len(g["pairs"]) for g in groups),
        "image_pairs_used": len(selected),
        "cap": cap,
        "image_pairs_available_per_identity_pair": {g["identity_pair"]: len(g["pairs"]) for g in groups},
    }
    return selected, summary


# ----------------------------------------------------------------- encoding

def pick_box(locations: list[tuple[int, int, int, int]], height: int, width: int) -> tuple[int, int, int, int]:
    """Return the detected box whose centre is closest to the image centre."""
    def distance(box):
        top, right, bottom, left = box
        return math.hypot((top + bottom) / 2 - height / 2, (left + right) / 2 - width / 2)
    return min(locations, key=distance)


def encode_images(paths: list[Path], upsample: int) -> tuple[dict, dict]:
    """Encode each image once; return path -> 128-d encoding and the timing and detection record."""
    encodings = {}
    stage_seconds = {"decode": [], "detect": [], "encode": []}
    cpu_seconds = []  # process CPU time per image: dlib runs on one thread, so this excludes waiting for other jobs
    detections = Counter()
    started = time.perf_counter()
    for index, path in enumerate(paths, start=1):
        cpu_start = time.process_time()
        t0 = time.perf_counter()
        image = face_recognition.load_image_file(str(path))
        t1 = time.perf_counter()
        locations = face_recognition.face_locations(image, number_of_times_to_upsample=upsample, model="hog")
        t2 = time.perf_counter()
        if not locations:
            box = CENTRE_BOX
            detections["fallback_centre_box"] += 1
        else:
            box = pick_box(locations, *image.shape[:2])
            detections["one_face" if len(locations) == 1 else "several_faces"] += 1
        encodings[path] = face_recognition.face_encodings(image, known_face_locations=[box], num_jitters=1,
                                                          model="small")[0]
        t3 = time.perf_counter()
        cpu_seconds.append(time.process_time() - cpu_start)
        stage_seconds["decode"].append(t1 - t0)
        stage_seconds["detect"].append(t2 - t1)
        stage_seconds["encode"].append(t3 - t2)
        if index % 250 == 0 or index == len(paths):
            elapsed = time.perf_counter() - started
            print(f"  encoded {index}/{len(paths)} images, {index / elapsed:.1f} img/s so far", flush=True)

    measured = {stage: values[WARMUP_IMAGES:] or values for stage, values in stage_seconds.items()}
    per_image = [sum(parts) for parts in zip(*measured.values())]
    total = sum(per_image)
    record = {
        "images": len(paths),
        "images_timed": len(per_image),
        "warmup_images_left_out": len(paths) - len(per_image),
        "images_per_second": len(per_image) / total,
        "images_per_cpu_second": len(per_image) / sum(cpu_seconds[WARMUP_IMAGES:] or cpu_seconds),
        "per_image_seconds": summarize(per_image),
        "stage_share": {stage: sum(values) / total for stage, values in measured.items()},
        "stage_median_seconds": {stage: summarize(values)["median"] for stage, values in measured.items()},
        "detections": dict(detections),
        "fallback_share": detections["fallback_centre_box"] / len(paths),
    }
    return encodings, record


# ------------------------------------------------------------------ metrics

def average_ranks(values):
    """Return 1-based ranks of ``values`` with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def roc_auc(scores, labels) -> float:
    """Compute the area under the ROC curve as the Mann-Whitney U statistic (ties count one half)."""
    positives = labels.sum()
    negatives = len(labels) - positives
    rank_sum = average_ranks(scores)[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def roc_curve(scores, labels):
    """Return (false accept rate, true accept rate, thresholds), accepting score >= threshold."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Cut only where the score changes, so tied scores are accepted together.
    last_of_run = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(scores) - 1]
    true_accepts = np.cumsum(sorted_labels)[last_of_run]
    false_accepts = (last_of_run + 1) - true_accepts
    far = np.r_[0.0, false_accepts / (~labels).sum()]
    tar = np.r_[0.0, true_accepts / labels.sum()]
    thresholds = np.r_[np.inf, sorted_scores[last_of_run]]
    return far, tar, thresholds


def equal_error_rate(scores, labels) -> float:
    """Return the rate where false accepts equal false rejects, interpolated along the ROC."""
    far, tar, _ = roc_curve(scores, labels)
    frr = 1.0 - tar
    gap = far - frr  # rises from -1 to +1 along the curve
    crossing = int(np.argmax(gap >= 0))
    if crossing == 0:
        return float(far[0])
    g0, g1 = gap[crossing - 1], gap[crossing]
    weight = 0.0 if g1 == g0 else -g0 / (g1 - g0)
    return float(far[crossing - 1] + weight * (far[crossing] - far[crossing - 1]))


def best_accuracy_threshold(scores, labels) -> tuple[float, float]:
    """Return (threshold, accuracy) maximising accuracy when accepting score >= threshold.

    The threshold is the midpoint between the lowest accepted and the highest
    rejected calibration score, so it does not sit on a calibration score.
    """
    far, tar, thresholds = roc_curve(scores, labels)
    positives, negatives = labels.sum(), (~labels).sum()
    accuracy = (tar * positives + (1 - far) * negatives) / len(labels)
    best = int(np.argmax(accuracy))
    upper = thresholds[best]
    lower_candidates = scores[scores < upper]
    if math.isinf(upper):  # rejecting everything was best
        return float(scores.max() + 1e-6), float(accuracy[best])
    lower = lower_candidates.max() if len(lower_candidates) else upper - 1e-6
    return float((upper + lower) / 2), float(accuracy[best])


def verification_metrics(scores, labels, threshold: float) -> dict:
    accepted = scores >= threshold
    return {
        "pairs": int(len(labels)),
        "accuracy": float((accepted == labels).mean()),
        "true_accept_rate": float(accepted[labels].mean()),
        "negatives_accepted": float(accepted[~labels].mean()),
    }


# --------------------------------------------------------------------- main

def pair_scores(pairs, encodings):
    """Return scores (-Euclidean distance) for (a, b, ...) pairs."""
    a = np.stack([encodings[p[0]] for p in pairs])
    b = np.stack([encodings[p[1]] for p in pairs])
    return -np.linalg.norm(a - b, axis=1)


def lookalike_report(pairs: list[dict], scores, thresholds: dict[str, float], available: dict[str, int]) -> dict:
    """Compute the share of look-alike image pairs accepted at each threshold.

    Three overall shares are kept. The first is over the image pairs used,
    which the cap spreads evenly over identity pairs. The second is the mean
    over identity pairs. The third estimates the share over every available
    image pair by weighting each identity pair's share with its count in
    ``available``. Twin pairs and each identity pair are reported on their own.
    """
    by_identity_pair: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        by_identity_pair.setdefault(pair["identity_pair"], []).append(index)
    report = {}
    for name, threshold in thresholds.items():
        accepted = scores >= threshold
        per_pair = {}
        for identity_pair, indices in by_identity_pair.items():
            first = pairs[indices[0]]
            per_pair[identity_pair] = {"relation": first["relation"], "twins": first["twins"],
                                       "image_pairs": len(indices), "accepted": int(accepted[indices].sum()),
                                       "image_pairs_available": available[identity_pair]}
        twin_indices = [i for i, p in enumerate(pairs) if p["twins"]]
        report[name] = {
            "threshold_score": threshold,
            "image_pairs_accepted_share": float(accepted.mean()),
            "identity_pair_mean_share": float(np.mean([v["accepted"] / v["image_pairs"] for v in per_pair.values()])),
            "all_available_pairs_estimated_share": float(
                sum(v["accepted"] / v["image_pairs"] * v["image_pairs_available"] for v in per_pair.values())
                / sum(v["image_pairs_available"] for v in per_pair.values())),
            # Less than every available pair only when the cap is too small to sample each identity pair.
            "all_available_pairs_covered": sum(v["image_pairs_available"] for v in per_pair.values()),
            "twin_image_pairs": len(twin_indices),
            "twin_image_pairs_accepted": int(accepted[twin_indices].sum()),
            "per_identity_pair": per_pair,
        }
    return report


def main() -> None:
    args = parse_args()
    lfw = args.data / "lfw"
    root = lfw / "images_deepfunneled"
    if not root.is_dir():
        sys.exit(f"LFW images not found: {root} is not a folder; pass --data the folder that contains lfw/")

    started = time.perf_counter()
    machine = describe_machine(PACKAGES, omp_num_threads=os.environ["OMP_NUM_THREADS"],
                               detector=f"HOG, upsample {args.upsample}",
                               landmarks="5-point (model='small')", num_jitters=1, quick=args.quick,
                               dlib_uses_blas=bool(dlib.DLIB_USE_BLAS), dlib_uses_cuda=bool(dlib.DLIB_USE_CUDA))

    calibration = balanced_subset(read_view1_pairs(lfw / "pairsDevTrain.txt", root), args.calibration_pairs,
                                  args.seed)
    test = balanced_subset(read_view1_pairs(lfw / "pairsDevTest.txt", root), args.test_pairs, args.seed)
    lookalikes, lookalike_summary = lookalike_pairs(read_relatives(lfw / "relatives.tsv"), root,
                                                    args.lookalike_cap, args.seed)

    paths = sorted({p for pair in calibration + test for p in pair[:2]}
                   | {p for pair in lookalikes for p in (pair["a"], pair["b"])})
    missing = [p for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"{len(missing)} images named by the pair files are missing, for example {missing[0]}")
    print(f"encoding {len(paths)} images for {len(calibration)} calibration, {len(test)} test and "
          f"{len(lookalikes)} look-alike pairs", flush=True)
    encodings, enrolment = encode_images(paths, args.upsample)

    calibration_scores = pair_scores(calibration, encodings)
    calibration_labels = np.array([p[2] for p in calibration])
    threshold, calibration_accuracy = best_accuracy_threshold(calibration_scores, calibration_labels)
    test_scores = pair_scores(test, encodings)
    test_labels = np.array([p[2] for p in test])
    lookalike_scores = pair_scores([(p["a"], p["b"]) for p in lookalikes], encodings)

    thresholds = {"devtrain_best": threshold, "library_default_0.6": -LIBRARY_TOLERANCE}
    results = {
        "machine": machine,
        "settings": {"calibration_pairs": len(calibration), "test_pairs": len(test), "seed": args.seed},
        "enrolment": enrolment,
        "threshold": {"score": threshold, "distance": -threshold,
                      "devtrain_accuracy": calibration_accuracy},
        "devtest": {
            "eer": equal_error_rate(test_scores, test_labels),
            "roc_auc": roc_auc(test_scores, test_labels),
            **{name: verification_metrics(test_scores, test_labels, t) for name, t in thresholds.items()},
        },
        "lookalikes": {"summary": lookalike_summary, **lookalike_report(lookalikes, lookalike_scores, thresholds,
                                         lookalike_summary["image_pairs_available_per_identity_pair"])},
        "reference": REFERENCE,
    }
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_seconds"] = time.perf_counter() - started

    write_json(args.output, results)
    score_rows = []
    for set_name, pairs, scores in (("calibration", calibration, calibration_scores), ("test", test, test_scores),
                                    ("lookalike", [(p["a"], p["b"], False) for p in lookalikes], lookalike_scores)):
        for (a, b, same), score in zip(pairs, scores):
            score_rows.append([set_name, a.relative_to(root), b.relative_to(root), int(same), f"{score:.6f}"])
    write_csv(args.output.with_suffix(".scores.csv"), ["set", "image_a", "image_b", "same", "score"], score_rows)
    print_report(results)
    print(f"\nresults written to {args.output}")


def percent(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def print_report(results: dict) -> None:
    machine, enrolment, devtest = results["machine"], results["enrolment"], results["devtest"]
    looks = results["lookalikes"]
    best, default = "devtrain_best", "library_default_0.6"
    reference = results["reference"]
    print()
    print(format_machine(machine))
    print(f"- load average at end: {machine['load_average_at_end']}; wall time {results['wall_seconds']:.0f} s")

    def twins(name):
        return f"{looks[name]['twin_image_pairs_accepted']} of {looks[name]['twin_image_pairs']}"

    rows = [
        ["pairs (calibration / test / look-alike)",
         f"{results['settings']['calibration_pairs']} / {results['settings']['test_pairs']} / "
         f"{looks['summary']['image_pairs_used']}", "", ""],
        ["threshold (Euclidean distance)", f"{results['threshold']['distance']:.4f}", "0.6000", ""],
        ["DevTrain accuracy at that threshold", percent(results["threshold"]["devtrain_accuracy"]), "", ""],
        ["DevTest accuracy", percent(devtest[best]["accuracy"]), percent(devtest[default]["accuracy"]),
         percent(reference["devtest_accuracy"])],
        ["DevTest same-person pairs accepted", percent(devtest[best]["true_accept_rate"]),
         percent(devtest[default]["true_accept_rate"]), ""],
        ["DevTest negatives accepted", percent(devtest[best]["negatives_accepted"]),
         percent(devtest[default]["negatives_accepted"]), percent(reference["negatives_accepted"])],
        ["DevTest EER", percent(devtest["eer"], 2), "", ""],
        ["DevTest ROC AUC", f"{devtest['roc_auc']:.4f}", "", ""],
        ["look-alike image pairs accepted (pairs used)", percent(looks[best]["image_pairs_accepted_share"]),
         percent(looks[default]["image_pairs_accepted_share"]), percent(reference["lookalikes_accepted"], 0)],
        ["look-alikes, mean over identity pairs", percent(looks[best]["identity_pair_mean_share"]),
         percent(looks[default]["identity_pair_mean_share"]), ""],
        [f"look-alikes, estimate over all {looks[best]['all_available_pairs_covered']} image pairs",
         percent(looks[best]["all_available_pairs_estimated_share"]),
         percent(looks[default]["all_available_pairs_estimated_share"]), ""],
        ["twin image pairs accepted", twins(best), twins(default), reference["twin_pairs_accepted"]],
        ["enrolment img/s (decode + HOG + encode), wall clock", f"{enrolment['images_per_second']:.1f}", "",
         f"~{reference['images_per_second']:.0f}"],
        ["enrolment images per CPU second", f"{enrolment['images_per_cpu_second']:.1f}", "", ""],
    ]
    print("\n### dlib face_recognition on LFW View 1 (threshold from DevTrain)\n")
    print(markdown_table(["measure", "this run", "at distance 0.6", "earlier reference"], rows))

    twin_rows = []
    for identity_pair, entry in looks[best]["per_identity_pair"].items():
        if entry["twins"]:
            twin_rows.append([identity_pair, entry["relation"], entry["image_pairs"],
                              entry["accepted"], looks[default]["per_identity_pair"][identity_pair]["accepted"]])
    print("\n### Twin pairs\n")
    print(markdown_table(["identity pair", "relation", "image pairs", "accepted", "accepted at 0.6"], twin_rows))

    share, median = enrolment["stage_share"], enrolment["stage_median_seconds"]
    stage_rows = [[stage, f"{median[stage] * 1e3:.1f}", percent(share[stage])] for stage in share]
    detections = enrolment["detections"]
    print(f"\n### Enrolment, {enrolment['images_timed']} images timed, one thread\n")
    print(markdown_table(["stage", "median ms per image", "share of time"], stage_rows))
    print(f"\nHOG found one face in {detections.get('one_face', 0)} images, several in "
          f"{detections.get('several_faces', 0)} (the most central was used) and none in "
          f"{detections.get('fallback_centre_box', 0)} ({percent(enrolment['fallback_share'])}, "
          f"encoded from the centre box).")


if __name__ == "__main__":
    main()
