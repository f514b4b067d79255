"""``dcal-train``: train a DCAL face model on one process or many.

``--nproc-per-node N`` (N > 1) checks the data once, then relaunches this
module under ``torch.distributed.run``; ``torchrun --nproc_per_node N -m
cli.train ...`` works as well.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import click

from .common import data_options, setup_logging

logger = logging.getLogger("dcal.train")

# Options that map one to one onto TrainConfig fields.
CONFIG_OPTIONS = ("epochs", "max_steps", "amp", "seed", "backbone", "img_size", "weights", "lr",
                  "identities_per_batch", "images_per_identity", "accum_steps", "glca_blocks", "local_ratio",
                  "pwca_blocks", "num_workers", "patience", "checkpoint_every", "log_every")


def _overrides(options: dict) -> dict:
    values = {k: options[k] for k in CONFIG_OPTIONS if options.get(k) is not None}
    if "lr" in values:
        values["base_lr"] = values.pop("lr")
    return values


def _apply_batch_size(config, batch_size: int | None):
    """Turn --batch-size into P identities of the resolved K images each."""
    if batch_size is None:
        return config
    K = config.images_per_identity
    if batch_size % K or batch_size // K < 2:
        raise click.BadParameter(f"{batch_size} must be a multiple of the images per identity ({K}) and hold at "
                                 "least 2 identities", param_hint="--batch-size")
    config.identities_per_batch = batch_size // K
    return config


def _check_data(data_args) -> None:
    """Validate the data before anything is built; exits 2 when it is unusable."""
    from dcal.training.build import load_run_manifest

    try:
        manifest = load_run_manifest(data_args, verify_images="header")
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    report = manifest.report
    for problem in report.warnings:
        logger.warning("data: %s (%d; e.g. %s)", problem.message, problem.count, ", ".join(problem.examples[:3]))
    if not report.usable:
        for problem in report.errors:
            click.echo(f"error: {problem.message} ({problem.count}; e.g. {', '.join(problem.examples[:3])})",
                       err=True)
        click.echo(f"data in {data_args.data} is not usable for training; run `dcal-data check` for details",
                   err=True)
        sys.exit(2)
    logger.info("data: %d identities, %d images, %d usable twin pairs", len(manifest.identities()),
                manifest.num_images(), len(manifest.twin_pairs))


def _launch_torchrun(nproc: int) -> None:
    """Re-run this command under torch.distributed.run with N processes on this node."""
    args = [a for a in sys.argv[1:]]
    # Drop our own --nproc-per-node so the children run the training directly.
    cleaned, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--nproc-per-node":
            skip = True
            continue
        if arg.startswith("--nproc-per-node="):
            continue
        cleaned.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "cli.train", *cleaned, "--skip-data-check"]
    logger.info("launching %d processes: %s", nproc, " ".join(command))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc))))
    sys.exit(subprocess.call(command, env=env))


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Training data: a folder with one sub-folder per identity, or a dataset_infor.json.")
@data_options
@click.option("--splits", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="splits.json from `dcal-data split` to reuse. Default: make one (seeded) and save it in RUN_DIR.")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder for checkpoints (best/, last/), logs, metrics.csv and the MLflow store.")
@click.option("--preset", type=click.Choice(["paper", "cpu-small", "tiny"]), default="paper", show_default=True,
              help="paper: ViT-B/16 at 448 px, 8 per GPU x 2 GPUs x 4 accumulation; cpu-small: 6-block "
                   "ViT-Tiny at 112 px from scratch on a CPU; tiny: seconds, for tests.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file of training options; overrides the preset, and command-line options override it.")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs. Default: from the preset.")
@click.option("--max-steps", type=click.IntRange(min=1),
              help="Stop after this many optimiser steps (extends or cuts the epochs). Default: no limit.")
@click.option("--batch-size", type=click.IntRange(min=2),
              help="Images per process per step (P identities x K images). Default: from the preset.")
@click.option("--images-per-identity", type=click.IntRange(min=1), help="K images per identity in a batch. Default: from the preset.")
@click.option("--identities-per-batch", type=click.IntRange(min=2), help="P identities per batch. Default: from the preset.")
@click.option("--accum-steps", type=click.IntRange(min=1), help="Gradient accumulation steps. Default: from the preset.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Base learning rate for an effective batch of 64; scaled linearly. Default: preset.")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes to launch through torchrun on this machine (one per GPU; gloo on CPU).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto uses CUDA when a GPU is visible.")
@click.option("--amp", type=click.Choice(["bf16", "fp16", "off"]),
              help="Mixed precision: bf16 autocast, fp16 with a grad scaler (CUDA only), or off. Default: preset.")
@click.option("--backbone", help="timm ViT/DeiT name, e.g. vit_base_patch16_224. Default: preset.")
@click.option("--img-size", type=click.IntRange(min=16), help="Input size in pixels (square). Default: preset.")
@click.option("--weights", help="Backbone weights: timm (hub), none (random) or a local .safetensors/.pth file. Default: from the preset.")
@click.option("--glca-blocks", type=click.IntRange(min=0), help="GLCA blocks M (0 disables GLCA). Default: from the preset (1).")
@click.option("--local-ratio", type=click.FloatRange(0, 1, min_open=True),
              help="R: share of patch tokens used as GLCA queries. Default 0.15.")
@click.option("--pwca-blocks", type=click.IntRange(min=0), help="PWCA blocks T (0 disables PWCA). Default: all.")
@click.option("--num-workers", type=click.IntRange(min=0), help="Image-decoding processes per training process. Default: from the preset.")
@click.option("--patience", type=click.IntRange(min=0), help="Validations without EER improvement before stopping early; 0 never stops early. Default: from the preset.")
@click.option("--checkpoint-every", type=click.IntRange(min=0),
              help="Also write last/ every N optimiser steps; 0 writes it only at epoch ends. Default: 0.")
@click.option("--log-every", type=click.IntRange(min=1), help="Optimiser steps between progress lines. Default: from the preset.")
@click.option("--seed", type=int, help="Random seed for splits, sampling and initialisation. Default 0.")
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/last (model, optimiser, schedule, RNG).")
@click.option("--mlflow-uri", help="MLflow tracking URI. Default: MLFLOW_TRACKING_URI, else sqlite:///RUN_DIR/mlflow.db.")
@click.option("--skip-data-check", is_flag=True, hidden=True)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(**options):
    """Train a DCAL face-verification model."""
    from dcal.inference import resolve_device
    from dcal.training.build import DataArgs
    from dcal.training.config import resolve_config
    from dcal.training.distributed import is_launched_by_torchrun

    rank = int(os.environ.get("RANK", "0"))
    setup_logging(options["verbose"])
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 alone reports progress
    path_map = tuple(options["path_map"])
    data_args = DataArgs(str(options["data"]), str(options["twins"]) if options["twins"] else None, path_map,
                         str(options["people"]) if options["people"] else None,
                         str(options["splits"]) if options["splits"] else None)
    try:
        config = _apply_batch_size(resolve_config(options["preset"], options["config_path"], _overrides(options)),
                                   options["batch_size"])
        device = resolve_device(options["device"])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    previous = [name for name in ("best", "last", "metrics.csv") if (options["run_dir"] / name).exists()]
    if previous and not options["resume"] and not options["skip_data_check"]:
        raise click.ClickException(f"{options['run_dir']} already contains a run ({', '.join(previous)}); pass --resume "
                                   "to continue it, or choose a new --out folder (its best/ may have galleries built "
                                   "from it)")
    if options["resume"] and not (options["run_dir"] / "last").exists() \
            and not (options["run_dir"] / "last.old").exists():
        raise click.ClickException(f"--resume: {options['run_dir'] / 'last'} does not exist; "
                                   "start without --resume")

    if not options["skip_data_check"] and rank == 0:
        _check_data(data_args)
    if options["nproc_per_node"] > 1 and not is_launched_by_torchrun():
        _launch_torchrun(options["nproc_per_node"])

    from dcal.training.loop import Trainer

    try:
        trainer = Trainer(config, data_args, options["run_dir"], device, options["resume"], options["mlflow_uri"])
        result = trainer.run()
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    if rank == 0:
        best = result["best_eer"]
        click.echo(f"finished {result['steps']} steps; best validation head EER "
                   f"{best:.4f}" if best != float("inf") else f"finished {result['steps']} steps; no validation")
        click.echo(f"checkpoints: {options['run_dir'] / 'best'} and {options['run_dir'] / 'last'}")


if __name__ == "__main__":
    main()
