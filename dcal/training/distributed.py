"""Small helpers around torch.distributed, driven by torchrun's environment.

Nothing here runs at import time; ``main`` calls :func:`init_distributed`.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def is_launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> tuple[int, int, int]:
    """Start the process group when torchrun launched us; returns (rank, local_rank, world_size).

    NCCL serves CUDA devices and gloo serves the CPU.
    """
    if not is_launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 0, 1
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    # Validation runs on rank 0 while the others wait, so allow it time.
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
    return dist.get_rank(), local_rank, dist.get_world_size()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over processes (a copy; the input is left alone)."""
    if not is_distributed():
        return value.detach().clone()
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / get_world_size()


def broadcast_object(obj, src: int = 0):
    """Send a picklable object from ``src`` to every process; returns it everywhere.

    Only objects this process created travel this way, never data read from disk.
    """
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_object(obj) -> list:
    """Collect one picklable object per process on every process (rank order)."""
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
