"""Shared setup of the pytest-benchmark suites: device choice, versions in the JSON's machine_info."""
from __future__ import annotations

import os

import pytest
import torch

DEVICE = torch.device(os.environ.get("PDGAN_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
if os.environ.get("PDGAN_BENCH_THREADS"):  # e.g. 1 on a shared machine: no thread oversubscription
    torch.set_num_threads(int(os.environ["PDGAN_BENCH_THREADS"]))


def pytest_benchmark_update_machine_info(config, machine_info):
    from pdgan_infer.bench import header
    info = header(DEVICE, ["(pytest benchmarks)"])
    machine_info["pdgan"] = {k: info[k] for k in ("device", "device_name", "torch_threads", "load_average",
                                                  "versions", "git_commit", "date")}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
