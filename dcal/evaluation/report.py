"""Write an evaluation's outputs: metrics.json, report.md and PNG plots."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.plots import plot_det, plot_roc, plot_score_histograms

ROWS = [
    ("accuracy", "accuracy at threshold"),
    ("eer", "EER"),
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("tar_at_far_1e-3", "TAR @ FAR 1e-3"),
    ("tar_at_far_1e-2", "TAR @ FAR 1e-2"),
    ("twin_pair_accuracy", "twin negatives rejected"),
    ("negative_accept_rate", "regular negatives accepted"),
]


def _cell(value) -> str:
    if isinstance(value, dict):  # tar_at_far result
        text = _cell(value.get("tar"))
        return text if value.get("resolvable", True) else f"{text} (unresolved)"
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(title: str, columns: dict[str, dict], section: str) -> list[str]:
    names = list(columns)
    lines = [f"### {title}", "", "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key, label in ROWS:
        values = [columns[n].get(section, {}) for n in names]
        if all(key not in v for v in values):
            continue
        lines.append(f"| {label} | " + " | ".join(_cell(v.get(key)) for v in values) + " |")
    counts = [columns[n].get(section, {}) for n in names]
    if counts and "n_positive" in counts[0]:
        lines.append(f"| pairs (positive / negative) | " + " | ".join(
            f"{c.get('n_positive')} / {c.get('n_negative')}" for c in counts) + " |")
    lines.append("")
    notes = {n: columns[n][section].get("note") for n in names if columns[n].get(section, {}).get("note")}
    for name, note in notes.items():
        lines.append(f"- {name}: {note}")
    return lines


def write_report_md(metrics: dict, path: Path) -> None:
    scorers = metrics["scorers"]
    lines = [f"# dcal evaluation: {metrics['source']}", "",
             f"- checkpoint: `{metrics['checkpoint']['path']}` (fingerprint {metrics['checkpoint']['fingerprint'][:16]})",
             f"- pairs: {metrics['data']['pairs']} ({metrics['data']['positive']} positive, "
             f"{metrics['data']['negative']} negative, {metrics['data']['twin_negative']} twin/look-alike negative)",
             ""]
    for name, values in scorers.items():
        lines.append(f"- {name} threshold {values['threshold']:.4f}: {values['threshold_source']}")
        if "kfold_accuracy" in values:
            k = values["kfold_accuracy"]
            lines.append(f"  - 10-fold accuracy {k['mean']:.4f} +- {k['std']:.4f}")
    lines.append("")
    lines += _table("Overall", scorers, "overall")
    lines += _table("Twins and look-alikes (positives vs twin negatives only)", scorers, "twins")
    if metrics.get("ablations"):
        lines += _table("Ablations (cosine of one branch)", metrics["ablations"], "overall")
    gallery = metrics.get("gallery")
    if gallery:
        lines += ["### Identification (1:N through the gallery)", "",
                  "| metric | cosine (FAISS only) | head re-scored |", "|---|---|---|"]
        for key in ("rank1", "rank5", "map", "twin_outranks_rate"):
            lines.append(f"| {key} | {_cell(gallery['cosine'].get(key))} | {_cell(gallery['rescored'].get(key))} |")
        lines.append(f"\n{gallery['probes']} probes against {gallery['gallery_images']} gallery images of "
                     f"{gallery['identities']} identities.\n")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_metrics_json(metrics: dict, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, default=_json_default), encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return str(value)


def write_plots(scored: pd.DataFrame, metrics: dict, out: Path) -> list[str]:
    """ROC and DET curves (overall and twins) and per-kind score histograms."""
    evaluated = scored[scored["role"].isin(["test", "lookalike"])]
    test = scored[scored["role"] == "test"]
    twins = evaluated[evaluated["kind"].isin(["positive", "twin_negative"])]
    columns = [c for c in ("cosine", "head") if c in scored]
    overall = {c: (test[c].to_numpy(), test["label"].to_numpy()) for c in columns}
    twin_curves = {c: (twins[c].to_numpy(), twins["label"].to_numpy()) for c in columns}
    written = [
        plot_roc(overall, out / "roc_overall.png", "ROC, all pairs"),
        plot_roc(twin_curves, out / "roc_twins.png", "ROC, positives vs twin/look-alike negatives"),
        plot_det(overall, out / "det_overall.png", "DET, all pairs"),
        plot_det(twin_curves, out / "det_twins.png", "DET, positives vs twin/look-alike negatives"),
    ]
    for column in columns:
        by_kind = {kind: evaluated.loc[evaluated["kind"] == kind, column].to_numpy()
                   for kind in ("positive", "negative", "twin_negative")}
        written.append(plot_score_histograms(by_kind, out / f"hist_{column}.png", f"{column} scores by pair kind",
                                             threshold=metrics["scorers"][column]["threshold"]))
    return [str(p) for p in written]
