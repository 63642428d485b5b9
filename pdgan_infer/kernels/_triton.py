"""Optional-dependency plumbing for the Triton kernels.

Triton is an optional extra (`pip install 'pdgan[triton]'`). It is probed with `find_spec`, so this
module and the kernel modules import without it; calling a Triton op without it raises an
ImportError that names the extra.

The kernel modules define their kernels at import when triton is installed; triton decides at that
moment whether `@triton.jit` compiles for the GPU or runs in its numpy interpreter, so on a machine
without CUDA, `TRITON_INTERPRET=1` must be set before `pdgan_infer.kernels.adagn` / `.posterior` are
imported (the test suite's conftest does this).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os

import torch

INSTALL_HINT = "pip install 'pdgan[triton]'"
HAS_TRITON: bool = importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def available() -> bool:
    """Triton is importable and can run here: a CUDA device, or the interpreter switched on."""
    return HAS_TRITON and (torch.cuda.is_available() or interpreting())


def require() -> None:
    """Raise a clear ImportError when triton is not installed."""
    if not HAS_TRITON:
        raise ImportError(f"the Triton kernels need the optional dependency triton: {INSTALL_HINT}")


def check_device(op: str, kernel: object, *tensors: torch.Tensor) -> None:
    """Check that `kernel` can run on the tensors' device: CUDA, or CPU under the interpreter
    (decided when the kernel module was imported)."""
    require()
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"{op}: all tensors must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    interpreted = type(kernel).__name__ == "InterpretedFunction"
    if device.type == "cuda" and not interpreted:
        return
    if device.type == "cpu" and interpreted:
        return
    if device.type == "cpu":
        raise RuntimeError(f"{op}: CPU tensors need Triton's interpreter; set TRITON_INTERPRET=1 "
                           "before importing pdgan_infer.kernels, or move the tensors to a CUDA device")
    raise RuntimeError(f"{op}: tensors on {device} cannot run these kernels "
                       f"({'interpreter' if interpreted else 'GPU'} mode); Triton needs CUDA tensors, "
                       "or CPU tensors with TRITON_INTERPRET=1")


def on_device(device: torch.device):
    """Context in which Triton launches for tensors on `device`: Triton (like CUDA graph capture) uses
    the *current* CUDA device, so tensors on cuda:1 with device 0 current would fault."""
    device = torch.device(device)
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.cuda.device(device)


class _MissingTriton:
    """Stands in for `triton` and `triton.language` when triton is absent, so the kernel modules can
    still be imported: only the names evaluated at definition time (the `jit` decorator and
    `tl.constexpr` annotations) exist; the launchers call `require()` before touching a kernel."""

    @staticmethod
    def constexpr(value=None):
        return value

    @staticmethod
    def jit(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)


def import_triton():
    """(triton, triton.language) when installed, otherwise a stand-in (see `_MissingTriton`)."""
    if HAS_TRITON:
        import triton
        import triton.language as tl
        return triton, tl
    missing = _MissingTriton()
    return missing, missing
