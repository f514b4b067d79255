"""Readers for the protocol files of Labeled Faces in the Wild (LFW).

Formats, as described in LFW's README:

- ``pairs.txt`` (View 2): first line ``folds pairs_per_class`` (``10 300``),
  then per fold that many matched pairs ``name i j`` followed by that many
  mismatched pairs ``name1 i name2 j``.
- ``pairsDevTrain.txt`` / ``pairsDevTest.txt`` (View 1): first line is the
  number of pairs per class, then the matched pairs, then the mismatched.
- ``peopleDevTrain.txt`` / ``peopleDevTest.txt``: first line is the number
  of people, then ``name count``. ``people.txt`` (View 2) has 10 such blocks,
  each starting with its own count line.

Fields are tab-separated; any whitespace is accepted here. Image ``i`` of
``name`` is ``<root>/<name>/<name>_<i:04d>.jpg``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

PAIR_COLUMNS = ["path_a", "path_b", "identity_a", "identity_b", "label", "kind"]


def lfw_image_path(root: str | os.PathLike, name: str, i: int) -> Path:
    """Return the path of image number i (1-based) of an LFW identity."""
    return Path(root) / name / f"{name}_{int(i):04d}.jpg"


def read_lfw_people(path: str | os.PathLike) -> dict[str, int]:
    """Read an LFW people file into name -> image count.

    Accepts the single-block View 1 files and the 10-block ``people.txt``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is malformed, or a block has a different number
            of people than its count line. The message names the file and
            the line number.
    """
    lines = _read_lines(path)
    people: dict[str, int] = {}
    expected, seen, header_line = None, 0, 0
    for index, (number, fields) in enumerate(lines):
        if len(fields) == 1:
            # people.txt starts with the number of folds, then each fold's count.
            folds_line = index == 1 and seen == 0
            if not folds_line:
                _check_block(path, header_line, expected, seen)
            expected, seen, header_line = _parse_int(path, number, fields[0]), 0, number
            continue
        if len(fields) != 2 or expected is None:
            raise ValueError(f"invalid line {number} in LFW people file {path}: expected 'name count', found {fields}")
        people[fields[0]] = _parse_int(path, number, fields[1])
        seen += 1
    _check_block(path, header_line, expected, seen)
    return people


def read_lfw_pairs(path: str | os.PathLike, images_root: str | os.PathLike) -> list[pd.DataFrame]:
    """Read an LFW pairs file into one data frame per fold.

    Args:
        path: ``pairs.txt`` (10 folds) or ``pairsDevTrain.txt`` /
            ``pairsDevTest.txt`` (1 fold).
        images_root: the folder holding one sub-folder per identity, used to
            build absolute image paths. Files are not checked for existence.

    Returns:
        Data frames with the columns of the pairs CSV (``path_a``,
        ``path_b``, ``identity_a``, ``identity_b``, ``label``, ``kind``):
        matched pairs first (label 1, kind ``positive``), then mismatched
        pairs (label 0, kind ``negative``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the header, a line or the number of lines is invalid.
    """
    lines = _read_lines(path)
    if not lines:
        raise ValueError(f"LFW pairs file {path} is empty")
    header_number, header = lines[0]
    if len(header) == 1:
        folds, per_class = 1, _parse_int(path, header_number, header[0])
    elif len(header) == 2:
        folds, per_class = (_parse_int(path, header_number, v) for v in header)
    else:
        raise ValueError(f"invalid header in LFW pairs file {path}: expected 'pairs_per_class' or 'folds pairs_per_class'")
    body = lines[1:]
    if len(body) != folds * per_class * 2:
        raise ValueError(
            f"LFW pairs file {path} has {len(body)} pair lines, but its header "
            f"({folds} folds x {per_class} pairs x 2 classes) promises {folds * per_class * 2}"
        )
    root = os.path.abspath(images_root)
    frames = []
    for fold in range(folds):
        chunk = body[fold * 2 * per_class : (fold + 1) * 2 * per_class]
        rows = [_parse_pair(path, number, fields, root, same=k < per_class) for k, (number, fields) in enumerate(chunk)]
        frames.append(pd.DataFrame(rows, columns=PAIR_COLUMNS))
    return frames


def _parse_pair(path, number: int, fields: list[str], root: str, same: bool) -> tuple:
    if same:
        if len(fields) != 3:
            raise ValueError(f"invalid matched pair on line {number} of {path}: expected 'name i j', found {fields}")
        name_a, i, name_b, j = fields[0], fields[1], fields[0], fields[2]
    else:
        if len(fields) != 4:
            raise ValueError(
                f"invalid mismatched pair on line {number} of {path}: expected 'name1 i name2 j', found {fields}"
            )
        name_a, i, name_b, j = fields
    path_a = str(lfw_image_path(root, name_a, _parse_int(path, number, i)))
    path_b = str(lfw_image_path(root, name_b, _parse_int(path, number, j)))
    return (path_a, path_b, name_a, name_b, int(same), "positive" if same else "negative")


def _read_lines(path) -> list[tuple[int, list[str]]]:
    """Return (1-based line number, fields) for every non-blank line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LFW list file not found: {os.fspath(path)!r}")
    with open(path, encoding="utf-8") as f:
        return [(n, line.split()) for n, line in enumerate(f, start=1) if line.strip()]


def _parse_int(path, number: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"invalid number {value!r} on line {number} of {path}") from None


def _check_block(path, header_line: int, expected: int | None, seen: int) -> None:
    if expected is not None and seen != expected:
        raise ValueError(
            f"invalid LFW people file {path}: the count on line {header_line} is {expected} people, "
            f"but {seen} lines follow"
        )
