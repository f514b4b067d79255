"""Training state for ``--resume``: optimiser, scheduler, scaler, counters and RNG.

The state is a ``torch.save`` file inside the ``last/`` checkpoint folder,
holding only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` and never unpickles arbitrary objects.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "training_state.pt"


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_state(path: Path, state: dict) -> None:
    """Write the state file and flush it to disk (the caller renames the folder into place)."""
    with open(path, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())


def read_state(folder: str | os.PathLike) -> dict:
    """Read ``training_state.pt`` from a checkpoint folder.

    Raises:
        FileNotFoundError: the folder has no training state (an inference-only checkpoint).
    """
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --resume needs the last/ folder of an earlier dcal-train run")
    return torch.load(path, map_location="cpu", weights_only=True)
