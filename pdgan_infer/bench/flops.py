"""FLOP counting (torch.utils.flop_counter) and the measured 3x3-convolution peak of this CPU."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from .timing import timed

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PEAK_SHAPE = (64, 256, 16, 16)  # conv peak micro-benchmark: N, C (in = out), H, W of a 3x3 conv, padding 1


def count_flops(fn, *inputs, only: str | None = None) -> int:
    """FLOPs of fn(*inputs) as torch.utils.flop_counter.FlopCounterMode counts them (convolutions and
    matrix products, 2 per multiply-add; elementwise work and norms are not counted); `only`: just the
    ops whose name contains it (e.g. "conv")."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*inputs)
    if only is None:
        return counter.get_total_flops()
    return sum(v for op, v in counter.get_flop_counts().get("Global", {}).items() if only in str(op))


def model_flops_per_image(model, only: str | None = None) -> int:
    """FLOPs of one image through the whole sampler: one batch-1 generator call times the NFE (T)."""
    c = model.config
    x = torch.zeros(1, c.channels, c.resolution, c.resolution)
    z, t = torch.zeros(1, c.generator.nz), torch.full((1,), float(model.schedule.T))
    generator = model.generator.to("cpu").eval()
    return count_flops(generator, x, z, t, only=only) * model.schedule.T


def conv_peak_gflops(dtype: torch.dtype, shape: tuple[int, int, int, int] | None = None, repeats: int = 3) -> float:
    """GFLOP/s of a 3x3 convolution (padding 1, C -> C channels) on the CPU with torch's threads: the best
    of NCHW and channels-last, the median of `repeats` calls after one warm-up each."""
    n, ch, h, w = shape or PEAK_SHAPE
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, ch, h, w, generator=gen).to(dtype)
    weight = (torch.randn(ch, ch, 3, 3, generator=gen) / (3 * ch ** 0.5)).to(dtype)
    flops = 2 * n * ch * ch * 9 * h * w
    best = 0.0
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            conv = functools.partial(torch.nn.functional.conv2d, x.contiguous(memory_format=fmt),
                                     weight.contiguous(memory_format=fmt), padding=1)
            conv()
            times = [timed(conv, torch.device("cpu"))[0] for _ in range(repeats)]
            best = max(best, flops / float(np.median(times)) / 1e9)
    return best


def conv_peak(shape: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
    """header["conv_peak"]: the measured float32 and bfloat16 3x3-conv peaks (GFLOP/s) on this CPU."""
    shape = shape or PEAK_SHAPE
    return {"shape": list(shape), "kernel": [3, 3], "threads": torch.get_num_threads(),
            "gflops": {name: conv_peak_gflops(DTYPES[name], shape) for name in ("float32", "bfloat16")}}



def add_flop_rates(rec: dict[str, Any], gflop_per_image: float | None, peaks: dict[str, float] | None) -> None:
    """achieved_gflops and fraction_of_conv_peak of one record (see the module doc)."""
    rec["gflop_per_image"] = gflop_per_image
    rec["achieved_gflops"] = rec["conv_peak_gflops"] = rec["fraction_of_conv_peak"] = None
    if gflop_per_image and rec.get("median_s"):
        rec["achieved_gflops"] = gflop_per_image * rec["n"] / rec["median_s"]
        peak = (peaks or {}).get(rec["dtype"])
        if peak:
            rec["conv_peak_gflops"], rec["fraction_of_conv_peak"] = peak, rec["achieved_gflops"] / peak

