"""``dcal-eval``: verification (and optionally identification) metrics of a checkpoint."""
from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import click

from .common import data_options, echo_json, load_manifest_or_exit, setup_logging

logger = logging.getLogger("dcal.eval")


def _pair_source(pairs, split, splits_path, protocol) -> None:
    chosen = [name for name, value in (("--pairs", pairs), ("--split", split), ("--protocol", protocol)) if value]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one pair source: --pairs FILE, --split NAME --splits FILE, "
                               f"or --protocol lfw-view1|lfw-view2 (got {', '.join(chosen) or 'none'})")
    if split and not splits_path:
        raise click.UsageError("--split needs --splits splits.json (written by dcal-train or dcal-data split)")


def _log_to_mlflow(embedder, metrics: dict) -> None:
    """Log the headline numbers to the checkpoint's MLflow run when its store is reachable."""
    training = embedder.config.get("training") or {}
    if not training.get("mlflow_run_id") or not training.get("mlflow_uri"):
        return
    from dcal.training.tracking import Tracker

    tracker = Tracker(Path(training.get("run_dir", ".")), training["mlflow_uri"], training["mlflow_run_id"])
    flat = {}
    for scorer, values in metrics["scorers"].items():
        for section in ("overall", "twins"):
            for key in ("accuracy", "eer", "roc_auc", "twin_pair_accuracy"):
                value = values.get(section, {}).get(key)
                if isinstance(value, (int, float)):
                    flat[f"eval/{section}_{scorer}_{key}"] = value
    tracker.log_metrics(flat, step=int(training.get("step", 0)))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--checkpoint", required=True, type=click.Path(exists=True, path_type=Path),
              help="Checkpoint folder, or a dcal-train run folder (its best/ is used).")
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Image data: a folder with one sub-folder per identity, or a dataset_infor.json.")
@data_options
@click.option("--pairs", "pairs_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Pairs CSV written by `dcal-data pairs` (columns path_a, path_b, ..., label, kind).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Evaluate pairs made from this split.")
@click.option("--splits", "splits_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="splits.json for --split.")
@click.option("--protocol", type=click.Choice(["lfw-view1", "lfw-view2"]),
              help="LFW protocol: view1 = pairsDevTest.txt with the threshold from pairsDevTrain.txt; "
                   "view2 = pairs.txt, 10 folds, threshold chosen on 9 and applied to the 10th.")
@click.option("--lfw-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with LFW's pair files. Default: DATA or its parent folder.")
@click.option("--scorer", type=click.Choice(["head", "cosine", "both"]), default="both", show_default=True,
              help="Score pairs with the verification head, embedding cosine, or both side by side.")
@click.option("--ablations", is_flag=True, help="Also report cosine metrics of the SA-only and GLCA-only embeddings.")
@click.option("--gallery-eval", is_flag=True,
              help="Also build a real gallery from the evaluated identities and report rank-1, rank-5 and mAP "
                   "with and without head re-scoring.")
@click.option("--max-pairs", type=click.IntRange(min=1), default=3000, show_default=True,
              help="Cap on positive pairs made from a split and on the twin/look-alike pairs added from --twins; "
                   "LFW protocol and CSV pairs are always used in full.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for pair sampling.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto uses CUDA when a GPU is visible.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images per forward pass.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder for metrics.json, report.md and the PNG plots.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json to stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(checkpoint, data, twins, path_map, people, pairs_csv, split, splits_path, protocol, lfw_dir, scorer,
         ablations, gallery_eval, max_pairs, seed, device, batch_size, out, as_json, verbose):
    """Evaluate a checkpoint: verification metrics overall and on twins alone, for both scorers."""
    from dcal.evaluation import EvalRequest, build_pair_set, evaluate_pairs, write_outputs
    from dcal.inference import Embedder

    setup_logging(verbose)
    _pair_source(pairs_csv, split, splits_path, protocol)
    manifest = load_manifest_or_exit(str(data), twins, path_map, people, verify="none")
    request = EvalRequest(pairs_csv, split, splits_path, protocol, lfw_dir, max_pairs, seed)
    scorers = ("cosine", "head") if scorer == "both" else (scorer,)
    try:
        embedder = Embedder(checkpoint, device=device, batch_size=batch_size)
        pair_set = build_pair_set(request, manifest, Path(data))
        metrics, scored = evaluate_pairs(embedder, pair_set, scorers, ablations)
        if gallery_eval:
            from indexer.evaluate import gallery_evaluation

            metrics["gallery"] = gallery_evaluation(embedder, _gallery_manifest(manifest, scored), out / "gallery",
                                                    seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    metrics["command"] = " ".join(shlex.quote(a) for a in ["dcal-eval", *sys.argv[1:]])
    metrics["data"]["identities_in_data"] = len(manifest.identities())
    write_outputs(metrics, scored, out)
    _log_to_mlflow(embedder, metrics)
    if as_json:
        echo_json(metrics)
    else:
        click.echo((out / "report.md").read_text(encoding="utf-8"))
        click.echo(f"outputs written to {out}")


def _gallery_manifest(manifest, scored):
    """Identities of the evaluated pairs, for the identification run."""
    identities = sorted(set(scored["identity_a"]) | set(scored["identity_b"]))
    return manifest.subset(identities, missing_ok=True)


if __name__ == "__main__":
    main()
