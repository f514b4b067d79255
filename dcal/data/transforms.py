"""Image transforms for training and evaluation.

No horizontal flip by default: identical twins often differ only by
asymmetric marks (moles, scars, a parting), and a mirror image would make
those marks useless for telling them apart.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

logger = logging.getLogger(__name__)


def build_transform(
    img_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    hflip: float = 0.0,
    rotation: float = 10.0,
    scale: tuple[float, float] = (0.85, 1.0),
    ratio: tuple[float, float] = (0.9, 1.1),
    color_jitter: float = 0.2,
) -> Callable[[Image.Image], torch.Tensor]:
    """Build the transform from an RGB PIL image to a normalised tensor.

    Args:
        img_size: output height and width in pixels.
        mean: per-channel mean of the backbone's pretraining (RGB, 0-1 scale).
        std: per-channel standard deviation (RGB, 0-1 scale), all > 0.
        train: add random augmentation. Training applies a random resized
            crop, a random rotation, colour jitter and an optional flip;
            evaluation only resizes.
        hflip: probability of a horizontal flip in training, 0 by default.
        rotation: largest random rotation in degrees, either direction.
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height).
        color_jitter: strength of the brightness, contrast and saturation
            jitter (torchvision ``ColorJitter`` factors).

    Returns:
        A callable mapping a PIL image to a float32 tensor of shape
        (3, img_size, img_size), normalised with ``mean`` and ``std``.

    Raises:
        ValueError: a size, probability, range or statistic is invalid.
    """
    _validate_args(img_size, mean, std, hflip, rotation, scale, ratio, color_jitter)
    size = (img_size, img_size)
    finish = [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if not train:
        return T.Compose([T.Resize(size, interpolation=InterpolationMode.BICUBIC), *finish])

    steps = [
        T.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=InterpolationMode.BICUBIC),
    ]
    if rotation > 0:
        steps.append(T.RandomRotation(rotation, interpolation=InterpolationMode.BILINEAR))
    if color_jitter > 0:
        steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    if hflip > 0:
        steps.append(T.RandomHorizontalFlip(hflip))
    return T.Compose([*steps, *finish])


def _validate_args(img_size, mean, std, hflip, rotation, scale, ratio, color_jitter) -> None:
    if not isinstance(img_size, int) or img_size <= 0:
        raise ValueError(f"invalid img_size {img_size!r}: expected a positive number of pixels")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"invalid mean {mean!r} or std {std!r}: expected 3 values each (RGB)")
    if any(s <= 0 for s in std):
        raise ValueError(f"invalid std {std!r}: every value must be > 0")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"invalid hflip {hflip!r}: expected a probability in [0, 1]")
    if rotation < 0:
        raise ValueError(f"invalid rotation {rotation!r}: expected degrees >= 0")
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"invalid scale {scale!r}: expected 0 < min <= max <= 1")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"invalid ratio {ratio!r}: expected 0 < min <= max")
    if color_jitter < 0:
        raise ValueError(f"invalid color_jitter {color_jitter!r}: expected a value >= 0")
