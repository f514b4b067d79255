"""dcal-eval end to end on real LFW faces: outputs, protocols, twin reporting."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from cli.eval import main as eval_main
from dcal.data.manifest import load_manifest
from dcal.data.pairs import make_eval_pairs, write_pairs_csv

OUTPUTS = ["metrics.json", "report.md", "roc_overall.png", "roc_twins.png", "det_overall.png", "det_twins.png",
           "hist_cosine.png", "hist_head.png", "pairs_scored.csv"]


@pytest.fixture(scope="module")
def pairs_csv(lfw_subset, lfw_twins, tmp_path_factory):
    manifest = load_manifest(str(lfw_subset), twins=str(lfw_twins), verify_images="none")
    pairs = make_eval_pairs(manifest.images, manifest.twin_pairs, max_positives=60, max_twin_negatives=40, seed=0)
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    write_pairs_csv(pairs, path)
    return path


def invoke(args):
    return CliRunner().invoke(eval_main, [str(a) for a in args], catch_exceptions=False)


def test_eval_writes_every_output(trained_checkpoint, lfw_subset, lfw_twins, pairs_csv, tmp_path):
    out = tmp_path / "eval"
    result = invoke(["--checkpoint", trained_checkpoint, "--data", lfw_subset, "--twins", lfw_twins,
                     "--pairs", pairs_csv, "--out", out, "--json", "--ablations"])
    assert result.exit_code == 0, result.output
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        with Image.open(png) as image:
            assert image.size[0] > 100
    metrics = json.loads((out / "metrics.json").read_text())
    for scorer in ("cosine", "head"):
        assert 0.0 <= metrics["scorers"][scorer]["overall"]["eer"] <= 1.0
        assert metrics["scorers"][scorer]["twins"]["available"] is True
    assert metrics["data"]["twin_negative"] > 0
    assert metrics["checkpoint"]["fingerprint"]
    assert set(metrics["ablations"]) == {"SA only", "GLCA only", "SA+GLCA"}
    assert "Twins and look-alikes" in (out / "report.md").read_text()


def test_eval_json_stdout_parses(trained_checkpoint, lfw_subset, pairs_csv, tmp_path):
    result = invoke(["--checkpoint", trained_checkpoint, "--data", lfw_subset, "--pairs", pairs_csv,
                     "--scorer", "cosine", "--out", tmp_path / "e", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout[result.stdout.index("{"):])
    assert list(metrics["scorers"]) == ["cosine"]


def write_view1_files(lfw_dir: Path, subset: Path) -> None:
    """Small View 1 style files over the subset's identities (same format as LFW's)."""
    same = [("Colin_Powell", 1, 2), ("Tony_Blair", 1, 3), ("Serena_Williams", 2, 4), ("Jeb_Bush", 1, 2)]
    diff = [("Colin_Powell", 1, "Tony_Blair", 2), ("Venus_Williams", 1, "Serena_Williams", 1),
            ("Jeb_Bush", 3, "George_W_Bush", 1), ("Hugo_Chavez", 1, "Ariel_Sharon", 2)]
    lines = [str(len(same))] + [f"{n}\t{i}\t{j}" for n, i, j in same] + [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in diff]
    for name in ("pairsDevTest.txt", "pairsDevTrain.txt"):
        (lfw_dir / name).write_text("\n".join(lines) + "\n")


def test_eval_lfw_view1_protocol(trained_checkpoint, lfw_subset, lfw_twins, tmp_path):
    lfw_dir = tmp_path / "lfw"
    lfw_dir.mkdir()
    write_view1_files(lfw_dir, lfw_subset)
    result = invoke(["--checkpoint", trained_checkpoint, "--data", lfw_subset, "--twins", lfw_twins,
                     "--protocol", "lfw-view1", "--lfw-dir", lfw_dir, "--out", tmp_path / "e", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["data"]["positive"] == 4
    assert metrics["data"]["calibration_pairs"] == 8
    assert "pairsDevTrain" in metrics["scorers"]["head"]["threshold_source"]


def test_eval_requires_one_pair_source(trained_checkpoint, lfw_subset, tmp_path):
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(trained_checkpoint), "--data", str(lfw_subset),
                                            "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert "exactly one pair source" in result.output


def test_eval_missing_lfw_files_named(trained_checkpoint, lfw_subset, tmp_path):
    result = CliRunner().invoke(eval_main, ["--checkpoint", str(trained_checkpoint), "--data", str(lfw_subset),
                                            "--protocol", "lfw-view2", "--out", str(tmp_path / "e")])
    assert result.exit_code == 1
    assert "pairs.txt" in result.output


def test_eval_gallery_identification(trained_checkpoint, lfw_subset, lfw_twins, pairs_csv, tmp_path):
    out = tmp_path / "eval"
    result = invoke(["--checkpoint", trained_checkpoint, "--data", lfw_subset, "--twins", lfw_twins,
                     "--pairs", pairs_csv, "--gallery-eval", "--out", out, "--json"])
    assert result.exit_code == 0, result.output
    gallery = json.loads((out / "metrics.json").read_text())["gallery"]
    assert gallery["probes"] > 20
    for scorer in ("cosine", "rescored"):
        assert 0.0 <= gallery[scorer]["rank1"] <= gallery[scorer]["rank5"] <= 1.0
        assert gallery[scorer]["map"] is not None
    assert gallery["cosine"]["twin_probes"] > 0
    assert (out / "gallery" / "gallery.db").is_file()
    assert "Identification" in (out / "report.md").read_text()
