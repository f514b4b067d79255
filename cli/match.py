"""``dcal-match``: identify probe images against a gallery (1:N, open set).

Each probe is embedded, FAISS returns the top-k gallery images, the
verification head re-scores them, and identities are ranked by their best
image. Results go to stdout, one table (or one JSON line) per probe, in the
order given. A probe that cannot be read gets an error entry, and the others
are still processed.
"""
from __future__ import annotations

import logging
import sys

import click

from cli.common import setup_logging
from cli.gallery_common import (batch_size_option, device_option, echo_json_line, gallery_errors, gallery_option,
                                json_option, load_embedder, resolve_checkpoint, verbose_option)
from indexer import UNKNOWN, Gallery, MatchResult

logger = logging.getLogger("dcal.match")

# Identities shown per probe in the text table; --json lists all of them.
TEXT_ROWS = 10


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, help="Identify face images (PROBE...) against a gallery. Prints the ranked identities, the "
               "decision (an identity or 'unknown') and, when the top identity has an enrolled twin, the twin's "
               "score and margin. Exit status: 0 success, 1 some probe could not be read or a runtime error, "
               "2 usage error.")
@click.argument("probes", nargs=-1, required=True, type=click.Path(dir_okay=False))
@gallery_option
@click.option("--checkpoint", type=click.Path(), default=None,
              help="Checkpoint folder or dcal-train run folder; it must be the one that built the gallery. "
                   "Default: the checkpoint recorded in the gallery.")
@click.option("--top-k", type=click.IntRange(min=1), default=50, show_default=True,
              help="Gallery images retrieved by FAISS per probe (and re-scored by the verification head).")
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Minimum top score for a decision other than 'unknown': a same-person probability in [0, 1], "
                   "or a cosine similarity with --no-rescore. Default: the checkpoint's calibrated threshold "
                   "(0.5 when the checkpoint stores none).")
@click.option("--twin-margin", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Flag the match as twin-ambiguous when the top identity's score exceeds its enrolled twin's "
                   "score by less than this (in score units).")
@click.option("--no-rescore", is_flag=True,
              help="Rank by cosine similarity alone, without the verification head. Default: re-score.")
@click.option("--ef-search", type=click.IntRange(min=1), default=None,
              help="HNSW galleries only: candidate list size per query, raised to --top-k when smaller; larger "
                   "is slower and finds more true neighbours. Default: 128.")
@click.option("--nprobe", type=click.IntRange(min=1), default=None,
              help="IVF galleries only: inverted lists visited per query. Default: nlist / 8, at least 16.")
@device_option
@batch_size_option
@json_option
@verbose_option
def main(probes, gallery_dir, checkpoint, top_k, threshold, twin_margin, no_rescore, ef_search, nprobe, device,
         batch_size, as_json, verbose):
    setup_logging(verbose)
    with gallery_errors(), Gallery.open(gallery_dir, ef_search=ef_search, nprobe=nprobe) as gallery:
        checkpoint_path = resolve_checkpoint(checkpoint, gallery)
        gallery.require_images()
        embedder = load_embedder(checkpoint_path, device, batch_size)
        xq, failures = embedder.embed_all(list(probes))
        errors = {int(position): reason for position, reason in failures}
        readable = [position for position in range(len(probes)) if position not in errors]
        results = gallery.match(xq[readable], embedder, top_k=top_k, rescore=not no_rescore,
                                threshold=threshold, twin_margin=twin_margin) if readable else []

    answers = dict(zip(readable, results))
    for position, probe in enumerate(probes):
        if position in errors:
            _print_error(probe, errors[position], as_json)
        elif as_json:
            echo_json_line(answers[position].to_dict(probe))
        else:
            _print_table(probe, answers[position])
    if errors:
        rest = "the others were answered" if len(errors) < len(probes) else "none was answered"
        click.echo(f"{len(errors)} of {len(probes)} probes could not be read; {rest}.", err=True)
        sys.exit(1)


def _print_error(probe: str, reason: str, as_json: bool) -> None:
    if as_json:
        echo_json_line({"probe": probe, "error": reason})
    else:
        click.echo(f"probe {probe}\n  error: {reason}\n", err=True)


def _print_table(probe: str, result: MatchResult) -> None:
    kind = "head probability" if result.rescored else "cosine"
    top = result.top
    click.echo(f"probe {probe}")
    if result.decision == UNKNOWN:
        best = f"best score {top.score:.4f}" if top else "no candidate"
        click.echo(f"  decision: unknown ({best} < threshold {result.threshold:.4f}, {kind})")
    else:
        click.echo(f"  decision: {result.decision} (score {top.score:.4f} >= threshold {result.threshold:.4f}, "
                   f"{kind})")
    if result.twin is not None:
        twin = result.twin
        flag = "  TWIN-AMBIGUOUS" if twin.ambiguous else ""
        click.echo(f"  twin: {twin.identity} score {twin.score:.4f}, margin {twin.margin:.4f}{flag}")
    width = max([len("identity")] + [len(c.identity) for c in result.candidates[:TEXT_ROWS]])
    click.echo(f"  {'rank':>4}  {'identity':<{width}}  {'score':>7}  {'cosine':>7}  best image")
    for rank, candidate in enumerate(result.candidates[:TEXT_ROWS], start=1):
        click.echo(f"  {rank:>4}  {candidate.identity:<{width}}  {candidate.score:>7.4f}  {candidate.cosine:>7.4f}  "
                   f"{candidate.image}")
    hidden = len(result.candidates) - TEXT_ROWS
    if hidden > 0:
        click.echo(f"  ... {hidden} more identities; --json lists all")
    click.echo("")


if __name__ == "__main__":
    main()
