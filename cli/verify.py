"""``dcal-verify``: decide whether two face images show the same person (1:1).

The score is the verification head's same-person probability. Both images
are embedded in one batch in a fixed order (sorted by path), so swapping A
and B gives exactly the same score and cosine.
"""
from __future__ import annotations

import click
import numpy as np

from cli.common import echo_json, setup_logging
from cli.gallery_common import device_option, load_embedder, verbose_option


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, help="Print the same-person probability of face images A and B (from the verification head), "
               "the decision at the threshold and their cosine similarity. Exit status: 0 success, 1 an image "
               "or the checkpoint cannot be read, 2 usage error.")
@click.argument("image_a", metavar="A", type=click.Path(dir_okay=False))
@click.argument("image_b", metavar="B", type=click.Path(dir_okay=False))
@click.option("--checkpoint", type=click.Path(), required=True,
              help="Checkpoint folder or dcal-train run folder (its best/ checkpoint). Required.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Same-person probability at or above which the images are called the same person. "
                   "Default: the checkpoint's calibrated threshold, 0.5 when it stores none.")
@device_option
@click.option("--json", "as_json", is_flag=True,
              help="Print {same_person, score, threshold, cosine} as JSON instead of text.")
@verbose_option
def main(image_a, image_b, checkpoint, threshold, device, as_json, verbose):
    setup_logging(verbose)
    from dcal.inference import cosine_scores
    from dcal.model import resolve_checkpoint_dir

    try:
        resolve_checkpoint_dir(checkpoint)
    except FileNotFoundError as exc:
        raise click.BadParameter(str(exc), param_hint="--checkpoint") from exc
    embedder = load_embedder(checkpoint, device, batch_size=2)
    ordered = sorted({image_a, image_b})
    embeddings, failures = embedder.embed_all(ordered)
    if failures:
        raise click.ClickException("; ".join(reason for _, reason in failures))
    first, second = embeddings[:1], embeddings[-1:]
    score = float(embedder.head_scores(first, second)[0])
    cosine = float(np.clip(cosine_scores(first, second)[0], -1.0, 1.0))
    threshold = embedder.head_threshold() if threshold is None else threshold
    result = {"same_person": score >= threshold, "score": score, "threshold": threshold, "cosine": cosine}
    if as_json:
        echo_json(result)
    else:
        verdict = "yes" if result["same_person"] else "no"
        relation = ">=" if result["same_person"] else "<"
        click.echo(f"same person: {verdict} (score {score:.4f} {relation} threshold {threshold:.4f})")
        click.echo(f"cosine similarity: {cosine:.4f}")


if __name__ == "__main__":
    main()
