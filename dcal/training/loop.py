"""The DCAL training loop: DDP, mixed precision, validation, checkpoints, resume.

Rank 0 alone logs to stdout, writes into the run folder and talks to MLflow.
Layout of a run folder::

    RUN/config.yaml      resolved training configuration
    RUN/splits.json      identity splits used
    RUN/val_pairs.csv    validation pairs
    RUN/metrics.csv      one row per validation
    RUN/mlflow.db        embedded MLflow store (unless a server is given)
    RUN/last/            latest checkpoint + training_state.pt (for --resume)
    RUN/best/            checkpoint with the lowest validation EER
"""
from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from ..data.transforms import build_transform
from ..model.checkpoint import resolve_checkpoint_dir, save_checkpoint
from . import distributed as dist_utils
from .build import DataArgs, SkipBatches, build_loader, build_model, build_optimizer, build_run_data
from .build import build_sampler, build_scheduler
from .config import TrainConfig, derive
from .objective import DCALObjective
from .state import STATE_FILE, read_state, rng_state, set_rng_state, write_state
from .tracking import Tracker
from .validation import thresholds_from, validate

logger = logging.getLogger(__name__)


@dataclass
class Progress:
    """Counters that --resume restores."""

    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    step: int = 0  # optimiser steps taken
    best_eer: float = float("inf")
    stale: int = 0  # validations since the best one
    mlflow_run_id: str | None = None
    history: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # (step, total, sa) per optimiser step of this process's run


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Return (autocast dtype or None, whether a grad scaler is needed)."""
    if amp == "off":
        return None, False
    if amp == "fp16" and device.type != "cuda":
        logger.warning("fp16 autocast needs a CUDA GPU; using bf16 autocast on the CPU instead")
        return torch.bfloat16, False
    if amp == "bf16":
        return torch.bfloat16, False
    return torch.float16, True


def save_resolved_config(run_dir: Path, config: TrainConfig, data: DataArgs, extra: dict) -> dict:
    resolved = {"train": config.to_dict(), "data": {**vars(data), "path_map": [list(p) for p in data.path_map]},
                **extra}
    tmp = run_dir / "config.yaml.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(resolved, f, sort_keys=False)
    os.replace(tmp, run_dir / "config.yaml")
    return resolved


def append_metrics_csv(run_dir: Path, row: dict) -> None:
    path = run_dir / "metrics.csv"
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


class Trainer:
    """One process's share of a training run."""

    def __init__(self, config: TrainConfig, data_args: DataArgs, run_dir: Path, device: torch.device,
                 resume: bool = False, mlflow_uri: str | None = None):
        self.config, self.data_args, self.run_dir = config, data_args, run_dir
        self.rank, self.local_rank, self.world_size = dist_utils.init_distributed(device)
        if device.type == "cuda" and self.world_size > 1:
            device = torch.device("cuda", self.local_rank)
        self.device = device
        self.main = self.rank == 0
        if self.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        dist_utils.barrier()

        torch.manual_seed(config.seed + self.rank)
        self.derived = derive(config, self.world_size)
        self.data = build_run_data(data_args, config, run_dir)
        self.model = build_model(config, num_classes=len(self.data.train.identities())).to(device)
        self.objective = DCALObjective(self.model, config.label_smoothing, config.triplet_margin,
                                       config.twin_weight, self.data.twin_of).to(device)
        self.ddp = (DistributedDataParallel(self.objective, device_ids=[self.local_rank] if device.type == "cuda"
                                            else None) if self.world_size > 1 else self.objective)
        self.amp_dtype, need_scaler = resolve_amp(config.amp, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=need_scaler)
        self.optimizer = build_optimizer(self.objective, self.derived.lr, config.weight_decay)

        self.sampler = build_sampler(self.data, config, self.rank, self.world_size)
        self.steps_per_epoch = max(1, len(self.sampler) // config.accum_steps)
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        warmup = int(config.warmup_epochs * self.steps_per_epoch)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, min(warmup, self.total_steps // 2))
        self.eval_transform = build_transform(config.img_size, self.model.config.mean, self.model.config.std,
                                              train=False)
        self.progress = Progress()
        if resume:
            self._resume()
        self.tracker = None
        if self.main:
            self.resolved = save_resolved_config(run_dir, config, data_args, {
                "derived": vars(self.derived), "world_size": self.world_size, "device": str(device),
                "amp_effective": {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype],
                "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch})
            self.tracker = Tracker(run_dir, mlflow_uri, self.progress.mlflow_run_id, run_dir.name)
            self.progress.mlflow_run_id = self.tracker.run_id
            if not resume:
                self.tracker.log_params(self.resolved)
            self.tracker.log_artifact(run_dir / "config.yaml")

    # ------------------------------------------------------------ checkpoints

    def _checkpoint_extra(self, metrics: dict | None) -> dict:
        extra = {"training": {"run_dir": str(self.run_dir.resolve()), "step": self.progress.step,
                              "epoch": self.progress.epoch, "mlflow_run_id": self.progress.mlflow_run_id,
                              "mlflow_uri": self.tracker.uri if self.tracker else None,
                              "identities": len(self.data.train.identities())}}
        if metrics is not None:
            extra["thresholds"] = thresholds_from(metrics, self.config.target_far)
            extra["validation"] = metrics
        elif self.progress.history:
            extra["thresholds"] = self.progress.history[-1]["thresholds"]
        return extra

    def _training_state(self) -> dict:
        return {
            "objective_extra": {k: v for k, v in self.objective.state_dict().items()
                                if k.startswith(("model.classifiers.", "weighting."))},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": {k: v for k, v in vars(self.progress).items() if k not in ("history", "losses")},
            "history": self.progress.history,
        }

    def save_last(self, metrics: dict | None = None) -> None:
        """Write last/ with the training state; every rank must call it (RNG states are gathered)."""
        rngs = dist_utils.gather_object(rng_state())
        if not self.main:
            return
        state = {**self._training_state(), "rng": rngs}
        save_checkpoint(self.model, self.run_dir / "last", self._checkpoint_extra(metrics),
                        extra_files={STATE_FILE: lambda path: write_state(path, state)})

    def _resume(self) -> None:
        last = self.run_dir / "last"
        folder = resolve_checkpoint_dir(last) if (last.exists() or last.with_name("last.old").exists()) else None
        if folder is None:
            raise FileNotFoundError(f"--resume: no {last} checkpoint to continue from; start without --resume")
        from safetensors.torch import load_file

        state = read_state(folder)
        weights = load_file(str(folder / "model.safetensors"))
        self.model.load_state_dict(weights, strict=False)
        self.objective.load_state_dict({**{f"model.{k}": v for k, v in weights.items()},
                                        **state["objective_extra"]}, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"], history=state.get("history", []))
        rngs = state["rng"]
        if len(rngs) != self.world_size:
            logger.warning("resuming with %d processes instead of %d: random streams are not reproduced",
                           self.world_size, len(rngs))
        set_rng_state(rngs[min(self.rank, len(rngs) - 1)])
        logger.info("resumed from %s at epoch %d, batch %d, step %d", folder, self.progress.epoch,
                    self.progress.batch_in_epoch, self.progress.step)

    # --------------------------------------------------------------- training

    def _partner(self, batch_size: int) -> torch.Tensor:
        """Pick each image's PWCA distractor: the image a whole number of identities away.

        The sampler lays identities out in blocks of K and often puts twins in
        neighbouring blocks, so distractors are frequently look-alikes.
        """
        K = self.config.images_per_identity
        blocks = max(1, batch_size // K)
        shift = int(torch.randint(1, blocks, ()).item()) * K if blocks > 1 else 1
        return (torch.arange(batch_size) + shift) % batch_size

    def _forward_backward(self, images, labels, sync: bool) -> dict:
        partner = self._partner(len(labels)).to(self.device) if self.model.num_pwca_blocks else None
        context = contextlib.nullcontext() if sync or self.world_size == 1 else self.ddp.no_sync()
        with context:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                losses = self.ddp(images, labels, partner)
            self.scaler.scale(losses["total"] / self.config.accum_steps).backward()
        return losses

    def _optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.config.clip_grad or float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.progress.step += 1
        return float(norm)

    def train_epoch(self) -> bool:
        """Run one epoch (or its remainder after a resume); returns False once max_steps is reached."""
        cfg, progress = self.config, self.progress
        self.sampler.set_epoch(progress.epoch)
        loader = build_loader(self.data, self.model.config, cfg, SkipBatches(self.sampler, progress.batch_in_epoch),
                              pin_memory=self.device.type == "cuda")
        self.ddp.train()
        meter = {"start": time.monotonic(), "images": 0, "data_time": 0.0, "loss_sum": 0.0, "n": 0, "bad": 0}
        tick = time.monotonic()
        for images, labels, _indices, bad in loader:
            meter["data_time"] += time.monotonic() - tick
            meter["bad"] += bad
            progress.batch_in_epoch += 1
            if len(labels) < 2:
                # NOTE: under DDP the other processes do not skip this batch, so their gradient
                # all-reduce waits until the timeout. Only a batch of unreadable files triggers it.
                logger.warning("batch %d had too few readable images; skipped", progress.batch_in_epoch)
                tick = time.monotonic()
                continue
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device)
            sync = progress.batch_in_epoch % cfg.accum_steps == 0
            losses = self._forward_backward(images, labels, sync)
            meter["images"] += len(labels) * self.world_size
            if sync:
                grad_norm = self._optimizer_step()
                self._after_step(losses, grad_norm, meter)
                if cfg.checkpoint_every and progress.step % cfg.checkpoint_every == 0:
                    self.save_last()
                if progress.step >= self.total_steps:
                    return False
            tick = time.monotonic()
        if meter["bad"] and self.main:
            logger.warning("epoch %d: %d unreadable images were skipped", progress.epoch, meter["bad"])
        return True

    def _after_step(self, losses: dict, grad_norm: float, meter: dict) -> None:
        progress, cfg = self.progress, self.config
        total = dist_utils.all_reduce_mean(losses["total"].float()).item()
        progress.losses.append((progress.step, total, float(losses["sa"].detach())))
        meter["loss_sum"] += total
        meter["n"] += 1
        if progress.step % cfg.log_every and progress.step != self.total_steps:
            return
        reduced = {k: dist_utils.all_reduce_mean(v.float()).item() for k, v in losses.items()}
        if not self.main:
            return
        elapsed = time.monotonic() - meter["start"]
        rate = meter["images"] / max(elapsed, 1e-9)
        eta = elapsed / max(meter["n"], 1) * (self.total_steps - progress.step)
        lr = self.scheduler.get_last_lr()[0]
        logger.info("step %d/%d | epoch %d | loss %.4f (mean %.4f) | lr %.3g | %.1f img/s | data %.3f s | eta %s",
                    progress.step, self.total_steps, progress.epoch + 1, total, meter["loss_sum"] / meter["n"],
                    lr, rate, meter["data_time"] / meter["n"], time.strftime("%H:%M:%S", time.gmtime(eta)))
        weights = self.objective.weighting.weights()
        metrics = {f"train/loss_{k}": v for k, v in reduced.items()}
        metrics.update({f"train/weight_{k}": v for k, v in weights.items()})
        metrics.update({"train/lr": lr, "train/img_per_s": rate, "train/grad_norm": grad_norm})
        self.tracker.log_metrics(metrics, progress.step)

    # ------------------------------------------------------------- validation

    def validate_and_checkpoint(self) -> bool:
        """Validate on rank 0, save last/ and best/; returns True when training should stop early."""
        stop, metrics = False, None
        if self.main and self.data.val_pairs is not None:
            metrics = validate(self.model, self.data.val_pairs, self.eval_transform, self.device,
                               self.config.target_far, self.amp_dtype)
            stop = self._record_validation(metrics)
        self.save_last(metrics)
        if self.main and (metrics is None or self.progress.stale == 0):
            save_checkpoint(self.model, self.run_dir / "best", self._checkpoint_extra(metrics))
            self.tracker.log_artifact(self.run_dir / "best" / "config.json", "best")
        return bool(dist_utils.broadcast_object(stop))

    def _record_validation(self, metrics: dict) -> bool:
        progress = self.progress
        eer = metrics["head"]["eer"]
        if eer < progress.best_eer - 1e-6:
            progress.best_eer, progress.stale = eer, 0
        else:
            progress.stale += 1
        row = {"epoch": progress.epoch, "step": progress.step, "pairs": metrics["pairs"]}
        for scorer in ("cosine", "head"):
            for key in ("eer", "roc_auc", "tar_at_far", "twin_eer", "twin_reject_rate"):
                row[f"{scorer}_{key}"] = metrics[scorer].get(key, float("nan"))
        append_metrics_csv(self.run_dir, row)
        progress.history.append({**row, "thresholds": thresholds_from(metrics, self.config.target_far)})
        self.tracker.log_metrics({f"val/{k}": v for k, v in row.items() if k not in ("epoch", "step")},
                                 progress.step)
        logger.info("validation at step %d (%d epochs done): head EER %.4f AUC %.4f | cosine EER %.4f AUC %.4f | "
                    "twin-negative reject rate (head) %s | best head EER %.4f",
                    row["step"], row["epoch"], row["head_eer"], row["head_roc_auc"], row["cosine_eer"], row["cosine_roc_auc"],
                    f"{row['head_twin_reject_rate']:.3f}" if row["head_twin_reject_rate"] == row["head_twin_reject_rate"]
                    else "n/a", progress.best_eer)
        patience = self.config.patience
        if patience and progress.stale >= patience:
            logger.info("early stopping: no EER improvement in %d validations", patience)
            return True
        return False

    def check_parameters_in_sync(self) -> bool:
        """Compare a float64 checksum of every parameter across processes; log the result."""
        with torch.no_grad():
            checksum = sum(p.double().sum().item() * (i + 1) for i, p in enumerate(self.objective.parameters()))
        sums = dist_utils.gather_object(checksum)
        in_sync = all(s == sums[0] for s in sums)
        if self.world_size > 1:
            log = logger.info if in_sync else logger.error
            log("parameters identical across %d processes: %s", self.world_size, in_sync)
        return in_sync

    # -------------------------------------------------------------------- run

    def run(self) -> dict:
        status = "FAILED"
        progress = self.progress
        try:
            while progress.epoch < self.epochs and progress.step < self.total_steps:
                more = self.train_epoch()
                epoch_done = progress.batch_in_epoch >= len(self.sampler)
                if epoch_done:
                    progress.epoch += 1
                    progress.batch_in_epoch = 0
                last = not more or progress.epoch >= self.epochs
                stop = False
                if last or (epoch_done and progress.epoch % self.config.val_every == 0):
                    stop = self.validate_and_checkpoint()
                elif epoch_done:
                    self.save_last()
                if last or stop:
                    break
            in_sync = self.check_parameters_in_sync()
            status = "FINISHED"
            return {"best_eer": progress.best_eer, "steps": progress.step, "history": progress.history,
                    "losses": progress.losses, "parameters_in_sync": in_sync}
        finally:
            if self.tracker is not None:
                self.tracker.finish(status)
            dist_utils.barrier()
            dist_utils.cleanup()
