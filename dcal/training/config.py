"""Training configuration: presets, YAML overrides, command-line overrides.

Resolution order: preset defaults, then a YAML file, then command-line
options, so the command line wins. Derived values (effective batch, scaled
learning rate) are computed once in :func:`derive`.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data paths."""

    # Model
    backbone: str = "vit_base_patch16_224"
    img_size: int = 448  # pixels, square
    depth: int | None = None  # ViT blocks; None keeps the timm model's depth
    weights: str = "timm"  # "timm" (hub), "none" (random) or a local .safetensors/.pth file
    glca_blocks: int = 1  # M
    local_ratio: float = 0.15  # R
    pwca_blocks: int | None = None  # T; None = every block, 0 = off
    drop_path_rate: float = 0.1

    # Batches: each process draws P identities x K images per step.
    identities_per_batch: int = 2  # P
    images_per_identity: int = 4  # K
    twin_prob: float = 0.5  # chance that an identity with a twin brings the twin into its batch
    batches_per_epoch: int | None = None  # None: about one pass over the training images
    num_workers: int = 2  # image-decoding processes per training process

    # Optimisation
    epochs: int = 200
    warmup_epochs: float = 20.0
    max_steps: int | None = None  # optimiser steps; stops early when reached
    accum_steps: int = 4
    base_lr: float = 3e-4  # for an effective batch of 64; scaled linearly
    weight_decay: float = 0.01
    clip_grad: float | None = 1.0  # max global gradient norm; None disables
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    twin_weight: float = 2.0  # twin negatives' weight in the verification loss
    amp: str = "bf16"  # bf16, fp16 or off
    seed: int = 0

    # Validation, checkpoints, logging
    val_every: int = 1  # epochs between validations
    patience: int = 20  # validations without EER improvement before stopping; 0 disables
    target_far: float = 0.01  # FAR at which a second threshold is calibrated
    max_val_pairs: int = 3000  # cap on validation positives (negatives follow the same ratio)
    checkpoint_every: int = 0  # optimiser steps between mid-epoch last/ checkpoints; 0 = epoch ends only
    log_every: int = 20  # optimiser steps between progress lines

    def __post_init__(self):
        if self.amp not in ("bf16", "fp16", "off"):
            raise ValueError(f"amp must be bf16, fp16 or off, got {self.amp!r}")
        for name in ("identities_per_batch", "images_per_identity", "epochs", "accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.identities_per_batch < 2:
            raise ValueError("identities_per_batch must be >= 2 so that every batch has negatives")
        if not 0.0 <= self.twin_prob <= 1.0:
            raise ValueError(f"twin_prob must be in [0, 1], got {self.twin_prob}")
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be positive, got {self.base_lr}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # ViT-B/16 at 448 px, 8 images per GPU x 2 GPUs x 4 accumulation steps = 64.
    "paper": dict(),
    # A 6-block, 192-wide ViT at 112 px trained from scratch: LFW-scale data on
    # 2 CPU cores in well under an hour.
    "cpu-small": dict(
        backbone="vit_tiny_patch16_224", img_size=112, depth=6, weights="none",
        drop_path_rate=0.05, identities_per_batch=8, images_per_identity=4, accum_steps=1,
        epochs=12, warmup_epochs=1.0, base_lr=1e-3, weight_decay=0.05,
        amp="bf16", patience=0, log_every=25, num_workers=1, max_val_pairs=600,
    ),
    # Seconds per run, for tests and smoke checks.
    "tiny": dict(
        backbone="vit_tiny_patch16_224", img_size=32, depth=2, weights="none", drop_path_rate=0.0,
        identities_per_batch=4, images_per_identity=2, accum_steps=1, epochs=2, warmup_epochs=0.0,
        base_lr=1e-3, batches_per_epoch=5, amp="off", patience=0, log_every=5, num_workers=0,
        max_val_pairs=40,
    ),
}


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping of TrainConfig fields.

    Raises:
        ValueError: the file is not a mapping or names unknown fields.
    """
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of training options, got {type(values).__name__}")
    unknown = set(values) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{path} has unknown training options {sorted(unknown)}; "
                         f"valid ones are the fields of the resolved config.yaml of a run")
    return values


def resolve_config(preset: str = "paper", yaml_path: str | Path | None = None,
                   overrides: dict | None = None) -> TrainConfig:
    """Build a TrainConfig from a preset, a YAML file and explicit overrides, in that order."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    if yaml_path is not None:
        values.update(load_yaml(yaml_path))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig(**values)


@dataclass
class Derived:
    """Values computed from the config and the launch."""

    world_size: int
    batch_per_process: int
    effective_batch: int
    lr: float


def derive(config: TrainConfig, world_size: int) -> Derived:
    """Compute the effective batch and scale the learning rate linearly from a batch of 64."""
    per_process = config.identities_per_batch * config.images_per_identity
    effective = per_process * world_size * config.accum_steps
    lr = config.base_lr * effective / 64
    logger.info("effective batch %d (%d per process x %d processes x %d accumulation); lr %.3g -> %.3g",
                effective, per_process, world_size, config.accum_steps, config.base_lr, lr)
    return Derived(world_size, per_process, effective, lr)
