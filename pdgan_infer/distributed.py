"""Work split over torchrun processes, as pdgan-generate and pdgan-eval do it (EDM's generate.py rule).

    with process_group(device) as (rank, world):
        for batch in shard(batches, rank, world): ...

The seeds are cut into batches in the given order; rank r of K processes takes batches r, r + K,
r + 2K, ... (gloo on the CPU, NCCL on GPUs, one GPU per process), so every batch, and therefore every
image, is exactly what one process computes, bit for bit. Without torchrun (WORLD_SIZE unset or 1)
rank 0 of 1 does everything and nothing here touches torch.distributed.
"""
from __future__ import annotations

import contextlib
import os
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


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group) under torchrun; (0, 1, False) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

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
