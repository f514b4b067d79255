"""Face data sets as identity -> image lists, validated before anything runs.

Two inputs give the same :class:`FaceManifest`:

- a folder tree with one sub-folder per identity (the LFW layout), and
- a ``dataset_infor.json`` file mapping identity ids to image paths. Paths
  written on another machine are resolved as given, then relative to the
  JSON file's folder, then through ``OLD=NEW`` prefix rewrites.

A ``twin_pairs_infor.json`` file (a list of ``[id_a, id_b]``) adds twin
pairs. :func:`load_manifest` keeps only files that exist (and, by default,
whose header Pillow can read) and records every problem with a count and
examples in a :class:`DataReport`.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from dcal.data.images import VERIFY_LEVELS, ImageLoadError, check_image
from dcal.data.lfw import read_lfw_people
from dcal.data.paths import PathResolver, parse_path_map, suggest_path_map
from dcal.data.report import DataReport, Problem
from dcal.data.twins import load_twin_pairs, twin_groups

logger = logging.getLogger(__name__)

__all__ = [
    "DataReport",
    "FaceManifest",
    "Problem",
    "filter_people",
    "load_manifest",
    "load_twin_pairs",
    "parse_path_map",
]


@dataclass
class FaceManifest:
    """An identity-labelled set of face images.

    Attributes:
        images: identity -> absolute paths of existing image files, with
            identities in sorted order and each identity's paths sorted.
        twin_pairs: twin pairs whose two identities both have images.
        report: counts and problems found while loading; built from
            ``images`` (counts only) when not given.
        source: the folder or JSON file the manifest came from.
        skipped_files: (path, reason) of every listed file left out because
            it was missing or failed the image check. The report keeps only
            a few examples of each.
    """

    images: dict[str, list[str]]
    twin_pairs: list[tuple[str, str]] = field(default_factory=list)
    report: DataReport | None = None
    source: str = ""
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self):
        self.images = {identity: sorted(self.images[identity]) for identity in sorted(self.images)}
        self.twin_pairs = [(str(a), str(b)) for a, b in self.twin_pairs]
        if self.report is None:
            # A manifest built in code gets its counts, but no validation problems.
            self.report = DataReport(source=self.source, verify_images="none")
            self.report.count_images(self.images)
            self.report.listed_files = self.report.images
            self.report.twin_pairs = self.report.twin_pairs_usable = len(self.twin_pairs)

    def identities(self) -> list[str]:
        """Return the identity names in sorted order; a name's position is its label."""
        return list(self.images)

    def num_images(self) -> int:
        return sum(len(paths) for paths in self.images.values())

    def samples(self) -> list[tuple[str, int]]:
        """Return (path, label) for every image, label indexing :meth:`identities`."""
        return [(path, label) for label, paths in enumerate(self.images.values()) for path in paths]

    def twin_groups(self) -> list[list[str]]:
        """Return groups of identities connected by twin pairs (each of size >= 2)."""
        return twin_groups(self.twin_pairs)

    def twin_label_groups(self) -> list[list[int]]:
        """Return :meth:`twin_groups` as label indices, the form the batch sampler takes."""
        index = {identity: label for label, identity in enumerate(self.images)}
        return [[index[identity] for identity in group] for group in self.twin_groups()]

    def subset(self, identities: Iterable[str], missing_ok: bool = False) -> FaceManifest:
        """Return a manifest restricted to some identities, with a recounted report.

        Labels are renumbered: they index the subset's own :meth:`identities`.

        Args:
            identities: names to keep.
            missing_ok: skip names that are not in this manifest instead of
                raising.

        Raises:
            ValueError: a name is not in this manifest and missing_ok is False.
        """
        selected = set(identities)
        unknown = sorted(selected - self.images.keys())
        if unknown and not missing_ok:
            raise ValueError(
                f"{len(unknown)} identities are not in {self.source!r}, for example {unknown[:5]}; "
                "check that the identity list (for example a split) belongs to this data set"
            )
        images = {name: paths for name, paths in self.images.items() if name in selected}
        pairs = [(a, b) for a, b in self.twin_pairs if a in images and b in images]
        report = DataReport(source=self.source, verify_images=self.report.verify_images)
        report.listed_files = sum(len(paths) for paths in images.values())
        report.twin_pairs = len(pairs)
        _finish_report(report, images, pairs)
        return FaceManifest(images=images, twin_pairs=pairs, report=report, source=self.source)

    def require_usable(self) -> FaceManifest:
        """Return self, or raise ValueError listing the report's errors."""
        self.report.raise_if_unusable()
        return self


def load_manifest(
    data: str | os.PathLike,
    twins: str | os.PathLike | None = None,
    path_map: Sequence[tuple[str, str]] | Sequence[str] = (),
    verify_images: str = "header",
    identities: Collection[str] | None = None,
) -> FaceManifest:
    """Load and validate a face data set.

    Problems that leave nothing to train on are errors in ``report``: no
    identity with images, fewer than 2 identities with 2 or more images, or
    every listed file missing. Everything else is a warning, and the
    affected files, identities or pairs are left out. This function does not
    raise on errors, so call :meth:`FaceManifest.require_usable` for that.

    Args:
        data: a folder with one sub-folder per identity, or a
            ``dataset_infor.json`` file ``{identity: [image_path, ...]}``.
        twins: optional ``twin_pairs_infor.json`` file ``[[id_a, id_b], ...]``.
        path_map: prefix rewrites for paths in a JSON manifest, as
            (old_prefix, new_prefix) tuples or ``OLD=NEW`` strings.
        verify_images: ``none`` (file exists and is not empty), ``header``
            (Pillow opens it and ``verify()`` passes) or ``full`` (decode
            every image). On all 13,233 LFW JPEGs (2 cores, files in the
            page cache, Pillow 13) ``header`` took 1.2-1.4 s and ``full``
            8.2 s.
        identities: if given, keep only these identities (for example the
            people of LFW's ``peopleDevTrain.txt``) before verification.

    Returns:
        The manifest, whose ``report`` lists counts and problems.

    Raises:
        FileNotFoundError: ``data`` or ``twins`` does not exist.
        ValueError: a JSON file is malformed, a path map has no ``=``, or
            ``verify_images`` is not a known level.
    """
    if verify_images not in VERIFY_LEVELS:
        raise ValueError(f"invalid verify_images {verify_images!r}: use one of {', '.join(VERIFY_LEVELS)}")
    data = os.fspath(data)
    if not os.path.exists(data):
        raise FileNotFoundError(
            f"data not found: {data!r}; pass a folder with one sub-folder per identity or a dataset_infor.json file"
        )
    path_map = [parse_path_map([m])[0] if isinstance(m, str) else m for m in path_map]
    twin_list = load_twin_pairs(twins) if twins is not None else []

    report = DataReport(source=os.path.abspath(data), verify_images=verify_images)
    selection = None if identities is None else set(identities)
    skipped: list[tuple[str, str]] = []
    if os.path.isdir(data):
        images = _read_folder_tree(data, report, selection)
    else:
        images = _read_dataset_json(data, path_map, report, skipped)
    if selection is not None:
        images = _select_identities(images, selection, report)
    images = _verify(images, verify_images, report, skipped)

    pairs = _validate_twin_pairs(twin_list, images, selection, report)
    report.twin_pairs = len(twin_list)
    _finish_report(report, images, pairs)
    return FaceManifest(images=images, twin_pairs=pairs, report=report, source=report.source, skipped_files=skipped)


def filter_people(manifest: FaceManifest, people_file: str | os.PathLike) -> FaceManifest:
    """Restrict a manifest to the people of an LFW people file.

    Args:
        manifest: the full manifest.
        people_file: ``peopleDevTrain.txt``, ``peopleDevTest.txt`` or
            ``people.txt`` (lines ``name count``).

    Returns:
        The subset manifest. People in the file but not in the manifest are
        logged and left out.

    Raises:
        FileNotFoundError, ValueError: the people file is missing or malformed.
    """
    people = read_lfw_people(people_file)
    absent = sorted(set(people) - set(manifest.images))
    if absent:
        logger.warning(
            "%d of %d people in %s are not in %s, for example %s",
            len(absent), len(people), people_file, manifest.source, absent[:5],
        )
    return manifest.subset(people, missing_ok=True)


def _read_folder_tree(root: str, report: DataReport, selection: set[str] | None) -> dict[str, list[str]]:
    """List the files of each identity sub-folder; hidden entries are skipped.

    With a selection, only the folders of selected identities are read.
    """
    images: dict[str, list[str]] = {}
    loose_files, nested = [], []
    root = os.path.abspath(root)
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            loose_files.append(entry.path)
            continue
        if selection is not None and entry.name not in selection:
            continue
        paths = []
        for item in os.scandir(entry.path):
            if item.name.startswith("."):
                continue
            if item.is_dir():
                nested.append(item.path)
            else:
                paths.append(item.path)
        images[entry.name] = sorted(paths)
    report.listed_files = sum(len(p) for p in images.values())
    if loose_files:
        report.add("files_outside_identity_folders", "warning",
                   "files directly in the data folder have no identity and are ignored; "
                   "put each identity's images in its own sub-folder", loose_files)
    if nested:
        report.add("nested_folders_ignored", "warning",
                   "folders inside identity folders are ignored; only files directly in an identity folder count",
                   nested)
    return images


def _read_dataset_json(path: str, path_map, report: DataReport, skipped: list) -> dict[str, list[str]]:
    """Read ``{identity: [path, ...]}`` and resolve each path to a local file."""
    entries = _parse_dataset_json(path, report)
    resolver = PathResolver(os.path.dirname(os.path.abspath(path)), path_map)
    images: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    missing, duplicates = [], []
    for identity, listed_paths in entries:
        identity_paths = images.setdefault(identity, [])
        for listed in listed_paths:
            report.listed_files += 1
            resolved = resolver.resolve(listed)
            if resolved is None:
                missing.append(listed)
                skipped.append((listed, "file not found"))
            elif resolved in owner:
                duplicates.append(f"{resolved} (identities {owner[resolved]!r} and {identity!r})")
            else:
                owner[resolved] = identity
                identity_paths.append(resolved)
    _report_missing(missing, report)
    if duplicates:
        report.duplicate_paths = len(duplicates)
        report.add("duplicate_paths", "warning",
                   "the same file is listed more than once; only its first listing is kept", duplicates)
    return images


def _parse_dataset_json(path: str, report: DataReport) -> list[tuple[str, list[str]]]:
    """Return (identity, listed paths) entries, merging duplicate identity keys."""

    class _Pairs(list):
        pass

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON in dataset file {path!r}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"dataset file {path!r} is not UTF-8 text: {exc}") from exc
    if not isinstance(data, _Pairs):
        raise ValueError(
            f"invalid dataset file {path!r}: expected a JSON object {{identity: [image_path, ...]}}, "
            f"found {type(data).__name__}"
        )
    merged: dict[str, list[str]] = {}
    repeated = []
    for identity, paths in data:
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError(
                f"invalid entry for identity {identity!r} in {path!r}: expected a list of image path strings"
            )
        if identity in merged:
            repeated.append(identity)
        merged.setdefault(identity, []).extend(paths)
    if repeated:
        report.add("duplicate_identity_keys", "warning",
                   "an identity appears more than once in the JSON object; its image lists were merged", repeated)
    return list(merged.items())


def _report_missing(missing: list[str], report: DataReport) -> None:
    report.missing_files = len(missing)
    if not missing:
        return
    message = "listed image files were not found and are left out"
    root = suggest_path_map(missing)
    if root is not None:
        message += f"; if the files were moved, rewrite the prefix with --path-map {root}=/local/folder"
    report.add("missing_files", "warning", message, missing)


def _select_identities(images, identities, report: DataReport) -> dict[str, list[str]]:
    selected = set(identities)
    absent = sorted(selected - images.keys())
    if absent:
        report.add("people_not_found", "warning",
                   "identities of the selection (--people) are not in the data", absent)
    return {name: paths for name, paths in images.items() if name in selected}


def _verify(images: dict[str, list[str]], level: str, report: DataReport, skipped: list) -> dict[str, list[str]]:
    """Drop files that fail :func:`check_image` at the given level."""
    start = time.perf_counter()
    bad = []
    checked = {}
    for identity, paths in images.items():
        good = []
        for path in paths:
            try:
                check_image(path, level)
            except ImageLoadError as exc:
                bad.append(f"{path}: {exc.reason}")
                skipped.append((path, exc.reason))
                continue
            good.append(path)
        checked[identity] = good
    total = sum(len(p) for p in images.values())
    logger.info("checked %d image files (verify=%s) in %.1f s", total, level, time.perf_counter() - start)
    report.unreadable_files = len(bad)
    if bad:
        report.add("unreadable_files", "warning",
                   "files that are empty or cannot be read as images are left out", bad)
    return checked


def _validate_twin_pairs(pairs, images, selection, report: DataReport) -> list[tuple[str, str]]:
    """Return the usable, de-duplicated twin pairs and report the others."""
    selected = None if selection is None else set(selection)
    usable, seen = [], set()
    problems = {"self": [], "duplicate": [], "unknown": [], "outside": []}
    for a, b in pairs:
        key = frozenset((a, b))
        if a == b:
            problems["self"].append(a)
        elif key in seen:
            problems["duplicate"].append(f"{a} / {b}")
        elif selected is not None and (a not in selected or b not in selected):
            problems["outside"].append(f"{a} / {b}")
        elif not images.get(a) or not images.get(b):
            absent = [x for x in (a, b) if not images.get(x)]
            problems["unknown"].append(f"{a} / {b} (no images for {', '.join(absent)})")
        else:
            usable.append((a, b))
        seen.add(key)
    _report_twin_problems(problems, report)
    _report_shared_twins(usable, report)
    return usable


def _report_twin_problems(problems: dict[str, list[str]], report: DataReport) -> None:
    messages = {
        "self": ("twin_pair_self", "twin pairs that name the same identity twice are ignored"),
        "duplicate": ("twin_pair_duplicate", "twin pairs listed more than once are counted once"),
        "unknown": ("twin_pair_unknown_identity",
                    "twin pairs naming an identity that is not in the data or has no usable image are ignored"),
        "outside": ("twin_pair_outside_selection",
                    "twin pairs with an identity outside the selection (--people) are ignored"),
    }
    for key, (kind, message) in messages.items():
        if problems[key]:
            report.add(kind, "warning", message, problems[key])


def _report_shared_twins(pairs: list[tuple[str, str]], report: DataReport) -> None:
    counts: dict[str, int] = {}
    for a, b in pairs:
        counts[a] = counts.get(a, 0) + 1
        counts[b] = counts.get(b, 0) + 1
    shared = sorted(name for name, n in counts.items() if n > 1)
    if shared:
        report.add("twin_identity_in_multiple_pairs", "warning",
                   "identities listed in more than one twin pair; splits keep each connected group together",
                   shared)


def _finish_report(report: DataReport, images: dict[str, list[str]], pairs) -> None:
    """Drop identities without images, set the counts and add the structural errors."""
    empty = [name for name, paths in images.items() if not paths]
    for name in empty:
        del images[name]
    report.count_images(images)
    report.twin_pairs_usable = len(pairs)
    if empty:
        report.add("empty_identities", "warning", "identities without any usable image are left out", empty)
    if report.identities_with_one_image:
        singles = [name for name, paths in images.items() if len(paths) == 1]
        report.add("identities_with_one_image", "warning",
                   "identities with a single image give no positive pair; "
                   "they stay in training as classes and negatives", singles)
    _add_structural_errors(report)


def _add_structural_errors(report: DataReport) -> None:
    if report.listed_files == 0:
        report.add("no_files_listed", "error",
                   "the data lists no image file; check the folder layout (one sub-folder per identity) "
                   "or the JSON content", [report.source], count=1)
    elif report.missing_files == report.listed_files:
        report.add("all_files_missing", "error",
                   "none of the listed image files exists; rewrite the path prefix with --path-map OLD=NEW",
                   [report.source], count=report.missing_files)
    if report.identities == 0:
        report.add("no_identities", "error", "no identity has a usable image", [report.source], count=0)
    elif report.identities_with_two_or_more < 2:
        report.add("too_few_identities", "error",
                   f"only {report.identities_with_two_or_more} identities have 2 or more images; "
                   "training and verification need at least 2", [report.source],
                   count=report.identities_with_two_or_more)
