"""Work split over torchrun processes, as pdgan-generate and pdgan-eval do it (EDM's generate.py rule).

    with process_group(device) as (rank, world):
        for batch in shard(batches, rank, world): ...

The seeds are cut into batches in the given order; rank r of K processes takes batches r, r + K,
r + 2K, ... (gloo on the CPU, NCCL on GPUs, one GPU per process), so every batch, and therefore every
image, is exactly what one process computes, bit for bit. Without torchrun (WORLD_SIZE unset or 1)
rank 0 of 1 does everything and nothing here touches torch.distributed.

A torchrun rank asks the kernel for SIGTERM when its parent (the torchrun agent) dies (`die_with_parent`):
torchrun stops its ranks when it exits, but a SIGKILLed torchrun cannot, and its ranks would go on writing.
pdgan-serve's tritonserver child uses the same call.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def process_rank() -> int:
    """This process's rank under torchrun ($RANK), 0 otherwise. It holds before any process group exists, so
    logging and progress use it to let rank 0 alone report (`pdgan_infer._cli.setup_logging`,
    `pdgan_infer.progress`)."""
    text = os.environ.get("RANK", "").strip()
    return int(text) if text.isdigit() else 0


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send `sig` to this process when its parent exits (Linux `prctl(PR_SET_PDEATHSIG)`; safe
    between fork and exec). A parent that died before the request took effect (this process was already
    re-parented) gets the signal sent at once. False where the platform has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) under torchrun; (0, 1, False) otherwise.
    A torchrun rank also dies with its parent (`die_with_parent`). Sets the CUDA device and picks the backend
    (NCCL for CUDA, gloo for the CPU) from `device`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    die_with_parent()
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[int, int]]:
    """(rank, world) for the body; a process group this started is destroyed at the end."""
    rank, world, started = init_distributed(device)
    try:
        yield rank, world
    finally:
        if started:
            torch.distributed.destroy_process_group()


def shard(batches: Sequence[T], rank: int, world: int) -> list[T]:
    """This process's share of `batches`: batches rank, rank + world, ..."""
    return list(batches[rank::world])


def barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _tensor(value: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([value], dtype=torch.int64, device=device if device.type == "cuda" else "cpu")


def sum_int(value: int, world: int, device: torch.device) -> int:
    """`value` summed over the processes."""
    if world == 1:
        return value
    t = _tensor(value, device)
    torch.distributed.all_reduce(t)
    return int(t.item())


def broadcast_int(value: int, world: int, device: torch.device) -> int:
    """Rank 0's `value` on every process."""
    if world == 1:
        return value
    t = _tensor(value, device)
    torch.distributed.broadcast(t, 0)
    return int(t.item())


def gather(obj: Any, world: int) -> list[Any]:
    """Every process's `obj` (picklable), in rank order, on every process."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out
