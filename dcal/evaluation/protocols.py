"""Pair sets for evaluation: a pairs CSV, a split, or LFW's View 1 and View 2.

Every pair set is a DataFrame with the pairs-CSV columns (path_a, path_b,
identity_a, identity_b, label, kind) plus ``fold`` (LFW View 2) and ``role``
("test", or "calibration" for the View 1 DevTrain pairs that only choose the
threshold).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..data.lfw import read_lfw_pairs
from ..data.manifest import FaceManifest
from ..data.pairs import make_eval_pairs, read_pairs_csv, twin_negative_pairs
from ..data.splits import load_splits

logger = logging.getLogger(__name__)

PROTOCOLS = ("lfw-view1", "lfw-view2")


@dataclass
class PairSet:
    """Pairs to score and how to choose the decision threshold."""

    pairs: pd.DataFrame
    threshold_mode: str  # "calibrated" (checkpoint), "calibration-pairs" (View 1) or "kfold" (View 2)
    source: str


def find_lfw_file(data: Path, name: str, lfw_dir: Path | None) -> Path:
    """Find an LFW protocol file next to the images folder (or in ``lfw_dir``).

    Raises:
        FileNotFoundError: the file is in neither place.
    """
    candidates = [lfw_dir / name] if lfw_dir else []
    candidates += [data / name, data.parent / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"LFW protocol file {name} not found in {', '.join(str(c.parent) for c in candidates)}; "
                            "pass --lfw-dir with the folder that holds pairs.txt and pairsDevTest.txt")


def drop_missing_images(pairs: pd.DataFrame, images_root: Path) -> pd.DataFrame:
    """Leave out pairs whose image files are not under ``images_root``, with one warning.

    Raises:
        ValueError: no pair, or no pair of one class, is left.
    """
    exists = {p: Path(p).is_file() for p in set(pairs["path_a"]) | set(pairs["path_b"])}
    keep = pairs["path_a"].map(exists) & pairs["path_b"].map(exists)
    if not keep.all():
        logger.warning("%d of %d LFW protocol pairs name images missing from %s and are left out; "
                       "point --data at the full images_deepfunneled folder", int((~keep).sum()), len(pairs),
                       images_root)
    kept = pairs[keep]
    if kept["label"].nunique() < 2:
        raise ValueError(f"only {len(kept)} of {len(pairs)} LFW protocol pairs have both images in {images_root}, "
                         "too few for both classes; point --data at the full images_deepfunneled folder")
    return kept.reset_index(drop=True)


def lfw_pairs(protocol: str, images_root: Path, lfw_dir: Path | None) -> PairSet:
    """Read View 1 (DevTest to report, DevTrain to calibrate) or View 2 (10 folds)."""
    if protocol == "lfw-view1":
        test = read_lfw_pairs(find_lfw_file(images_root, "pairsDevTest.txt", lfw_dir), images_root)[0]
        calib = read_lfw_pairs(find_lfw_file(images_root, "pairsDevTrain.txt", lfw_dir), images_root)[0]
        test, calib = drop_missing_images(test, images_root), drop_missing_images(calib, images_root)
        pairs = pd.concat([test.assign(role="test", fold=0), calib.assign(role="calibration", fold=-1)],
                          ignore_index=True)
        return PairSet(pairs, "calibration-pairs", "LFW View 1: pairsDevTest.txt, threshold from pairsDevTrain.txt")
    if protocol == "lfw-view2":
        folds = read_lfw_pairs(find_lfw_file(images_root, "pairs.txt", lfw_dir), images_root)
        pairs = pd.concat([f.assign(role="test", fold=i) for i, f in enumerate(folds)], ignore_index=True)
        pairs = drop_missing_images(pairs, images_root)
        return PairSet(pairs, "kfold", f"LFW View 2: pairs.txt, {len(folds)} folds, threshold chosen on the others")
    raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def split_pairs(manifest: FaceManifest, splits_path: Path, split: str, max_positives: int, seed: int) -> PairSet:
    splits = load_splits(splits_path)
    if split not in splits:
        raise ValueError(f"split {split!r} not in {splits_path}; it has {', '.join(k for k in splits if isinstance(splits[k], list))}")
    subset = manifest.subset(splits[split], missing_ok=True)
    pairs = make_eval_pairs(subset.images, subset.twin_pairs, max_positives=max_positives,
                            max_twin_negatives=max_positives, seed=seed)
    return PairSet(pairs.assign(role="test", fold=0), "calibrated", f"{split} split of {splits_path}")


def csv_pairs(path: Path) -> PairSet:
    pairs = read_pairs_csv(path)
    return PairSet(pairs.assign(role="test", fold=0), "calibrated", f"pairs CSV {path}")


def add_lookalike_pairs(pair_set: PairSet, manifest: FaceManifest, max_pairs: int, seed: int) -> int:
    """Add every cross-image pair of the manifest's twin pairs as twin negatives (capped, seeded).

    Pairs already present are not duplicated. Under View 2 the extra pairs get
    fold -1 and are scored with each fold's threshold averaged (see the report).
    Returns the number of pairs added.
    """
    if not manifest.twin_pairs:
        return 0
    extra = twin_negative_pairs(manifest.images, manifest.twin_pairs, max_pairs=max_pairs, seed=seed)
    if extra.empty:
        return 0
    existing = set(zip(pair_set.pairs["path_a"], pair_set.pairs["path_b"]))
    keep = [(a, b) not in existing and (b, a) not in existing for a, b in zip(extra["path_a"], extra["path_b"])]
    extra = extra[keep].assign(role="lookalike", fold=-1)
    pair_set.pairs = pd.concat([pair_set.pairs, extra], ignore_index=True)
    logger.info("added %d look-alike pairs from %d twin/relative pairs", len(extra), len(manifest.twin_pairs))
    return len(extra)
