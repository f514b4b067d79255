"""Image loading shared by training, enrolment and queries.

Every image that enters dcal goes through :func:`load_image`, so a photo gives
the same pixels whichever command reads it. The loader applies the EXIF
orientation, converts every Pillow mode to 8-bit RGB, accepts any format
Pillow can identify (with or without a file extension, and at non-ASCII
paths), and rejects decompression bombs, empty, truncated and non-image files
with :class:`ImageLoadError`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# Largest image accepted, in pixels (width x height). Face crops are far
# smaller; 40 megapixels still admits a full-resolution phone photo. Read at
# call time, so tests and users can lower or raise it.
MAX_IMAGE_PIXELS = 40_000_000

VERIFY_LEVELS = ("none", "header", "full")

# Errors Pillow raises on corrupt input. Decoders report truncation and bad
# data as OSError, and several plugins raise SyntaxError, struct.error or
# IndexError on malformed headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error)


class ImageLoadError(ValueError):
    """Raised when a file cannot be read as an image.

    Attributes:
        path: the file, as given to the loader.
        reason: what is wrong with it, in a few words.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load image {self.path!r}: {reason}")

    def __reduce__(self):
        # Keeps the error picklable, so DataLoader workers can pass it on.
        return (type(self), (self.path, self.reason))


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Load an image file as an upright 8-bit RGB image.

    The whole file is decoded here, so truncated data fails now rather than
    later in a transform.

    Args:
        path: the image file. The format is detected from the content, not
            the extension.
        max_pixels: largest accepted width x height. None uses
            ``MAX_IMAGE_PIXELS`` as it is at call time.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``RGB``, rotated by the
        file's EXIF orientation tag.

    Raises:
        ImageLoadError: the file is missing, empty, not an image, truncated,
            corrupt, in a mode that cannot be converted to RGB, or larger
            than ``max_pixels``. The message names the file and the reason.
    """
    path = os.fspath(path)
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    _check_file(path)
    with _open_image(path, limit, "truncated or corrupt image data") as img:
        img.load()
        upright = ImageOps.exif_transpose(img)
        return to_rgb(upright, path)


def check_image(path: str | os.PathLike, level: str = "header") -> None:
    """Check that a file can be loaded, at a chosen cost.

    Args:
        path: the image file.
        level: ``"none"`` checks that a non-empty regular file exists;
            ``"header"`` also opens it with Pillow and runs ``verify()``
            (reads the header, checks PNG CRCs, decodes no JPEG pixels);
            ``"full"`` decodes the whole image with :func:`load_image`.

    Raises:
        ImageLoadError: the file fails the check.
        ValueError: ``level`` is not one of ``none``, ``header``, ``full``.
    """
    if level not in VERIFY_LEVELS:
        raise ValueError(f"invalid verify level {level!r}: use one of {', '.join(VERIFY_LEVELS)}")
    path = os.fspath(path)
    if level == "full":
        load_image(path)
        return
    _check_file(path)
    if level == "none":
        return
    with _open_image(path, MAX_IMAGE_PIXELS, "corrupt image header") as img:
        img.verify()


@contextlib.contextmanager
def _open_image(path: str, limit: int | None, corrupt_reason: str):
    """Open an image with Pillow, turning every decoding failure inside the block into ImageLoadError.

    Args:
        path: the image file.
        limit: largest accepted width x height, or None for no dcal limit.
        corrupt_reason: the reason given when Pillow reports bad data.
    """
    try:
        # NOTE: catch_warnings changes process-wide filters and is not
        # thread-safe before Python 3.14; the explicit pixel limit is the
        # guard that holds in threads too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                _check_pixels(path, img, limit)
                yield img
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(path, f"image too large, possible decompression bomb ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(path, "not an image format Pillow can read") from exc
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(path, f"{corrupt_reason} ({exc})") from exc


def to_rgb(img: Image.Image, path: str = "<image>") -> Image.Image:
    """Convert an image in any Pillow mode to 8-bit RGB.

    Transparent pixels are composited onto black. 16- and 32-bit integer
    greyscale is rescaled to 0-255 (65535 maps to 255) instead of clipped.
    Float images with values in [0, 1] are scaled by 255, other float images
    are clipped to [0, 255].

    Args:
        img: a loaded image.
        path: the file it came from, for error messages.

    Raises:
        ImageLoadError: Pillow cannot convert the mode to RGB.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode.startswith("I") or mode == "F":
        return _wide_grey_to_rgb(img)
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise ImageLoadError(path, f"cannot convert mode {mode} to RGB ({exc})") from exc


def _wide_grey_to_rgb(img: Image.Image) -> Image.Image:
    """Rescale a 16/32-bit integer or float greyscale image to 8-bit RGB."""
    values = np.asarray(img)
    if img.mode == "F":
        values = values.astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            values = values * 255.0
        grey = np.clip(np.nan_to_num(values), 0.0, 255.0).round()
    else:
        # I;16 variants and mode I hold 16-bit samples in practice; values
        # outside 0-65535 only occur in mode I and are clipped to that range.
        wide = np.clip(values.astype(np.int64), 0, 65535)
        grey = (wide * 255 + 32767) // 65535
    return Image.fromarray(grey.astype(np.uint8), mode="L").convert("RGB")


def _check_file(path: str) -> None:
    """Raise ImageLoadError unless path is a non-empty regular file."""
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise ImageLoadError(path, "file not found") from exc
    except OSError as exc:
        raise ImageLoadError(path, f"cannot access file ({exc.strerror})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise ImageLoadError(path, "is a directory, not an image file")
    if info.st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")


def _check_pixels(path: str, img: Image.Image, limit: int | None) -> None:
    """Raise ImageLoadError when the header declares more than limit pixels."""
    width, height = img.size
    if limit is not None and width * height > limit:
        raise ImageLoadError(
            path,
            f"image is {width}x{height} = {width * height} pixels, above the limit of {limit} "
            "(decompression bomb guard); raise dcal.data.images.MAX_IMAGE_PIXELS if the file is genuine",
        )
