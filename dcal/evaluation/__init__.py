"""Evaluation of a checkpoint on pair sets: verification metrics, twins apart, plots."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..data.manifest import FaceManifest
from ..inference import Embedder
from .protocols import PairSet, add_lookalike_pairs, csv_pairs, lfw_pairs, split_pairs
from .report import write_metrics_json, write_plots, write_report_md
from .verification import SCORERS, pair_counts, score_pairs, scorer_metrics

logger = logging.getLogger(__name__)

__all__ = ["EvalRequest", "build_pair_set", "evaluate_pairs", "write_outputs"]


@dataclass
class EvalRequest:
    """Pair source of an evaluation: exactly one of the CSV, the split or the protocol is set."""

    pairs_csv: Path | None = None
    split: str | None = None
    splits_path: Path | None = None
    protocol: str | None = None
    lfw_dir: Path | None = None
    max_pairs: int = 3000  # cap on positives (split) and on added look-alike pairs
    seed: int = 0


def build_pair_set(request: EvalRequest, manifest: FaceManifest, images_root: Path) -> PairSet:
    """Build the pair set and add look-alike negatives from the manifest's twin pairs."""
    if request.protocol:
        pair_set = lfw_pairs(request.protocol, images_root, request.lfw_dir)
    elif request.pairs_csv:
        pair_set = csv_pairs(request.pairs_csv)
    else:
        pair_set = split_pairs(manifest, request.splits_path, request.split, request.max_pairs, request.seed)
    add_lookalike_pairs(pair_set, manifest, request.max_pairs, request.seed)
    return pair_set


def evaluate_pairs(embedder: Embedder, pair_set: PairSet, scorers=SCORERS, ablations: bool = False):
    """Score the pairs and compute metrics; returns (metrics dict, scored DataFrame)."""
    scored, failures = score_pairs(embedder, pair_set.pairs, scorers, ablations)
    if scored.empty:
        raise ValueError("no pair could be scored: every pair has an unreadable image")
    metrics = {
        "source": pair_set.source,
        "checkpoint": {"path": embedder.config["path"], "fingerprint": embedder.fingerprint},
        "data": pair_counts(scored, failures),
        "scorers": {column: scorer_metrics(pair_set, scored, column, embedder) for column in scorers},
    }
    ablation_columns = [c for c in scored.columns if c.startswith("cosine_")]
    if ablation_columns:
        metrics["ablations"] = {c.replace("cosine_", "").upper() + " only": scorer_metrics(pair_set, scored, c, embedder)
                                for c in ablation_columns}
        metrics["ablations"]["SA+GLCA"] = metrics["scorers"].get("cosine")
    return metrics, scored


def write_outputs(metrics: dict, scored, out: Path) -> list[str]:
    """Write metrics.json, report.md, pairs_scored.csv and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(scored, metrics, out)
    metrics["plots"] = plots
    scored.to_csv(out / "pairs_scored.csv", index=False)
    write_metrics_json(metrics, out / "metrics.json")
    write_report_md(metrics, out / "report.md")
    return plots
