"""Timed calls: CUDA events on a GPU (on the device's stream), perf_counter on the CPU."""
from __future__ import annotations

import time
from typing import Any

import torch


def timed(fn, device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of fn(), synchronised; CUDA events on GPU, recorded on `device`'s stream."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, out
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out
