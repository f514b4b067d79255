"""``dcal-gallery``: inspect a gallery and remove identities from it."""
from __future__ import annotations

import datetime

import click

from cli.common import echo_json, setup_logging
from cli.gallery_common import gallery_errors, gallery_option, json_option, lock_timeout_option, verbose_option
from indexer import Gallery


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, help="Inspect a face gallery or remove identities from it.")
@verbose_option
def main(verbose: bool) -> None:
    setup_logging(verbose)


@main.command(help="Print the gallery's counts, model fingerprint, index type, generation and index file state.")
@gallery_option
@json_option
def info(gallery_dir, as_json):
    with gallery_errors():
        with Gallery.open(gallery_dir, readonly=True) as gallery:
            details = gallery.info()
    if as_json:
        echo_json(details)
        return
    created = datetime.datetime.fromtimestamp(details["created_at"]).isoformat(timespec="seconds")
    rows = [
        ("gallery", details["gallery"]),
        ("identities", details["identities"]),
        ("images", details["images"]),
        ("twin links", details["twin_links"]),
        ("embedding size", details["embedding_size"]),
        ("fingerprint", details["fingerprint"]),
        ("checkpoint", details["checkpoint"]),
        ("index type", details["index_type"]),
        ("generation", details["generation"]),
        ("index file", details["index_file"]),
        ("created", created),
    ]
    for name, value in rows:
        click.echo(f"{name + ':':<16}{value}")


@main.command(name="list", help="List the enrolled identities with their image counts and enrolled twins.")
@gallery_option
@json_option
def list_identities(gallery_dir, as_json):
    with gallery_errors():
        with Gallery.open(gallery_dir, readonly=True) as gallery:
            identities = gallery.list_identities()
    if as_json:
        echo_json(identities)
        return
    if not identities:
        click.echo(f"gallery {gallery_dir} has no enrolled identities")
        return
    width = max(len("identity"), *(len(entry["identity"]) for entry in identities))
    click.echo(f"{'identity':<{width}}  {'images':>6}  twins")
    for entry in identities:
        click.echo(f"{entry['identity']:<{width}}  {entry['images']:>6}  {', '.join(entry['twins']) or '-'}")


@main.command(help="Remove identities (IDENTITY...) with all their images, vectors and twin links, in one "
              "transaction. An unknown identity is an error and nothing is removed.")
@click.argument("identities", metavar="IDENTITY...", nargs=-1, required=True)
@gallery_option
@lock_timeout_option
@json_option
def remove(identities, gallery_dir, lock_timeout, as_json):
    with gallery_errors():
        with Gallery.open(gallery_dir, lock_timeout=lock_timeout) as gallery:
            removed = gallery.remove(identities)
            details = gallery.info()
    identities_left, images_left = details["identities"], details["images"]
    result = {"removed_identities": list(dict.fromkeys(identities)), "removed_images": removed,
              "identities": identities_left, "images": images_left}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"removed {len(result['removed_identities'])} identities ({removed} images); gallery "
                   f"{gallery_dir} now has {identities_left} identities, {images_left} images")


if __name__ == "__main__":
    main()
