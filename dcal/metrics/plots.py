"""PNG plots of verification results: ROC, DET and score histograms.

The DET plot puts FRR against FAR on normal-deviate axes, as introduced in
"The DET Curve in Assessment of Detection Task Performance" (Martin,
Doddington, Kamm, Ordowski and Przybocki, Eurospeech 1997), so that normally
distributed scores give straight lines.

Figures are drawn with matplotlib's object-oriented API on an Agg canvas,
never through pyplot, so plotting changes no global backend and leaks no
figures. Each file is written under a temporary name in the target folder
and then moved into place with ``os.replace``, so a reader never sees a
partial PNG.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from statistics import NormalDist

import numpy as np

from dcal.metrics.verification import equal_error_rate, roc_auc, roc_curve

logger = logging.getLogger(__name__)

KIND_COLORS = {"positive": "tab:green", "negative": "tab:blue", "twin_negative": "tab:red"}
DET_TICKS = (0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)
DET_HIGHEST = 0.99  # upper limit of both DET axes


def _new_figure(width: float = 6.0, height: float = 5.0):
    """Return a (figure, axes) pair drawn on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot(1, 1, 1)


def _save_png(figure, path) -> Path:
    """Write ``figure`` to ``path`` as a PNG through a temporary file and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        figure.savefig(temporary, format="png")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def _usable_curves(curves: dict) -> dict:
    """Keep the (scores, labels) entries that hold both genuine and impostor pairs."""
    usable = {}
    for name, (scores, labels) in curves.items():
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels)
        if scores.size == 0:
            logger.info("skipping curve %r: it has no pairs", name)
            continue
        n_positive = int(np.sum(labels == 1))
        if n_positive == 0 or n_positive == labels.size:
            logger.warning("skipping curve %r: it needs both genuine and impostor pairs, "
                           "got %d genuine of %d", name, n_positive, labels.size)
            continue
        usable[name] = (scores, labels)
    return usable


def _note_no_data(axes) -> None:
    axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)


def plot_roc(curves: dict, path, title: str) -> Path:
    """Plot ROC curves (TAR against FAR on a log axis) into a PNG.

    Args:
        curves: {legend name: (scores, labels)} with scores float64 of shape
            (n,) and labels int of shape (n,), 1 genuine and 0 impostor.
            Entries without pairs, or with only one class, are skipped.
        path: output PNG path. Missing parent folders are created.
        title: figure title.

    Returns:
        The output path as a ``Path``.

    Raises:
        ValueError: if an entry has invalid scores or labels.
    """
    figure, axes = _new_figure()
    lowest_far = 1.0
    for name, (scores, labels) in _usable_curves(curves).items():
        far, tar, _ = roc_curve(scores, labels)
        # The log axis cannot show FAR 0, so the curve starts at the first false accept.
        nonzero = far > 0
        lowest_far = min(lowest_far, float(far[nonzero].min()))
        axes.plot(far[nonzero], tar[nonzero], label=f"{name} (AUC {roc_auc(scores, labels):.4f})")

    if not axes.lines:
        _note_no_data(axes)
    axes.set_xscale("log")
    axes.set_xlim(min(lowest_far, 1e-3) / 2.0, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("False accept rate (FAR)")
    axes.set_ylabel("True accept rate (TAR)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    if axes.lines:
        axes.legend(loc="lower right")
    return _save_png(figure, path)


def _probit(rates: np.ndarray, lowest: float) -> np.ndarray:
    """Map rates to normal deviates, clipping them to [lowest, DET_HIGHEST]."""
    clipped = np.clip(rates, lowest, DET_HIGHEST)
    inverse_cdf = NormalDist().inv_cdf
    return np.array([inverse_cdf(rate) for rate in clipped])


def plot_det(curves: dict, path, title: str) -> Path:
    """Plot DET curves (FRR against FAR on normal-deviate axes) into a PNG.

    The lower axis limit is half the smallest non-zero rate that any curve
    can reach (one pair of its larger class), kept within [1e-4, 0.01], and
    the upper limit is 0.99. Rates outside the limits, 0 and 1 included, are
    drawn on them. Each curve's EER is marked on the FAR = FRR diagonal.

    Args:
        curves: {legend name: (scores, labels)} as for ``plot_roc``.
        path: output PNG path. Missing parent folders are created.
        title: figure title.

    Returns:
        The output path as a ``Path``.

    Raises:
        ValueError: if an entry has invalid scores or labels.
    """
    figure, axes = _new_figure()
    usable = _usable_curves(curves)
    largest_class = max((max(int(labels.sum()), int(labels.size - labels.sum()))
                         for _, labels in usable.values()), default=1)
    lowest = float(np.clip(0.5 / largest_class, 1e-4, 0.01))

    for name, (scores, labels) in usable.items():
        far, tar, _ = roc_curve(scores, labels)
        eer, _ = equal_error_rate(scores, labels)
        line, = axes.plot(_probit(far, lowest), _probit(1.0 - tar, lowest),
                          label=f"{name} (EER {eer:.2%})")
        eer_deviate = _probit(np.array([eer]), lowest)
        axes.plot(eer_deviate, eer_deviate, "o", color=line.get_color())

    if not usable:
        _note_no_data(axes)
    ticks = [tick for tick in DET_TICKS if lowest <= tick <= DET_HIGHEST]
    tick_deviates = _probit(np.array(ticks), lowest)
    tick_labels = [f"{100 * tick:g}" for tick in ticks]
    limits = _probit(np.array([lowest, DET_HIGHEST]), lowest)
    axes.plot(limits, limits, ":", color="gray", linewidth=0.8)  # FAR = FRR
    axes.set_xticks(tick_deviates, tick_labels)
    axes.set_yticks(tick_deviates, tick_labels)
    axes.set_xlim(*limits)
    axes.set_ylim(*limits)
    axes.set_xlabel("False accept rate, FAR (%)")
    axes.set_ylabel("False reject rate, FRR (%)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if usable:
        axes.legend(loc="upper right")
    return _save_png(figure, path)


def plot_score_histograms(scores_by_kind: dict, path, title: str, threshold=None) -> Path:
    """Overlay score histograms per pair kind, with the threshold as a line.

    Histograms share their bins and are normalised to density, because
    negatives usually outnumber positives by far.

    Args:
        scores_by_kind: {kind: scores} with scores float64 of shape (n,).
            'positive', 'negative' and 'twin_negative' get fixed colours and
            other kinds the default cycle. Empty arrays are skipped.
        path: output PNG path. Missing parent folders are created.
        title: figure title.
        threshold: decision threshold to draw, or None.

    Returns:
        The output path as a ``Path``.

    Raises:
        ValueError: if an array is not 1-D or contains a non-finite score, or
            the threshold is not finite.
    """
    if threshold is not None and not np.isfinite(float(threshold)):
        raise ValueError(f"threshold must be finite or None, got {threshold}")
    arrays = {}
    for kind, scores in scores_by_kind.items():
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1:
            raise ValueError(f"scores for {kind!r} must be 1-D, got shape {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError(f"scores for {kind!r} contain NaN or infinity")
        if scores.size:
            arrays[kind] = scores

    figure, axes = _new_figure(7.0, 4.5)
    if arrays:
        bins = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=50)
        for kind, scores in arrays.items():
            axes.hist(scores, bins=bins, density=True, alpha=0.45, color=KIND_COLORS.get(kind),
                      label=f"{kind} (n={scores.size})")
    else:
        _note_no_data(axes)
    if threshold is not None:
        axes.axvline(float(threshold), color="black", linestyle="--",
                     label=f"threshold {float(threshold):.4g}")
    axes.set_xlabel("Score (higher = more likely the same person)")
    axes.set_ylabel("Density")
    axes.set_title(title)
    if arrays or threshold is not None:
        axes.legend(loc="upper left")
    return _save_png(figure, path)
