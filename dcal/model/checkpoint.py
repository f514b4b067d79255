"""Checkpoint folders: safetensors weights, a JSON config and a sha256 fingerprint.

A checkpoint folder holds:

- ``model.safetensors``: the inference weights (backbone, GLCA, necks, head);
  identity classifiers are left out because only training uses them.
- ``config.json``: the :class:`DCALConfig`, the input normalisation, the
  embedding size, calibrated thresholds, the fingerprint and free-form
  training information.

Loading reads tensors and JSON only, so nothing is ever unpickled. A folder is
written under a temporary name and renamed into place, so a crash leaves
either the old checkpoint or the new one, never a mix.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .network import DCALConfig, DCALModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


def inference_state_dict(model: DCALModel) -> dict[str, torch.Tensor]:
    """Return the weights an inference model needs, contiguous and on the CPU."""
    return {
        name: tensor.detach().cpu().contiguous()
        for name, tensor in model.state_dict().items()
        if not name.startswith("classifiers.")
    }


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir_atomically(tmp_dir: Path, target: Path) -> None:
    """Move a fully written ``tmp_dir`` to ``target``, replacing any old folder.

    POSIX cannot rename over a non-empty folder, so the old one is first moved
    aside to ``<target>.old``; :func:`resolve_checkpoint_dir` falls back to it
    if a crash lands between the two renames.
    """
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp_dir, target)
    _fsync_dir(target.parent)
    if old.exists():
        shutil.rmtree(old)


def save_checkpoint(model: DCALModel, folder: str | os.PathLike, extra: dict | None = None,
                    extra_files: dict[str, callable] | None = None) -> str:
    """Write ``model`` as a checkpoint folder and return its fingerprint.

    Args:
        model: the model (unwrapped from DDP).
        folder: destination folder; replaced atomically if it exists.
        extra: JSON-serialisable values stored in config.json (thresholds, training info).
        extra_files: file name -> function(path) writing an extra file into the
            folder before it is moved into place (for example training state).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        weights_path = tmp_dir / WEIGHTS_FILE
        save_file(inference_state_dict(model), str(weights_path), metadata={"format": "dcal"})
        fingerprint = file_sha256(weights_path)
        config = {
            "format_version": FORMAT_VERSION,
            "model": model.config.to_dict(),
            "embedding_size": model.embed_dim,
            "fingerprint": fingerprint,
            **(extra or {}),
        }
        with open(tmp_dir / CONFIG_FILE, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        for name, writer in (extra_files or {}).items():
            writer(tmp_dir / name)
        replace_dir_atomically(tmp_dir, folder)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return fingerprint


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Turn a checkpoint folder, a training run folder (its ``best/``) or a config path into a folder.

    Raises:
        FileNotFoundError: nothing at ``path`` looks like a checkpoint.
    """
    path = Path(path)
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    for candidate in (path, path / "best", path.with_name(path.name + ".old"), path / "best.old"):
        if (candidate / CONFIG_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"no dcal checkpoint at {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE} there or in its best/ "
        "folder; pass a checkpoint folder or the run folder written by dcal-train"
    )


def read_checkpoint_config(path: str | os.PathLike) -> dict:
    """Return the parsed config.json of a checkpoint folder (see :func:`resolve_checkpoint_dir`)."""
    folder = resolve_checkpoint_dir(path)
    try:
        with open(folder / CONFIG_FILE, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint config {folder / CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or "model" not in config or "fingerprint" not in config:
        raise ValueError(f"{folder / CONFIG_FILE} is not a dcal checkpoint config (no 'model' or 'fingerprint')")
    config["path"] = str(folder)
    return config


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    verify: bool = True) -> tuple[DCALModel, dict]:
    """Load a checkpoint folder into an inference model in eval mode.

    Returns:
        (model, config) where config is the parsed config.json plus ``path``.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: corrupt weights, a fingerprint mismatch or an unknown config.
    """
    config = read_checkpoint_config(path)
    folder = Path(config["path"])
    weights_path = folder / WEIGHTS_FILE
    if verify and file_sha256(weights_path) != config["fingerprint"]:
        raise ValueError(
            f"{weights_path} does not match the fingerprint in {folder / CONFIG_FILE}; "
            "the checkpoint is corrupt or was edited, copy it again from its source"
        )
    model_config = DCALConfig.from_dict({**config["model"], "weights": "none", "num_classes": 0})
    model = DCALModel(model_config)
    try:
        state = load_file(str(weights_path), device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError and OSError variants
        raise ValueError(f"could not read {weights_path}: {exc}") from exc
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not fit its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.to(map_location).eval()
    return model, config
