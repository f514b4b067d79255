"""Build the pieces of a training run: data, model, optimiser, schedule."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler

from ..data.dataset import FaceImageDataset, collate_skip_bad
from ..data.manifest import FaceManifest, filter_people, load_manifest
from ..data.pairs import make_eval_pairs, write_pairs_csv
from ..data.sampler import IdentityBatchSampler
from ..data.splits import load_splits, make_splits, save_splits
from ..data.transforms import build_transform
from ..model import DCALConfig, DCALModel
from .config import TrainConfig
from .distributed import is_main_process

logger = logging.getLogger(__name__)


@dataclass
class DataArgs:
    """Training data location and filters (the command's data options)."""

    data: str
    twins: str | None = None
    path_map: tuple[tuple[str, str], ...] = ()
    people: str | None = None  # restrict to the people of an LFW list such as peopleDevTrain.txt
    splits: str | None = None  # a splits.json to reuse; None makes (or reuses) RUN/splits.json


@dataclass
class RunData:
    """The training and validation data of one run."""

    train: FaceManifest
    labels: list[int]
    samples: list[tuple[str, int]]
    twin_of: dict[int, int]
    twin_groups: list[list[int]]
    val_pairs: pd.DataFrame | None
    splits: dict


def load_run_manifest(args: DataArgs, verify_images: str = "none") -> FaceManifest:
    manifest = load_manifest(args.data, twins=args.twins, path_map=args.path_map, verify_images=verify_images)
    if args.people:
        manifest = filter_people(manifest, args.people)
    return manifest


def resolve_splits(manifest: FaceManifest, args: DataArgs, run_dir: Path, seed: int) -> dict:
    """Use given splits, else the run's saved ones (on resume), else make and save new ones."""
    saved = run_dir / "splits.json"
    if args.splits:
        return load_splits(args.splits)
    if saved.is_file():
        return load_splits(saved)
    splits = make_splits(manifest, seed=seed)
    if is_main_process():
        save_splits(splits, saved)
    return splits


def build_run_data(args: DataArgs, config: TrainConfig, run_dir: Path) -> RunData:
    """Load the data, split it and prepare labels, twin links and validation pairs."""
    manifest = load_run_manifest(args)
    splits = resolve_splits(manifest, args, run_dir, config.seed)
    known = set(manifest.identities())
    # Training identities need 2+ images: a lone image gives no positive pair.
    train_ids = [i for i in splits["train"] if i in known and len(manifest.images[i]) >= 2]
    if len(train_ids) < 2:
        raise ValueError(f"only {len(train_ids)} training identities with 2+ images in {args.data}; "
                         "training needs at least 2")
    train = manifest.subset(train_ids)
    samples = train.samples()
    label_of = {name: i for i, name in enumerate(train.identities())}
    twin_of: dict[int, int] = {}
    for a, b in train.twin_pairs:
        if a in label_of and b in label_of:
            twin_of[label_of[a]], twin_of[label_of[b]] = label_of[b], label_of[a]
    twin_groups = [[a, b] for a, b in twin_of.items() if a < b]

    val_ids = [i for i in splits.get("val", []) if i in known]
    val_pairs = None
    if val_ids:
        val = manifest.subset(val_ids)
        val_pairs = make_eval_pairs(val.images, val.twin_pairs, max_positives=config.max_val_pairs,
                                    max_twin_negatives=config.max_val_pairs, seed=config.seed)
        if val_pairs["label"].nunique() < 2:
            logger.warning("validation split has only one pair class; validation is skipped")
            val_pairs = None
        elif is_main_process():
            write_pairs_csv(val_pairs, run_dir / "val_pairs.csv")
    else:
        logger.warning("no validation identities: validation and best-checkpoint selection are skipped")
    logger.info("training on %d identities, %d images (%d twin pairs); %d validation pairs",
                len(train_ids), len(samples), len(twin_groups), 0 if val_pairs is None else len(val_pairs))
    return RunData(train, [label for _, label in samples], samples, twin_of, twin_groups, val_pairs, splits)


class SkipBatches(Sampler):
    """Skip the first ``skip`` batches of a batch sampler (resuming mid-epoch)."""

    def __init__(self, sampler: IdentityBatchSampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        for i, batch in enumerate(self.sampler):
            if i >= self.skip:
                yield batch

    def __len__(self):
        return max(0, len(self.sampler) - self.skip)


def build_sampler(data: RunData, config: TrainConfig, rank: int, world_size: int) -> IdentityBatchSampler:
    batches = config.batches_per_epoch
    if batches is None:
        batches = max(1, len(data.samples) // (config.identities_per_batch * config.images_per_identity * world_size))
    return IdentityBatchSampler(
        data.labels, config.identities_per_batch, config.images_per_identity, twin_groups=data.twin_groups,
        twin_prob=config.twin_prob, num_replicas=world_size, rank=rank, seed=config.seed,
        batches_per_epoch=batches)


def build_loader(data: RunData, model_config: DCALConfig, config: TrainConfig, batch_sampler,
                 pin_memory: bool) -> DataLoader:
    transform = build_transform(model_config.img_size, model_config.mean, model_config.std, train=True)
    dataset = FaceImageDataset(data.samples, transform)
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=config.num_workers,
                      collate_fn=collate_skip_bad, pin_memory=pin_memory,
                      persistent_workers=False)


def build_model(config: TrainConfig, num_classes: int) -> DCALModel:
    model_config = DCALConfig(
        backbone=config.backbone, img_size=config.img_size, depth=config.depth, weights=config.weights,
        glca_blocks=config.glca_blocks, local_ratio=config.local_ratio, pwca_blocks=config.pwca_blocks,
        drop_path_rate=config.drop_path_rate, num_classes=num_classes)
    return DCALModel(model_config)


def build_optimizer(module: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on norms, biases, tokens, position embeddings and loss weights."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) or "weighting" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def build_scheduler(optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to 1% of the peak, per optimiser step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
