"""pdgan_infer.distributed: the batch-dealing rule shared by pdgan-generate and pdgan-eval (EDM's), written
out by hand; one process touches no process group."""
from __future__ import annotations

import pytest
import torch

from pdgan_infer.distributed import broadcast_int, gather, process_group, process_rank, shard, sum_int
from pdgan_infer.generate import seed_batches


def test_batches_are_dealt_round_robin():
    seeds = [7, 3, 9, 1, 4, 8, 2]
    assert seed_batches(seeds, 3) == [[7, 3, 9], [1, 4, 8], [2]]
    assert seed_batches(seeds, 2, 0, 2) == [[7, 3], [4, 8]] and seed_batches(seeds, 2, 1, 2) == [[9, 1], [2]]
    assert seed_batches(seeds, 2, 2, 3) == [[4, 8]] and seed_batches(seeds, 5, 1, 3) == [[8, 2]]
    assert shard(range(5), 1, 2) == [1, 3] and shard([], 0, 4) == []
    for world in (1, 2, 3, 5):  # every batch goes to exactly one rank
        dealt = sorted(s for r in range(world) for b in seed_batches(seeds, 2, r, world) for s in b)
        assert dealt == sorted(seeds)


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group(torch.device("cpu")) as (rank, world):
        assert (rank, world) == (0, 1) and not torch.distributed.is_initialized()
        assert sum_int(5, world, torch.device("cpu")) == 5 and broadcast_int(3, world, torch.device("cpu")) == 3
        assert gather({"a": 1}, world) == [{"a": 1}]


@pytest.mark.parametrize("value, rank", [(None, 0), ("0", 0), ("1", 1), (" 7 ", 7), ("", 0), ("x", 0), ("-1", 0)])
def test_process_rank_reads_torchrun_s_rank(monkeypatch, value, rank):
    if value is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", value)
    assert process_rank() == rank
