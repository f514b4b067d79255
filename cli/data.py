"""``dcal-data``: check a face data set, split it and make evaluation pairs.

Results go to stdout (text, or one JSON object with ``--json``); logs and
errors go to stderr.
"""
from __future__ import annotations

import logging
import sys

import click

from cli.common import data_options, echo_json, load_manifest_or_exit, setup_logging

logger = logging.getLogger(__name__)

DATA_ARGUMENT_HELP = "DATA is a folder with one sub-folder per identity, or a dataset_infor.json file."

verify_option = click.option(
    "--verify",
    type=click.Choice(["header", "full", "none"]),
    default="header",
    show_default=True,
    help="How each image file is checked: 'header' opens it with Pillow (fast), 'full' decodes every "
    "pixel (finds truncated files), 'none' only checks that the file exists and is not empty.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text. Default: text.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, help="Check face data sets, split them by identity and make evaluation pairs.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages to stderr.")
def main(verbose: bool) -> None:
    setup_logging(verbose)


@main.command(help="Validate a data set and print its counts and problems. " + DATA_ARGUMENT_HELP
              + " Exits with status 1 when the data is not usable for training.")
@click.argument("data", type=click.Path(exists=True))
@data_options
@verify_option
@json_option
def check(data, twins, path_map, people, verify, as_json):
    manifest = load_manifest_or_exit(data, twins, path_map, people, verify)
    report = manifest.report
    if as_json:
        echo_json(report.to_dict())
    else:
        _print_report(report)
    if not report.usable:
        _exit_unusable(report)


@main.command(help="Split the identities of a data set into train, val and test, keeping each group of "
              "twins in one split, and save the split as JSON. " + DATA_ARGUMENT_HELP)
@click.argument("data", type=click.Path(exists=True))
@data_options
@click.option("--out", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Splits JSON file to write (identity names per split). Required.")
@click.option("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), show_default=True,
              help="Fractions of identities for train, val and test; each >= 0, summing to 1.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the split.")
@click.option("--test-data", type=click.Path(exists=True), default=None,
              help="The data set's own test set (folder or JSON). DATA is then its train set, test is used as "
              "given and val is carved out of train with --val-ratio. Default: split DATA with --ratios.")
@click.option("--test-twins", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Twin pairs JSON file of --test-data. Default: none.")
@click.option("--val-ratio", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True,
              help="With --test-data: fraction of the train identities moved to val.")
@verify_option
@json_option
def split(data, twins, path_map, people, out, ratios, seed, test_data, test_twins, val_ratio, verify, as_json):
    from dcal.data.splits import given_splits, make_splits, save_splits, validate_ratios

    if test_data is None:
        try:
            validate_ratios(ratios)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ratios") from exc
    manifest = load_manifest_or_exit(data, twins, path_map, people, verify)
    if not manifest.report.usable:
        _exit_unusable(manifest.report)
    if test_data is None:
        splits = make_splits(manifest, ratios=ratios, seed=seed)
    else:
        test_manifest = load_manifest_or_exit(test_data, test_twins, path_map, people, verify)
        if not test_manifest.report.usable:
            _exit_unusable(test_manifest.report)
        splits = given_splits(manifest, test_manifest, val_ratio=val_ratio, seed=seed)
    save_splits(splits, out)
    summary = {"out": out, "seed": seed, "ratios": splits["ratios"], "identities": splits["counts"],
               "twin_groups": _twin_groups_per_split(manifest, splits)}
    if as_json:
        echo_json(summary)
        return
    click.echo(f"wrote {out}")
    for name, count in splits["counts"].items():
        click.echo(f"{name}: {count} identities, {summary['twin_groups'][name]} twin groups")


@main.command(help="Make evaluation pairs (positives, twin negatives, regular negatives) for one split "
              "and write them as CSV. " + DATA_ARGUMENT_HELP)
@click.argument("data", type=click.Path(exists=True))
@data_options
@click.option("--splits", "splits_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Splits JSON file written by 'dcal-data split'. Required.")
@click.option("--split", "split_name", type=click.Choice(["train", "val", "test"]), default="val",
              show_default=True, help="Which split's identities to pair.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Pairs CSV file to write (path_a,path_b,identity_a,identity_b,label,kind). Required.")
@click.option("--max-positives", type=click.IntRange(min=0), default=3000, show_default=True,
              help="Maximum number of same-identity pairs, sampled uniformly when there are more; 0 keeps all.")
@click.option("--max-twin-negatives", type=click.IntRange(min=0), default=3000, show_default=True,
              help="Maximum number of twin negative pairs, sampled uniformly when there are more; 0 keeps all.")
@click.option("--negative-ratio", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Regular negative pairs per positive pair.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the pair sampling.")
@verify_option
@json_option
def pairs(data, twins, path_map, people, splits_path, split_name, out, max_positives, max_twin_negatives,
          negative_ratio, seed, verify, as_json):
    from dcal.data.pairs import make_eval_pairs, write_pairs_csv
    from dcal.data.splits import load_splits

    try:
        splits = load_splits(splits_path)
    except (FileNotFoundError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--splits") from exc
    manifest = load_manifest_or_exit(data, twins, path_map, people, verify)
    members = splits[split_name]
    subset = manifest.subset(members, missing_ok=True)
    absent = len(set(members) - set(manifest.images))
    if absent:
        logger.warning("%d of %d identities of split %r are not in %s", absent, len(members), split_name, data)
    if subset.report.identities_with_two_or_more == 0 and not subset.twin_pairs:
        raise click.ClickException(
            f"split {split_name!r} of {splits_path} has no identity with 2 or more images in {data}; "
            "check that the splits file was made from this data set"
        )
    frame = make_eval_pairs(subset.images, subset.twin_pairs, max_positives=max_positives or None,
                            max_twin_negatives=max_twin_negatives or None, negative_ratio=negative_ratio,
                            seed=seed)
    write_pairs_csv(frame, out)
    counts = {kind: int((frame["kind"] == kind).sum()) for kind in ("positive", "twin_negative", "negative")}
    if as_json:
        echo_json({"out": out, "split": split_name, "identities": subset.report.identities, "pairs": counts})
        return
    click.echo(f"wrote {out}: {len(frame)} pairs from {subset.report.identities} identities of split {split_name!r}")
    for kind, count in counts.items():
        click.echo(f"{kind}: {count}")


@main.command(help="Split each identity's images into a gallery tree and a probe tree of symbolic links, "
              "for enrolment and 1:N queries. " + DATA_ARGUMENT_HELP)
@click.argument("data", type=click.Path(exists=True))
@data_options
@click.option("--gallery-dir", type=click.Path(file_okay=False), required=True,
              help="Folder to create with one sub-folder of links per identity (the images to enroll).")
@click.option("--probes-dir", type=click.Path(file_okay=False), required=True,
              help="Folder to create with the held-out images, one sub-folder per identity.")
@click.option("--probes-per-identity", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images held out as probes from each identity.")
@click.option("--min-images", type=click.IntRange(min=2), default=2, show_default=True,
              help="Identities with fewer images are left out of both trees.")
@click.option("--max-identities", type=click.IntRange(min=1), default=None,
              help="Keep at most this many identities (the ones with most images first). Default: all.")
@click.option("--keep-small", is_flag=True,
              help="Put identities with too few images for a probe into the gallery whole (they can still be "
                   "matched, and reported as someone's twin). Default: leave them out.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed choosing the held-out images.")
@json_option
def holdout(data, twins, path_map, people, gallery_dir, probes_dir, probes_per_identity, min_images,
            max_identities, keep_small, seed, as_json):
    import os
    import random
    from pathlib import Path

    for folder in (gallery_dir, probes_dir):
        if os.path.isdir(folder) and os.listdir(folder):
            raise click.BadParameter(f"{folder} is not empty; holdout writes fresh trees, so pass new folders "
                                     "(an earlier split would mix its probes into the gallery)")
    manifest = load_manifest_or_exit(data, twins, path_map, people, "none")
    eligible = [i for i in manifest.identities() if len(manifest.images[i]) >= max(min_images, probes_per_identity + 1)]
    eligible.sort(key=lambda i: (-len(manifest.images[i]), i))
    if max_identities:
        eligible = sorted(eligible[:max_identities])
    if not eligible:
        raise click.ClickException(f"no identity in {data} has {min_images} or more images; lower --min-images")
    rng = random.Random(seed)
    counts = {"identities": len(eligible), "gallery_images": 0, "probe_images": 0}
    small = sorted(set(manifest.identities()) - set(eligible)) if keep_small and not max_identities else []
    for identity in sorted(eligible + small):
        images = sorted(manifest.images[identity])
        probes = set(rng.sample(images, probes_per_identity)) if identity in eligible else set()
        for path in images:
            kind = "probe_images" if path in probes else "gallery_images"
            folder = Path(probes_dir if path in probes else gallery_dir) / identity
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / Path(path).name
            if not link.exists():
                os.symlink(os.path.abspath(path), link)
            counts[kind] += 1
    counts["gallery_only_identities"] = len(small)
    if as_json:
        echo_json({**counts, "gallery_dir": gallery_dir, "probes_dir": probes_dir})
        return
    click.echo(f"{counts['identities']} identities with probes and {len(small)} gallery-only identities: "
               f"{counts['gallery_images']} gallery images in {gallery_dir}, "
               f"{counts['probe_images']} probes in {probes_dir}")


def _print_report(report) -> None:
    per_identity = report.images_per_identity
    click.echo(f"source: {report.source}")
    click.echo(f"identities: {report.identities} ({report.identities_with_two_or_more} with 2 or more images)")
    click.echo(f"images: {report.images} of {report.listed_files} listed files")
    click.echo(f"images per identity: min {per_identity['min']}, median {per_identity['median']}, "
               f"max {per_identity['max']}")
    click.echo(f"twin pairs: {report.twin_pairs} listed, {report.twin_pairs_usable} usable")
    click.echo(f"missing files: {report.missing_files}")
    click.echo(f"unreadable files (verify={report.verify_images}): {report.unreadable_files}")
    click.echo(f"duplicate paths: {report.duplicate_paths}")
    click.echo(f"problems: {len(report.errors)} errors, {len(report.warnings)} warnings")
    for problem in report.problems:
        click.echo(f"  {problem.severity} {problem.kind} ({problem.count}): {problem.message}")
        if problem.examples:
            click.echo(f"    e.g. {'; '.join(problem.examples)}")
    click.echo(f"usable: {'yes' if report.usable else 'no'}")


def _exit_unusable(report) -> None:
    click.echo(f"error: data set {report.source} is not usable:", err=True)
    for problem in report.errors:
        click.echo(f"  {problem.kind}: {problem.message}", err=True)
    sys.exit(1)


def _twin_groups_per_split(manifest, splits) -> dict[str, int]:
    groups = manifest.twin_groups()
    counts = {}
    for name in ("train", "val", "test"):
        members = set(splits[name])
        counts[name] = sum(1 for group in groups if members.issuperset(group))
    return counts


if __name__ == "__main__":
    main()
