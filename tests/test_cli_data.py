"""The dcal-data command: check, split and pairs."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.common import PathMapType, setup_logging
from cli.data import main

LFW_NAMES = ["Venus_Williams", "Serena_Williams", "Tia_Mowry", "Tamara_Mowry", "Aaron_Peirsol", "Abel_Pacheco",
             "Akhmed_Zakayev", "Amber_Tamblyn", "AJ_Cook", "Anna_Kournikova", "Andre_Agassi", "Alvaro_Uribe"]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def lfw_json(tmp_path, lfw_images):
    """A dataset_infor.json of a dozen LFW identities, with paths as written on a Kaggle notebook."""
    data = {
        name: [f"/kaggle/input/lfw/{name}/{f}" for f in sorted(os.listdir(lfw_images / name))] for name in LFW_NAMES
    }
    path = tmp_path / "dataset_infor.json"
    path.write_text(json.dumps(data))
    return path


def _invoke(runner, *args):
    return runner.invoke(main, [str(a) for a in args])


def test_check_json_keys(runner, shared_data):
    result = _invoke(runner, "check", shared_data / "att_faces", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in ("identities", "images", "twin_pairs", "twin_pairs_usable", "missing_files", "unreadable_files",
                "duplicate_paths", "images_per_identity", "problems", "usable"):
        assert key in report
    assert report["identities"] == 40
    assert report["images"] == 400
    assert report["images_per_identity"] == {"min": 10, "median": 10, "max": 10}


def test_check_text_with_twins_and_path_map(runner, lfw_json, lfw_images, lfw_twins):
    result = _invoke(runner, "check", lfw_json, "--twins", lfw_twins, "--path-map", f"/kaggle/input/lfw={lfw_images}")

    assert result.exit_code == 0, result.output
    assert "identities: 12" in result.stdout
    assert "twin pairs: 36 listed, 2 usable" in result.stdout
    assert "missing files: 0" in result.stdout
    assert "images per identity: min 1," in result.stdout
    assert "usable: yes" in result.stdout


def test_check_unresolved_paths_fail(runner, lfw_json):
    result = _invoke(runner, "check", lfw_json)

    assert result.exit_code == 1
    assert "all_files_missing" in result.stderr
    assert "--path-map /kaggle/input/lfw=" in result.stdout
    assert "Traceback" not in result.output


def test_check_unusable_tree(runner, tmp_path):
    for person in ("ann", "bob"):
        (tmp_path / person).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / person / "1.png")

    result = _invoke(runner, "check", tmp_path, "--json")

    assert result.exit_code == 1
    assert json.loads(result.stdout)["usable"] is False
    assert "too_few_identities" in result.stderr


def test_check_people_filter(runner, tmp_path, shared_data):
    people = tmp_path / "people.txt"
    people.write_text("3\ns1\t10\ns2\t10\ns99\t10\n")

    result = _invoke(runner, "check", shared_data / "att_faces", "--people", people, "--json")

    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert report["identities"] == 2
    assert [p["examples"] for p in report["problems"] if p["kind"] == "people_not_found"] == [["s99"]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--path-map", "/kaggle/input"], "expected OLD=NEW"),
        (["--twins", "absent.json"], "absent.json"),
        (["--verify", "deep"], "deep"),
    ],
)
def test_check_bad_options(runner, shared_data, args, message):
    result = _invoke(runner, "check", shared_data / "att_faces", *args)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_check_malformed_twins(runner, tmp_path, shared_data):
    twins = tmp_path / "twins.json"
    twins.write_text('{"s1": "s2"}')

    result = _invoke(runner, "check", shared_data / "att_faces", "--twins", twins)

    assert result.exit_code == 1
    assert "expected a JSON list" in result.stderr
    assert "twins.json" in result.stderr
    assert "Traceback" not in result.output


def test_split_writes_file(runner, tmp_path, shared_data):
    out = tmp_path / "run" / "splits.json"
    twins = tmp_path / "twins.json"
    twins.write_text('[["s1", "s2"], ["s3", "s4"]]')

    result = _invoke(runner, "split", shared_data / "att_faces", "--twins", twins, "--out", out,
                     "--ratios", 0.5, 0.25, 0.25, "--seed", 3, "--json")

    assert result.exit_code == 0, result.output
    splits = json.loads(out.read_text())
    assert [len(splits[name]) for name in ("train", "val", "test")] == [20, 10, 10]
    summary = json.loads(result.stdout)
    assert sum(summary["twin_groups"].values()) == 2
    split_of = {member: name for name in ("train", "val", "test") for member in splits[name]}
    assert split_of["s1"] == split_of["s2"]
    assert split_of["s3"] == split_of["s4"]


def test_split_bad_ratios(runner, tmp_path, shared_data):
    out = tmp_path / "splits.json"

    result = _invoke(runner, "split", shared_data / "att_faces", "--out", out, "--ratios", 0.5, 0.2, 0.2)

    assert result.exit_code == 2
    assert "sum to 0.9" in result.stderr
    assert not out.exists()


def test_split_given_test_set(runner, tmp_path, shared_data):
    def orl(first, last):
        return {f"s{i}": [str(shared_data / "att_faces" / f"s{i}" / f"{k}.pgm") for k in range(1, 11)]
                for i in range(first, last + 1)}

    train, test = orl(1, 30), orl(31, 40)
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "test.json").write_text(json.dumps(test))
    out = tmp_path / "splits.json"

    result = _invoke(runner, "split", tmp_path / "train.json", "--test-data", tmp_path / "test.json",
                     "--val-ratio", 0.1, "--out", out, "--verify", "none")

    assert result.exit_code == 0, result.output
    splits = json.loads(out.read_text())
    assert sorted(splits["test"]) == sorted(test)
    assert len(splits["val"]) == 3
    assert len(splits["train"]) == 27


def test_pairs_writes_csv(runner, tmp_path, lfw_json, lfw_images, lfw_twins):
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": LFW_NAMES[4:], "val": LFW_NAMES[:4], "test": [], "ratios": None}))
    out = tmp_path / "pairs.csv"
    common = ["--twins", lfw_twins, "--path-map", f"/kaggle/input/lfw={lfw_images}"]

    result = _invoke(runner, "pairs", lfw_json, *common, "--splits", splits, "--split", "val", "--out", out,
                     "--max-positives", 100, "--negative-ratio", 0.5, "--json")

    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["path_a", "path_b", "identity_a", "identity_b", "label", "kind"]
    counts = json.loads(result.stdout)["pairs"]
    assert counts["positive"] == 100
    assert counts["negative"] == 50
    assert counts["twin_negative"] == (frame["kind"] == "twin_negative").sum()
    assert counts["twin_negative"] > 0
    assert set(frame["identity_a"]) | set(frame["identity_b"]) <= set(LFW_NAMES[:4])
    assert all(Path(p).is_file() for p in frame["path_a"])


def test_pairs_bad_splits_file(runner, tmp_path, shared_data):
    splits = tmp_path / "splits.json"
    splits.write_text('{"train": []}')

    result = _invoke(runner, "pairs", shared_data / "att_faces", "--splits", splits, "--out", tmp_path / "p.csv")

    assert result.exit_code == 2
    assert "'val' list is missing" in result.stderr
    assert "Traceback" not in result.output


def test_pairs_split_from_other_data(runner, tmp_path, shared_data):
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": [], "val": ["Nobody_Here"], "test": [], "ratios": None}))

    result = _invoke(runner, "pairs", shared_data / "att_faces", "--splits", splits, "--out", tmp_path / "p.csv")

    assert result.exit_code == 1
    assert "check that the splits file was made from this data set" in result.stderr


def test_path_map_type():
    assert PathMapType().convert("/a=/b", None, None) == ("/a", "/b")


def test_setup_logging_repeatable():
    setup_logging()
    setup_logging(verbose=True)

    handlers = [h for h in logging.getLogger().handlers if type(h).__name__ == "_StderrHandler"]
    assert len(handlers) == 1


def test_module_entry_point():
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}

    result = subprocess.run([sys.executable, "-m", "cli.data", "check", "--help"], capture_output=True, text=True,
                            cwd=repo, env=env)

    assert result.returncode == 0, result.stderr
    assert "--path-map OLD=NEW" in result.stdout
    assert "--verify" in result.stdout
