"""Shared test setup: the native extension must load (unless PDGAN_SKIP_EXT=1), seeded RNGs, Triton's CPU
interpreter when there is no GPU, few threads."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

# Helper modules shared across test folders (philox_spec, triton_aot, tiny_models) live in tests/support.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

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


def _native_problem() -> str | None:
    """Why the native extension cannot be used (None when it can, or when PDGAN_SKIP_EXT=1 says that running
    without it is intended)."""
    import warnings

    with warnings.catch_warnings():  # its import warning is reported here instead
        warnings.simplefilter("ignore", RuntimeWarning)
        from pdgan_infer.kernels import native
    if native.skip_requested() or native.available():
        return None
    return native.unavailable_reason()


def pytest_report_header(config):
    from pdgan_infer.kernels import native
    if native.available():
        return f"pdgan native extension: loaded (CUDA kernels: {native.cuda_available()})"
    return f"pdgan native extension: NOT loaded, PDGAN_SKIP_EXT=1 ({native.unavailable_reason()})"


def pytest_sessionstart(session):
    """A missing, stale or broken native extension fails the run here, before anything is collected: otherwise
    every native test would skip and the suite would stay green. PDGAN_SKIP_EXT=1 is the one way to run
    without it (the native tests then skip, saying so)."""
    problem = _native_problem()
    if problem:
        pytest.exit(f"pdgan native extension unavailable: {problem}. Rebuild it, or set PDGAN_SKIP_EXT=1 to run "
                    "the suite without it on purpose.", returncode=1)


@pytest.fixture
def ieee_fp32():
    """float32 convolutions and matmuls in IEEE float32 while the test runs (torch's cuDNN default is TF32, which
    rounds inputs to 10 mantissa bits: paths that differ by the order of their roundings, e.g. a scale folded
    into a convolution's weights, then disagree by far more than float32 rounding)."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


@pytest.fixture
def torchscript_export():
    """ONNX graphs written by the TorchScript exporter (pdgan's fallback: seconds, where the dynamo exporter takes
    ~15-30 s per graph on 2 cores), for tests of what surrounds an export (caches, options, runners, commands); the
    dynamo graphs' parity with torch is tests/infer/test_export.py's, in the default suite."""
    from pdgan_infer.export import onnx as ox
    with pytest.MonkeyPatch.context() as m:  # its own: a test's monkeypatch.undo() leaves it in place
        m.setattr(ox, "dynamo_unavailable", lambda: "the test asked for the TorchScript exporter")
        yield


@pytest.fixture
def tiny(monkeypatch):
    """The "tiny" training preset (tests/support/tiny_models.py) registered while the test runs."""
    from tiny_models import TINY

    from pdgan_infer import PRESETS
    monkeypatch.setitem(PRESETS, "tiny", TINY)


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
