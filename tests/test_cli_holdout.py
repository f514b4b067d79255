"""dcal-data holdout: gallery and probe trees of links, identity by identity."""
import json

from click.testing import CliRunner

from cli.data import main as data_main


def test_holdout_splits_each_identity(lfw_subset, tmp_path):
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    result = CliRunner().invoke(data_main, ["holdout", str(lfw_subset), "--gallery-dir", str(gallery),
                                            "--probes-dir", str(probes), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout[result.stdout.index("{"):])
    assert counts["probe_images"] == counts["identities"]
    for identity in probes.iterdir():
        held_out = {p.name for p in identity.iterdir()}
        enrolled = {p.name for p in (gallery / identity.name).iterdir()}
        assert len(held_out) == 1
        assert not held_out & enrolled
        assert all(p.is_symlink() for p in identity.iterdir())


def test_holdout_no_eligible_identity(tmp_path):
    data = tmp_path / "faces"
    (data / "solo").mkdir(parents=True)
    result = CliRunner().invoke(data_main, ["holdout", str(data), "--gallery-dir", str(tmp_path / "g"),
                                            "--probes-dir", str(tmp_path / "p")])
    assert result.exit_code != 0
    assert "--min-images" in result.output


def test_holdout_keep_small_in_gallery(lfw_subset, tmp_path):
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    result = CliRunner().invoke(data_main, ["holdout", str(lfw_subset), "--gallery-dir", str(gallery),
                                            "--probes-dir", str(probes), "--keep-small"])
    assert result.exit_code == 0, result.output
    assert (gallery / "Tia_Mowry").is_dir()
    assert not (probes / "Tia_Mowry").exists()
