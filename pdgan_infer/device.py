"""`resolve_device`: the one place that turns a device argument into a `torch.device`.

"auto" (or None) is CUDA when a GPU is present, else the CPU; under torchrun (`LOCAL_RANK` set) "auto"
and a bare "cuda" mean this process's GPU, cuda:$LOCAL_RANK. The Engine, pdgan-generate, pdgan-eval,
pdgan-edit and pdgan-bench all use it, so they agree on what "auto" means.
"""
from __future__ import annotations

import os

import torch

from .errors import PDGANError


class DeviceError(PDGANError, ValueError):
    """The device cannot be used here (unknown name, or CUDA asked for where there is none)."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = "cuda"
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise DeviceError(f"invalid device {device!r}: {e}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {dev} is not supported; use 'auto', 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r} requested but CUDA is not available here; use device='cpu'")
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev
