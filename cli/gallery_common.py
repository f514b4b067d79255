"""Options and error handling shared by dcal-enroll, dcal-match, dcal-verify and dcal-gallery.

Exit statuses: 0 success, 1 a runtime failure (mismatched checkpoint, empty
gallery, lock timeout, unreadable image), 2 a usage error (bad option value,
missing gallery, unknown identity). Errors print one message, no traceback.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import click

from indexer import (INDEX_TYPES, EmptyGalleryError, FingerprintMismatchError, Gallery, GalleryNotFoundError,
                     LockTimeoutError, UnknownIdentityError)

gallery_option = click.option(
    "--gallery", "gallery_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Gallery folder (SQLite database and FAISS index). Required.")
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Device that runs the model: 'auto' uses a CUDA GPU when one is visible, else the CPU.")
batch_size_option = click.option(
    "--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
    help="Images per forward pass; dcal-enroll also commits to the gallery once per batch.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text. Default: text.")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Log debug messages to stderr.")
lock_timeout_option = click.option(
    "--lock-timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
    help="Seconds to wait while another enrolment or removal has the gallery's write lock; 0 fails at once.")
index_type_option = click.option(
    "--index", "index_type", type=click.Choice(INDEX_TYPES), default=None,
    help="FAISS index: 'flat' (exact), 'ivf' (inverted lists, for tens of thousands of images and more; flat "
         "below 4096 images) or 'hnsw' (graph). Default: 'flat' for a new gallery, else the gallery's type.")


@contextlib.contextmanager
def gallery_errors(gallery_dir: Path | None = None) -> Iterator[None]:
    """Turn the gallery library's errors into click errors with the right exit status."""
    try:
        yield
    except GalleryNotFoundError as exc:
        raise click.BadParameter(str(exc), param_hint="--gallery") from exc
    except UnknownIdentityError as exc:
        raise click.BadParameter(str(exc), param_hint="IDENTITY") from exc
    except (FingerprintMismatchError, EmptyGalleryError, LockTimeoutError) as exc:
        raise click.ClickException(str(exc)) from exc


def resolve_checkpoint(checkpoint: str | None, gallery: Gallery | None) -> str:
    """Return the checkpoint folder to load: the option's value, else the one the gallery recorded.

    Raises:
        click.BadParameter: no checkpoint is given for a new gallery, or the folder contains no checkpoint.
        click.ClickException: the checkpoint's fingerprint differs from the gallery's.
    """
    from dcal.model import read_checkpoint_config

    if checkpoint is None and gallery is None:
        raise click.BadParameter("a new gallery needs a checkpoint to embed its images; pass --checkpoint "
                                 "(a checkpoint folder or a dcal-train run folder)", param_hint="--checkpoint")
    given = checkpoint if checkpoint is not None else gallery.checkpoint_path
    try:
        config = read_checkpoint_config(given)
    except FileNotFoundError as exc:
        if checkpoint is None:
            raise click.BadParameter(f"the gallery's recorded checkpoint is not readable: {exc}; pass the same "
                                     "checkpoint's new location with --checkpoint", param_hint="--checkpoint")
        raise click.BadParameter(str(exc), param_hint="--checkpoint") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if gallery is not None:
        with gallery_errors():
            gallery.check_fingerprint(config["fingerprint"], config["path"])
    return config["path"]


def load_embedder(checkpoint: str, device: str, batch_size: int):
    """Load a checkpoint for inference; a corrupt checkpoint or an unavailable device exits with status 1."""
    from dcal.inference import Embedder

    try:
        return Embedder(checkpoint, device=device, batch_size=batch_size)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def echo_json_line(obj) -> None:
    """Print obj as one compact JSON line on stdout."""
    click.echo(json.dumps(obj, default=lambda value: value.item() if hasattr(value, "item") else str(value)))
