"""dcal-enroll, dcal-match, dcal-verify and dcal-gallery through click's CliRunner on real LFW faces."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from cli import enroll, gallery, match, verify
from dcal.model import DCALConfig, DCALModel, read_checkpoint_config, save_checkpoint
from indexer.lock import WriteLock
from conftest import link_tree

PEOPLE = {"Tia_Mowry": 1, "Tamara_Mowry": 1, "George_W_Bush": 2, "Colin_Powell": 2}


def random_checkpoint(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(DCALModel(DCALConfig(backbone="vit_tiny_patch16_224", img_size=64)).eval(), folder)
    return folder


@pytest.fixture(scope="module")
def checkpoint(trained_checkpoint) -> Path:
    """The checkpoint of a short real training run on LFW faces (see conftest)."""
    return trained_checkpoint


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    return random_checkpoint(tmp_path_factory.mktemp("other") / "ckpt", seed=1)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def face_tree(tmp_path_factory, lfw_images) -> Path:
    return link_tree(tmp_path_factory.mktemp("faces"), lfw_images, PEOPLE)


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, face_tree, checkpoint, lfw_twins):
    """A gallery of the face tree with twin links, and the parsed JSON of its first enrolment."""
    folder = tmp_path_factory.mktemp("gallery") / "gallery"
    result = CliRunner().invoke(enroll.main, [str(face_tree), "--gallery", str(folder), "--checkpoint",
                                              str(checkpoint), "--twins", str(lfw_twins), "--batch-size", "4",
                                              "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    return SimpleNamespace(folder=folder, first=json.loads(result.stdout))


def image(face_tree: Path, name: str) -> str:
    return str(sorted((face_tree / name).iterdir())[0])


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------ dcal-enroll

def test_enroll_json_summary(enrolled):
    assert enrolled.first == {"enrolled": 6, "skipped_existing": 0, "failed": [], "identities": 4, "images": 6}


def test_enroll_rerun_changes_nothing(runner, enrolled, face_tree):
    result = runner.invoke(enroll.main, [str(face_tree), "--gallery", str(enrolled.folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"enrolled": 0, "skipped_existing": 6, "failed": [], "identities": 4,
                                         "images": 6}


def test_enroll_partial_failure(runner, tmp_path, lfw_images, checkpoint):
    tree = link_tree(tmp_path / "faces", lfw_images, {"Colin_Powell": 2})
    bad = tree / "Colin_Powell" / "broken.jpg"
    bad.write_bytes(b"not an image")
    result = runner.invoke(enroll.main, [str(tree), "--gallery", str(tmp_path / "gallery"), "--checkpoint",
                                         str(checkpoint), "--device", "cpu", "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["enrolled"] == 2
    assert [entry["path"] for entry in summary["failed"]] == [str(bad)]
    assert "not an image format" in summary["failed"][0]["reason"]
    assert "1 files failed" in result.stderr
    assert "the other images were enrolled" in result.stderr


def test_enroll_folder_without_images(runner, tmp_path, checkpoint):
    (tmp_path / "empty" / "somebody").mkdir(parents=True)
    result = runner.invoke(enroll.main, [str(tmp_path / "empty"), "--gallery", str(tmp_path / "gallery"),
                                         "--checkpoint", str(checkpoint)])
    assert result.exit_code == 2
    assert "no images found in" in result.stderr
    assert "one sub-folder of image files per identity" in result.stderr


def test_enroll_new_gallery_needs_checkpoint(runner, tmp_path, face_tree):
    result = runner.invoke(enroll.main, [str(face_tree), "--gallery", str(tmp_path / "gallery")])
    assert result.exit_code == 2
    assert "a new gallery needs a checkpoint" in result.stderr
    assert not (tmp_path / "gallery").exists()


def test_enroll_mismatched_checkpoint(runner, enrolled, face_tree, checkpoint, other_checkpoint):
    result = runner.invoke(enroll.main, [str(face_tree), "--gallery", str(enrolled.folder), "--checkpoint",
                                         str(other_checkpoint)])
    assert result.exit_code == 1
    assert read_checkpoint_config(checkpoint)["fingerprint"][:16] in result.stderr
    assert read_checkpoint_config(other_checkpoint)["fingerprint"][:16] in result.stderr
    assert "rebuild the gallery" in result.stderr
    assert "Traceback" not in result.output


def test_enroll_lock_timeout(runner, enrolled, face_tree):
    with WriteLock(enrolled.folder):
        result = runner.invoke(enroll.main, [str(face_tree), "--gallery", str(enrolled.folder),
                                             "--lock-timeout", "0.3"])
    assert result.exit_code == 1
    assert "timed out after 0.3 s waiting for the gallery write lock" in result.stderr
    assert "waiting for the gallery write lock" in result.stderr


# ------------------------------------------------------------------- dcal-match

def test_match_json_lines(runner, enrolled, face_tree):
    probes = [image(face_tree, "Tia_Mowry"), image(face_tree, "George_W_Bush")]
    result = runner.invoke(match.main, [*probes, "--gallery", str(enrolled.folder), "--no-rescore", "--json"])
    assert result.exit_code == 0, result.output
    tia, george = json_lines(result.stdout)
    assert tia["probe"] == probes[0]
    assert tia["decision"] == "Tia_Mowry"
    assert set(tia["candidates"][0]) >= {"identity", "score", "cosine", "image"}
    assert tia["candidates"][0]["image"] == probes[0]
    assert tia["twin"]["identity"] == "Tamara_Mowry"
    assert set(tia["twin"]) == {"identity", "score", "margin", "ambiguous"}
    assert george["decision"] == "George_W_Bush"
    assert george["twin"] is None


def test_match_rescored_by_default(runner, enrolled, face_tree):
    result = runner.invoke(match.main, [image(face_tree, "Colin_Powell"), "--gallery", str(enrolled.folder),
                                        "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    (answer,) = json_lines(result.stdout)
    assert answer["score_kind"] == "head"
    assert len(answer["candidates"]) <= 3
    assert all(0.0 <= candidate["score"] <= 1.0 for candidate in answer["candidates"])


def test_match_unreadable_probe(runner, enrolled, face_tree, tmp_path):
    missing = str(tmp_path / "missing.jpg")
    probes = [image(face_tree, "Colin_Powell"), missing, image(face_tree, "George_W_Bush")]
    result = runner.invoke(match.main, [*probes, "--gallery", str(enrolled.folder), "--json"])
    assert result.exit_code == 1
    lines = json_lines(result.stdout)
    assert [line["probe"] for line in lines] == probes
    assert lines[1] == {"probe": missing, "error": f"cannot load image {missing!r}: file not found"}
    assert "decision" in lines[0]
    assert "decision" in lines[2]
    assert "1 of 3 probes could not be read" in result.stderr


def test_match_text_table(runner, enrolled, face_tree):
    result = runner.invoke(match.main, [image(face_tree, "Tia_Mowry"), "--gallery", str(enrolled.folder),
                                        "--no-rescore", "--threshold", "0.5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"probe {image(face_tree, 'Tia_Mowry')}"
    assert lines[1].startswith("  decision: Tia_Mowry (score 1.0000 >= threshold 0.5000, cosine)")
    assert lines[2].startswith("  twin: Tamara_Mowry score ")
    assert lines[3].split() == ["rank", "identity", "score", "cosine", "best", "image"]
    assert lines[4].split()[:2] == ["1", "Tia_Mowry"]


def test_match_mismatched_checkpoint(runner, enrolled, face_tree, checkpoint, other_checkpoint):
    result = runner.invoke(match.main, [image(face_tree, "Tia_Mowry"), "--gallery", str(enrolled.folder),
                                        "--checkpoint", str(other_checkpoint)])
    assert result.exit_code == 1
    assert read_checkpoint_config(checkpoint)["fingerprint"][:16] in result.stderr
    assert read_checkpoint_config(other_checkpoint)["fingerprint"][:16] in result.stderr
    assert "use the original checkpoint" in result.stderr


def test_match_missing_gallery(runner, tmp_path, face_tree):
    result = runner.invoke(match.main, [image(face_tree, "Tia_Mowry"), "--gallery", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert f"no gallery at {tmp_path / 'nowhere'}" in result.stderr
    assert "dcal-enroll FOLDER --gallery" in result.stderr


def test_match_empty_gallery(runner, tmp_path, lfw_images, checkpoint):
    tree = link_tree(tmp_path / "faces", lfw_images, {"Colin_Powell": 1})
    folder = str(tmp_path / "gallery")
    assert runner.invoke(enroll.main, [str(tree), "--gallery", folder, "--checkpoint", str(checkpoint)]).exit_code == 0
    assert runner.invoke(gallery.main, ["remove", "Colin_Powell", "--gallery", folder]).exit_code == 0
    result = runner.invoke(match.main, [image(tree, "Colin_Powell"), "--gallery", folder])
    assert result.exit_code == 1
    assert "has no enrolled images; enrol some with dcal-enroll" in result.stderr


# ----------------------------------------------------------------- dcal-gallery

def test_gallery_info_json(runner, enrolled, checkpoint):
    result = runner.invoke(gallery.main, ["info", "--gallery", str(enrolled.folder), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["identities"] == 4
    assert info["images"] == 6
    assert info["twin_links"] == 1
    assert info["embedding_size"] == 384
    assert info["fingerprint"] == read_checkpoint_config(checkpoint)["fingerprint"]
    assert info["index_type"] == "flat"
    assert info["index_file"] == "current"


def test_gallery_list_text(runner, enrolled):
    result = runner.invoke(gallery.main, ["list", "--gallery", str(enrolled.folder)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["identity", "images", "twins"]
    assert ["Tia_Mowry", "1", "Tamara_Mowry"] in rows
    assert ["George_W_Bush", "2", "-"] in rows


def test_gallery_remove_unknown_identity(runner, enrolled):
    result = runner.invoke(gallery.main, ["remove", "Nobody_Here", "--gallery", str(enrolled.folder)])
    assert result.exit_code == 2
    assert "identity not found in gallery" in result.stderr
    assert "Nobody_Here" in result.stderr
    assert "dcal-gallery list" in result.stderr


def test_gallery_info_missing(runner, tmp_path):
    result = runner.invoke(gallery.main, ["info", "--gallery", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "no gallery at" in result.stderr


# ------------------------------------------------------------------ dcal-verify

def test_verify_symmetric_score(runner, face_tree, checkpoint):
    a, b = image(face_tree, "Tia_Mowry"), image(face_tree, "Tamara_Mowry")
    forward = runner.invoke(verify.main, [a, b, "--checkpoint", str(checkpoint), "--device", "cpu", "--json"])
    backward = runner.invoke(verify.main, [b, a, "--checkpoint", str(checkpoint), "--device", "cpu", "--json"])
    assert forward.exit_code == 0, forward.output
    assert backward.exit_code == 0, backward.output
    first, second = json.loads(forward.stdout), json.loads(backward.stdout)
    assert set(first) == {"same_person", "score", "threshold", "cosine"}
    assert first == second
    assert first["same_person"] == (first["score"] >= first["threshold"])


def test_verify_unreadable_image(runner, tmp_path, face_tree, checkpoint):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")
    result = runner.invoke(verify.main, [image(face_tree, "Tia_Mowry"), str(broken), "--checkpoint",
                                         str(checkpoint), "--device", "cpu"])
    assert result.exit_code == 1
    assert str(broken) in result.stderr
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------ help

@pytest.mark.parametrize("command, option, words", [
    (enroll.main, "--batch-size", "default: 32"),
    (enroll.main, "--lock-timeout", "Seconds"),
    (match.main, "--top-k", "default: 50"),
    (match.main, "--twin-margin", "default: 0.05"),
    (verify.main, "--threshold", "Default: the checkpoint's calibrated threshold"),
])
def test_help_gives_defaults(runner, command, option, words):
    result = runner.invoke(command, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert option in text
    assert words in text
