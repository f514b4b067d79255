"""Helpers shared by the dcal commands: logging, JSON output and data options."""
from __future__ import annotations

import json
import logging
import sys

import click

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to the current ``sys.stderr``.

    Looking the stream up at each record keeps logging working when
    ``sys.stderr`` is replaced after setup, as click's CliRunner does.
    """

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose: bool = False) -> None:
    """Send log records to stderr: INFO and above, or DEBUG with verbose.

    Calling it again replaces the handler it installed before, so commands
    and tests can call it freely.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def echo_json(obj) -> None:
    """Print obj to stdout as indented JSON; values JSON lacks (paths, numpy numbers) become strings."""
    click.echo(json.dumps(obj, indent=2, default=_json_default))


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class PathMapType(click.ParamType):
    """A click type for ``OLD=NEW`` path prefix rewrites, converted to a tuple."""

    name = "OLD=NEW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from dcal.data.paths import parse_path_map

        try:
            return parse_path_map([value])[0]
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


PATH_MAP = PathMapType()


_DATA_OPTIONS = [
    click.option(
        "--twins",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Twin pairs JSON file, a list of [id_a, id_b] identity pairs. Default: no twin pairs.",
    ),
    click.option(
        "--path-map",
        "path_map",
        type=PATH_MAP,
        multiple=True,
        help="Rewrite the image path prefix OLD to NEW for paths in a dataset JSON that do not exist "
        "as given or relative to the JSON's folder. Repeatable; tried in order. Default: none.",
    ),
    click.option(
        "--people",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Keep only the identities listed in this LFW people file (lines 'name count', "
        "for example peopleDevTrain.txt). Default: all identities.",
    ),
]


def data_options(func):
    """Add ``--twins``, ``--path-map`` and ``--people`` to a click command.

    The command receives ``twins`` (str or None), ``path_map`` (tuple of
    (old, new) tuples) and ``people`` (str or None).
    """
    for option in reversed(_DATA_OPTIONS):
        func = option(func)
    return func


def load_manifest_or_exit(data: str, twins=None, path_map=(), people=None, verify: str = "header"):
    """Load a manifest for a command, turning input errors into click errors.

    Args:
        data: identity folder tree or dataset JSON file.
        twins: twin pairs JSON file, or None.
        path_map: (old, new) prefix rewrites.
        people: LFW people file restricting the identities, or None.
        verify: image check level, ``none``, ``header`` or ``full``.

    Returns:
        The :class:`dcal.data.manifest.FaceManifest`; its report may still
        hold errors, which the command decides how to handle.

    Raises:
        click.ClickException: a file is missing or malformed. Click prints
            the message without a traceback and exits with status 1.
    """
    from dcal.data.lfw import read_lfw_people
    from dcal.data.manifest import load_manifest

    try:
        identities = read_lfw_people(people) if people else None
        return load_manifest(data, twins=twins, path_map=path_map, verify_images=verify, identities=identities)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
