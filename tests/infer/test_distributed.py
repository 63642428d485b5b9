"""pdgan_infer.distributed: the batch-dealing rule shared by pdgan-generate and pdgan-eval (EDM's), written
out by hand; one process touches no process group."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pdgan_infer.distributed import broadcast_int, gather, process_group, process_rank, shard, sum_int
from pdgan_infer.generate import seed_batches

ROOT = Path(__file__).resolve().parents[2]


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


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its new parent to reap it counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_that_asked_dies_with_its_killed_parent(tmp_path):
    """A parent starts two children, one calling die_with_parent(), and is SIGKILLed (as a killed torchrun):
    the armed child gets SIGTERM and exits, the other lives on (torchrun's ranks did, and kept writing)."""
    child = ("import sys, time; from pdgan_infer.distributed import die_with_parent\n"
             "armed = sys.argv[1] == 'armed' and die_with_parent()\n"
             "print(sys.argv[1], armed, flush=True); time.sleep(60)")
    parent = ("import subprocess, sys, time\n"
              f"kids = [subprocess.Popen([sys.executable, '-c', {child!r}, a]) for a in ('armed', 'plain')]\n"
              "print(*(k.pid for k in kids), flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    armed = plain = None
    try:
        armed, plain = map(int, proc.stdout.readline().split())
        assert sorted(proc.stdout.readline().split()[0] for _ in range(2)) == ["armed", "plain"]
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while not _gone(armed) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(armed), "the child that called die_with_parent outlived its killed parent"
        time.sleep(0.3)
        assert not _gone(plain)  # the control: without the call a child outlives its parent
    finally:
        proc.kill()
        for pid in (armed, plain):
            if pid is not None and not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_torchrun_ranks_ask_to_die_with_torchrun(monkeypatch):
    import pdgan_infer.distributed as distributed
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "die_with_parent", lambda: calls.append("armed") or True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", calls.append)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    assert distributed.init_distributed(torch.device("cpu")) == (1, 2, True)
    assert calls == ["armed", "gloo"]
