"""Embed images and score pairs with a trained checkpoint.

One :class:`Embedder` serves enrolment, 1:N queries, 1:1 verification and
evaluation, so every path decodes, resizes and normalises images the same way.
Decoding runs in DataLoader workers so it overlaps with the forward pass.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from .data.dataset import PathDataset, collate_paths
from .data.transforms import build_transform
from .model import load_checkpoint

logger = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """Map "auto" to CUDA when available, else CPU; reject "cuda" without a GPU.

    Raises:
        ValueError: ``device`` is "cuda" but no GPU is visible, or unknown.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device} was requested but no CUDA GPU is visible; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def default_workers() -> int:
    return min(4, max(1, (os.cpu_count() or 1) - 1))


@dataclass
class EmbedResult:
    """Embeddings of the readable images of one :meth:`Embedder.embed_paths` batch."""

    indices: list[int]  # positions in the input path list, in order
    embeddings: np.ndarray  # float32 (n, E), unit L2 norm
    failures: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


class Embedder:
    """A loaded checkpoint ready to embed images and score pairs.

    Args:
        checkpoint: checkpoint folder or training run folder (its ``best/``).
        device: "auto", "cpu" or "cuda".
        batch_size: images per forward pass.
        num_workers: image-decoding processes; 0 decodes in the main process.
        parts: embedding parts, "sa+glca" (default), "sa" or "glca" (ablations).
    """

    def __init__(self, checkpoint: str | os.PathLike, device: str = "auto", batch_size: int = 32,
                 num_workers: int | None = None, parts: str = "sa+glca"):
        self.device = resolve_device(device)
        self.model, self.config = load_checkpoint(checkpoint, map_location=self.device)
        model_cfg = self.model.config
        self.transform = build_transform(model_cfg.img_size, model_cfg.mean, model_cfg.std, train=False)
        self.batch_size = batch_size
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.parts = parts if len(self.model.glca) else "sa"
        logger.info("loaded checkpoint %s (fingerprint %s..., embedding size %d) on %s",
                    self.config["path"], self.fingerprint[:12], self.embedding_size, self.device)

    @property
    def fingerprint(self) -> str:
        return self.config["fingerprint"]

    @property
    def embedding_size(self) -> int:
        return self.model.embed_dim if self.parts == "sa+glca" else self.model.width

    @property
    def thresholds(self) -> dict:
        """Calibrated decision thresholds stored by training (may be empty)."""
        return self.config.get("thresholds", {})

    def head_threshold(self) -> float:
        """Return the calibrated head-probability threshold, or 0.5 when none is stored."""
        return float(self.thresholds.get("head", {}).get("eer", 0.5))

    def cosine_threshold(self) -> float | None:
        value = self.thresholds.get("cosine", {}).get("eer")
        return None if value is None else float(value)

    @torch.inference_mode()
    def embed_tensor(self, images: torch.Tensor) -> np.ndarray:
        """Embed a preprocessed batch (B, 3, S, S); returns float32 (B, E)."""
        images = images.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            embeddings = self.model.embed(images, self.parts)
        return embeddings.float().cpu().numpy()

    def embed_paths(self, paths: Sequence[str], progress: Callable[[int], None] | None = None
                    ) -> Iterator[EmbedResult]:
        """Embed images from files, batch by batch, skipping unreadable ones.

        Yields one :class:`EmbedResult` per batch; ``progress(n)`` is called with
        the number of files handled after each batch.
        """
        dataset = PathDataset(list(paths), self.transform)
        workers = self.num_workers if len(paths) > self.batch_size else 0
        loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=workers,
                            collate_fn=collate_paths, pin_memory=self.device.type == "cuda",
                            persistent_workers=False, prefetch_factor=4 if workers else None)
        for images, indices, failures in loader:
            embeddings = self.embed_tensor(images) if len(indices) else np.zeros((0, self.embedding_size), np.float32)
            for index, reason in failures:
                logger.warning("skipped %s: %s", paths[index], reason)
            if progress is not None:
                progress(len(indices) + len(failures))
            yield EmbedResult(list(indices), embeddings, list(failures))

    def embed_all(self, paths: Sequence[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Embed every path; returns (embeddings (n, E) with NaN rows for failures, failures)."""
        out = np.full((len(paths), self.embedding_size), np.nan, dtype=np.float32)
        failures: list[tuple[int, str]] = []
        for result in self.embed_paths(paths):
            out[result.indices] = result.embeddings
            failures.extend(result.failures)
        return out, failures

    @torch.inference_mode()
    def head_scores(self, a: np.ndarray, b: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Return same-person probabilities (n,) from the verification head for embedding rows a[i], b[i]."""
        if self.parts != "sa+glca" and len(self.model.glca):
            raise ValueError("the verification head needs full sa+glca embeddings, not an ablation")
        scores = []
        for start in range(0, len(a), batch_size):
            ta = torch.from_numpy(np.ascontiguousarray(a[start:start + batch_size])).to(self.device)
            tb = torch.from_numpy(np.ascontiguousarray(b[start:start + batch_size])).to(self.device)
            scores.append(torch.sigmoid(self.model.verify_logits(ta, tb).float()).cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of unit-norm embeddings (n, E) x (n, E) -> (n,)."""
    return np.einsum("ij,ij->i", a.astype(np.float32), b.astype(np.float32))
