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
