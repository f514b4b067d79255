"""Datasets that skip unreadable images instead of stopping an epoch.

``__getitem__`` returns None (labelled set) or an error record (path set)
for a file :func:`load_image` rejects, and the collate functions drop those
entries and count them. A batch can therefore be smaller than requested, and
a P x K batch from :class:`IdentityBatchSampler` can lose its layout: code
that relies on the layout must check the returned labels.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from dcal.data.images import ImageLoadError, load_image

logger = logging.getLogger(__name__)

Transform = Callable[[Image.Image], torch.Tensor]


class FaceImageDataset(Dataset):
    """Labelled face images for training and evaluation.

    Args:
        samples: (path, label) pairs, for example ``manifest.samples()``.
        transform: maps an RGB PIL image to a float tensor (3, H, W).
        loader: reads a path into an RGB PIL image; :func:`load_image` by
            default.
    """

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Transform,
                 loader: Callable[[str], Image.Image] = load_image):
        self.samples = list(samples)
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        """Label of every index, in the form :class:`IdentityBatchSampler` takes."""
        return [label for _, label in self.samples]

    def __getitem__(self, index: int):
        """Return (image tensor, label, index), or None when the file cannot be loaded."""
        path, label = self.samples[index]
        try:
            image = self.loader(path)
        except ImageLoadError as exc:
            logger.warning("skipping image %s (index %d): %s", exc.path, index, exc.reason)
            return None
        return self.transform(image), int(label), int(index)


def collate_skip_bad(batch: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Stack the loadable items of a :class:`FaceImageDataset` batch.

    Returns:
        ``(images, labels, indices, num_bad)``: float tensor (B, 3, H, W),
        int64 tensors (B,), and the number of items dropped. When every item
        was bad, images has shape (0,) and labels and indices are empty.
    """
    good = [item for item in batch if item is not None]
    num_bad = len(batch) - len(good)
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return torch.empty(0), empty, empty.clone(), num_bad
    images = torch.stack([item[0] for item in good])
    labels = torch.tensor([item[1] for item in good], dtype=torch.long)
    indices = torch.tensor([item[2] for item in good], dtype=torch.long)
    return images, labels, indices, num_bad


class PathDataset(Dataset):
    """Unlabelled images for enrolment and queries.

    ``__getitem__`` returns ``(image tensor, index)``, or
    ``(None, index, message)`` when the file cannot be loaded; the message
    names the file and the reason.

    Args:
        paths: image files.
        transform: maps an RGB PIL image to a float tensor (3, H, W).
        loader: reads a path into an RGB PIL image; :func:`load_image` by
            default.
    """

    def __init__(self, paths: Sequence[str], transform: Transform,
                 loader: Callable[[str], Image.Image] = load_image):
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.loader = loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = self.loader(self.paths[index])
        except ImageLoadError as exc:
            logger.warning("skipping image %s (index %d): %s", exc.path, index, exc.reason)
            return None, int(index), str(exc)
        return self.transform(image), int(index)


def collate_paths(batch: Sequence) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """Stack the loadable items of a :class:`PathDataset` batch.

    Returns:
        ``(images, indices_ok, failures)``: float tensor (B, 3, H, W) of the
        loaded images, int64 tensor (B,) of their indices, and
        ``(index, message)`` for each file that failed. Images has shape
        (0,) when every file failed.
    """
    good = [item for item in batch if item[0] is not None]
    failures = [(int(item[1]), item[2]) for item in batch if item[0] is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), failures
    images = torch.stack([item[0] for item in good])
    indices = torch.tensor([item[1] for item in good], dtype=torch.long)
    return images, indices, failures
