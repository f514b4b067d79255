"""``dcal-enroll``: add a folder of face images to a gallery.

Enrolment is incremental: files whose sha256 is already in the gallery are
skipped before any model work, so re-running the same command changes
nothing. A progress bar and logs go to stderr; the summary goes to stdout.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from cli.common import data_options, load_manifest_or_exit, setup_logging
from cli.gallery_common import (batch_size_option, device_option, echo_json_line, gallery_errors, gallery_option,
                                index_type_option, json_option, load_embedder, lock_timeout_option,
                                resolve_checkpoint, verbose_option)
from indexer import EnrollSummary, Gallery

logger = logging.getLogger("dcal.enroll")

# Data-check problems whose files are left out of the manifest; enrolment reports them as failed.


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, help="Enrol face images into a gallery. FOLDER is a folder with one sub-folder of images per "
               "identity, or a dataset_infor.json file {identity: [image path, ...]}. Images already in the "
               "gallery (same sha256) are skipped. Exit status: 0 success, 1 some files failed (the others "
               "were enrolled), 2 usage error.")
@click.argument("folder", type=click.Path(exists=True, path_type=Path))
@gallery_option
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Checkpoint folder or dcal-train run folder that embeds the images. Required when the "
                   "gallery is new; default: the checkpoint recorded in the gallery.")
@data_options
@batch_size_option
@device_option
@index_type_option
@lock_timeout_option
@json_option
@verbose_option
def main(folder, gallery_dir, checkpoint, twins, path_map, people, batch_size, device, index_type, lock_timeout,
         as_json, verbose):
    setup_logging(verbose)
    manifest = load_manifest_or_exit(str(folder), None, path_map, people, verify="none")
    if manifest.num_images() == 0:
        raise click.BadParameter(
            f"no images found in {folder}; pass a folder with one sub-folder of image files per identity, "
            "or a dataset_infor.json file listing image paths", param_hint="FOLDER")
    twin_pairs = _read_twin_pairs(twins)

    with gallery_errors():
        gallery, embedder = _open_or_create(gallery_dir, checkpoint, device, batch_size, index_type, lock_timeout)
        with gallery, click.progressbar(length=manifest.num_images(), label=f"Enrolling into {gallery_dir}",
                                        file=sys.stderr) as bar:
            summary = gallery.enroll(manifest, embedder, batch_size=batch_size, progress=bar.update,
                                     twin_pairs=twin_pairs)
    summary.failed = _dropped_files(manifest) + summary.failed

    if as_json:
        echo_json_line(summary.to_dict())
    else:
        _print_summary(summary, gallery_dir)
    if summary.failed:
        click.echo(f"{len(summary.failed)} files failed (listed above); the other images were enrolled. "
                   "Fix or remove those files and run the same command again.", err=True)
        sys.exit(1)


def _read_twin_pairs(twins: str | None) -> list[tuple[str, str]] | None:
    """Read every twin pair of the file, so links to identities enrolled earlier are kept too."""
    if twins is None:
        return None
    from dcal.data.twins import load_twin_pairs

    try:
        return load_twin_pairs(twins)
    except (FileNotFoundError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--twins") from exc


def _open_or_create(gallery_dir: Path, checkpoint, device, batch_size, index_type, lock_timeout):
    """Return (gallery, embedder), creating the gallery with the checkpoint when it does not exist."""
    try:
        gallery = Gallery.open(gallery_dir, lock_timeout=lock_timeout)
    except FileNotFoundError:
        gallery = None
    checkpoint_path = resolve_checkpoint(checkpoint, gallery)
    embedder = load_embedder(checkpoint_path, device, batch_size)
    if gallery is None:
        try:
            gallery = Gallery.create(gallery_dir, embedder.fingerprint, embedder.embedding_size, checkpoint_path,
                                     index_type or "flat", lock_timeout=lock_timeout)
        except FileExistsError:
            # Another enrolment created it meanwhile.
            gallery = Gallery.open(gallery_dir, expected_fingerprint=embedder.fingerprint, lock_timeout=lock_timeout)
    if index_type is not None and index_type != gallery.index_type:
        gallery.set_index_type(index_type)
    return gallery, embedder


def _dropped_files(manifest) -> list[tuple[str, str]]:
    """Return (path, reason) for every file the data check left out of the manifest."""
    return list(manifest.skipped_files)


def _print_summary(summary: EnrollSummary, gallery_dir: Path) -> None:
    click.echo(f"enrolled:          {summary.enrolled}")
    click.echo(f"skipped (already): {summary.skipped_existing}")
    click.echo(f"failed:            {len(summary.failed)}")
    for path, reason in summary.failed:
        click.echo(f"  {path}: {reason}")
    click.echo(f"gallery {gallery_dir}: {summary.identities} identities, {summary.images} images")


if __name__ == "__main__":
    main()
