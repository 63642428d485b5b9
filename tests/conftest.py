"""Shared test setup: seeded RNGs, Triton's CPU interpreter when there is no GPU, few threads."""
from __future__ import annotations

import os
import random

# Triton kernels run on the CPU through the interpreter; this must be set before triton is imported.
try:
    import torch as _torch
    _has_cuda = _torch.cuda.is_available()
except Exception:  # noqa: BLE001  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`):
    small models gain nothing from threads, and on a busy 2-core machine oversubscribed OpenMP threads
    stall (those tests ran 3-5x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
