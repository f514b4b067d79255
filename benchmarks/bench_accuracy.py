"""DCAL against the plain ViT for the same training budget, on LFW View 1 and look-alikes.

Both models train with the same preset, data (people of peopleDevTrain.txt),
epochs and seed; the plain ViT has GLCA and PWCA switched off. Each is then
evaluated with ``dcal-eval --protocol lfw-view1`` and the twins file, and the
script prints one table side by side.

    python benchmarks/bench_accuracy.py --out bench-acc [--quick] [--nproc-per-node 2]

A run folder whose best/ already exists is reused, so an interrupted
benchmark picks up where it stopped (pass --retrain to train again).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "dcal": [],
    "plain-vit": ["--glca-blocks", "0", "--pwca-blocks", "0"],
}


def run(command: list[str], log: Path) -> float:
    start = time.monotonic()
    with open(log, "w") as f:
        subprocess.run(command, check=True, stdout=f, stderr=subprocess.STDOUT)
    return time.monotonic() - start


def train(variant: str, args, lfw: Path, out: Path) -> float | None:
    run_dir = out / variant
    if (run_dir / "best" / "config.json").is_file() and not args.retrain:
        print(f"{variant}: reusing {run_dir}", file=sys.stderr)
        return None
    preset = ["--preset", "tiny", "--max-steps", "30"] if args.quick else ["--preset", args.preset]
    command = ["dcal-train", "--data", str(lfw / "images_deepfunneled"), "--twins", str(lfw / "twin_pairs_infor.json"),
               "--people", str(lfw / "peopleDevTrain.txt"), "--out", str(run_dir), "--seed", str(args.seed),
               "--nproc-per-node", str(args.nproc_per_node), "--device", "cpu", *preset, *VARIANTS[variant],
               # Same budget for both: no early stopping; best/ is still the best validation epoch.
               "--patience", "0"]
    print(f"{variant}: {' '.join(command)}", file=sys.stderr)
    return run(command, out / f"{variant}-train.log")


def evaluate(variant: str, args, lfw: Path, out: Path) -> dict:
    eval_dir = out / f"{variant}-eval"
    command = ["dcal-eval", "--checkpoint", str(out / variant), "--data", str(lfw / "images_deepfunneled"),
               "--twins", str(lfw / "twin_pairs_infor.json"), "--protocol", "lfw-view1", "--out", str(eval_dir)]
    if args.quick:
        command += ["--max-pairs", "500"]
    run(command, out / f"{variant}-eval.log")
    return json.loads((eval_dir / "metrics.json").read_text())


def rows(results: dict) -> list[tuple[str, list[str]]]:
    def fmt(value):
        if isinstance(value, dict):
            value = value.get("tar")
        return "n/a" if value is None else f"{value:.4f}"

    table = []
    for scorer in ("cosine", "head"):
        for section, key, label in [("overall", "accuracy", "View 1 accuracy"), ("overall", "eer", "View 1 EER"),
                                    ("overall", "roc_auc", "View 1 ROC AUC"),
                                    ("overall", "negative_accept_rate", "regular negatives accepted"),
                                    ("twins", "eer", "look-alike EER (positives vs look-alikes)"),
                                    ("twins", "twin_pair_accuracy", "look-alike pairs rejected")]:
            table.append((f"{scorer}: {label}",
                          [fmt(results[v]["scorers"][scorer][section].get(key)) for v in results]))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("DCAL_TEST_DATA"),
                        help="folder holding lfw/ (default: $DCAL_TEST_DATA)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for runs, evaluations and results")
    parser.add_argument("--preset", default="cpu-small", help="training preset of the full mode (default cpu-small)")
    parser.add_argument("--quick", action="store_true", help="tiny preset, 30 steps: a smoke check in minutes")
    parser.add_argument("--nproc-per-node", type=int, default=2, help="training processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="training seed shared by both variants (default 0)")
    parser.add_argument("--retrain", action="store_true", help="train again even when a run folder exists")
    args = parser.parse_args()
    if not args.data:
        parser.error("--data or DCAL_TEST_DATA is required")
    lfw = Path(args.data) / "lfw"
    args.out.mkdir(parents=True, exist_ok=True)

    results, times = {}, {}
    for variant in VARIANTS:
        times[variant] = train(variant, args, lfw, args.out)
    for variant in VARIANTS:
        results[variant] = evaluate(variant, args, lfw, args.out)
    table = rows(results)
    print("| metric | " + " | ".join(results) + " |")
    print("|---" * (len(results) + 1) + "|")
    for label, values in table:
        print(f"| {label} | " + " | ".join(values) + " |")
    print("| training wall time (s) | " + " | ".join("reused" if times[v] is None else f"{times[v]:.0f}"
                                                    for v in results) + " |")
    summary = {"mode": "quick" if args.quick else args.preset, "seed": args.seed, "table": table, "times": times,
               "metrics": {v: results[v]["scorers"] for v in results}}
    (args.out / "bench_accuracy.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
