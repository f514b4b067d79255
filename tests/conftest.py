"""Shared fixtures: the real face data and hub-free settings.

Tests find the shared face photos through ``DCAL_TEST_DATA`` (the folder that
holds ``lfw/``, ``att_faces/`` and ``yalefaces/``); ``.ci/run`` sets it.
"""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = os.environ.get("DCAL_TEST_DATA")
    if not root:
        pytest.fail("DCAL_TEST_DATA is not set: point it at the folder holding lfw/, att_faces/ and yalefaces/")
    path = Path(root)
    if not (path / "lfw" / "images_deepfunneled").is_dir():
        pytest.fail(f"DCAL_TEST_DATA={root} has no lfw/images_deepfunneled folder")
    return path


@pytest.fixture(scope="session")
def lfw_images(shared_data) -> Path:
    return shared_data / "lfw" / "images_deepfunneled"


@pytest.fixture(scope="session")
def lfw_twins(shared_data) -> Path:
    return shared_data / "lfw" / "twin_pairs_infor.json"


# Identities of the small LFW subset: look-alike pairs from lfw/relatives.tsv
# plus people with many images, so a few training steps see real positives.
SUBSET_IDENTITIES = (
    "Venus_Williams", "Serena_Williams", "Jeb_Bush", "George_W_Bush", "Michael_Schumacher",
    "Ralf_Schumacher", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder",
    "Ariel_Sharon", "Hugo_Chavez", "Junichiro_Koizumi", "Jean_Chretien", "John_Ashcroft",
    "Jacques_Chirac", "Vladimir_Putin", "Tia_Mowry", "Tamara_Mowry", "Mary-Kate_Olsen", "Ashley_Olsen",
)


def make_lfw_subset(lfw_images: Path, dest: Path, identities=SUBSET_IDENTITIES, per_identity: int = 6) -> Path:
    """Build a folder tree of symbolic links to a few LFW identities (no image is copied)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in identities:
        source = lfw_images / name
        if not source.is_dir():
            continue
        (dest / name).mkdir(exist_ok=True)
        for image in sorted(source.iterdir())[:per_identity]:
            link = dest / name / image.name
            if not link.exists():
                link.symlink_to(image)
    return dest


def link_tree(root: Path, lfw_images: Path, people: dict[str, int]) -> Path:
    """Build an identity folder tree of symbolic links to the first ``count`` images of each person."""
    for name, count in people.items():
        (root / name).mkdir(parents=True)
        for source in sorted((lfw_images / name).iterdir())[:count]:
            (root / name / source.name).symlink_to(source)
    return root


@pytest.fixture(scope="session")
def lfw_subset(lfw_images, tmp_path_factory) -> Path:
    """A folder tree of 21 LFW identities (up to 6 images each), twins and relatives included."""
    return make_lfw_subset(lfw_images, tmp_path_factory.mktemp("lfw_subset"))


@pytest.fixture(scope="session")
def trained_checkpoint(lfw_subset, lfw_twins, tmp_path_factory) -> Path:
    """A checkpoint from a short real dcal-train run (tiny preset) on the LFW subset.

    Its head and thresholds come from training, so tests that rank or decide
    use a model that has seen real faces, not random weights.
    """
    import torch

    from dcal.training.build import DataArgs
    from dcal.training.config import resolve_config
    from dcal.training.loop import Trainer

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    config = resolve_config("tiny", None, {"max_steps": 30, "img_size": 32, "batches_per_epoch": 10,
                                           "base_lr": 3e-3, "seed": 0})
    Trainer(config, DataArgs(str(lfw_subset), str(lfw_twins)), run_dir, torch.device("cpu"),
            mlflow_uri=f"sqlite:///{run_dir.parent / 'mlflow.db'}").run()
    return run_dir / "best"
