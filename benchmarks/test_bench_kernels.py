"""Fused kernels against the unfused torch sequences they replace, at the real UNet shapes.

    python -m pytest benchmarks/test_bench_kernels.py --benchmark-json=benchmarks/results/DATE-MACHINE-cpu-kernels.json

Providers: "torch" (the unfused sequence: `kernels.reference.adagn_silu_unfused`, the posterior
arithmetic c1 x0 + c2 x_t + sigma eps as three torch ops), "native" (`pdgan_infer.kernels.native`,
C++ on the CPU / CUDA on GPU) and "triton" (`kernels.adagn`, `kernels.posterior`; CUDA only: the
CPU interpreter says nothing about speed). Shapes: the AdaGN inputs that occur most in the cifar10
and celebahq256 generators (count per generator call in the label) at batch PDGAN_BENCH_BATCH
(default 100 on GPU; 8 for cifar10 shapes and 1 for celebahq256 shapes on the CPU). extra_info has
the minimum bytes moved (read x, write y: the effective bandwidth; plans that read x twice move up to
1.5x that), so `make_table.py` reports GB/s. AdaGN runs in both layouts, channels_last first: the engine's
generator keeps its activations channels_last (optimize.FastGenerator), so that is the production path.
Every benchmarked result is checked once against the float64 reference: the fused kernels within half an
ulp of the dtype (`reference.adagn_silu_ulp_error`), the unfused baseline within a few of them.
"""
from __future__ import annotations

import importlib
import os

import pytest
import torch

from pdgan_infer.kernels.reference import (
    FP32_SLACK,
    adagn_silu_f64,
    adagn_silu_ulp_error,
    adagn_silu_unfused,
    posterior_step_ulp_error,
    ulp,
)

DEVICE = torch.device(os.environ.get("PDGAN_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
GPU = DEVICE.type == "cuda"

# label -> (C, H, W, groups, preset); "xK": K calls per generator forward
ADAGN_SHAPES = {
    "cifar10 128x32x32 x8": (128, 32, 32, 32, "cifar10"),
    "cifar10 384x32x32 x1": (384, 32, 32, 32, "cifar10"),
    "cifar10 256x16x16 x9": (256, 16, 16, 32, "cifar10"),
    "cifar10 256x8x8 x11": (256, 8, 8, 32, "cifar10"),
    "cifar10 256x4x4 x13": (256, 4, 4, 32, "cifar10"),
    "celebahq256 64x256x256 x9": (64, 256, 256, 16, "celebahq256"),
    "celebahq256 128x256x256 x3": (128, 256, 256, 32, "celebahq256"),
    "celebahq256 64x128x128 x10": (64, 128, 128, 16, "celebahq256"),
}
POSTERIOR_SHAPES = {"cifar10 3x32x32": (3, 32, 32), "celebahq256 3x256x256": (3, 256, 256)}  # batch 100
DTYPES = [torch.float32, torch.float16] if GPU else [torch.float32, torch.bfloat16]
C1, C2, SIGMA = 0.6, 0.3, 0.5  # any posterior coefficients: the arithmetic is the same
LAYOUTS = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}  # the engine's layout first
CHECK_IMAGES = 2  # images of the batch checked against the float64 reference (it costs more than the kernel)


def batch(preset: str) -> int:
    if os.environ.get("PDGAN_BENCH_BATCH"):
        return int(os.environ["PDGAN_BENCH_BATCH"])
    return 100 if GPU else (8 if preset == "cifar10" else 1)


def provider(name: str, op: str):
    """The kernel `op` of provider `name`, or skip with the reason."""
    if name == "torch":
        return adagn_silu_unfused if op == "adagn_silu" else posterior_unfused
    if name == "triton":
        if not GPU:
            pytest.skip("triton kernels are benchmarked on CUDA only (the CPU interpreter is not a speed)")
        try:
            mod = importlib.import_module("pdgan_infer.kernels.adagn" if op == "adagn_silu" else
                                          "pdgan_infer.kernels.posterior")
        except ImportError as e:
            pytest.skip(f"triton kernels unavailable: {e}")
        return getattr(mod, op)
    try:
        native = importlib.import_module("pdgan_infer.kernels.native")
    except ImportError as e:
        pytest.skip(f"pdgan_infer.kernels.native unavailable: {e}")
    if hasattr(native, "available") and not native.available():
        pytest.skip(f"native kernels unavailable: {native.unavailable_reason()}")
    return getattr(native, op)


def posterior_unfused(x0, xt, c1, c2, sigma, noise=None):
    """The posterior arithmetic as torch ops (what the fused kernels replace)."""
    return c1 * x0 + c2 * xt + sigma * noise


def run(benchmark, fn):
    def call():
        out = fn()
        if GPU:
            torch.cuda.synchronize(DEVICE)
        return out
    return benchmark(call)


def check_adagn(name, y, x, gamma, beta, groups):
    """The benchmarked output against float64, on the first CHECK_IMAGES images: the fused kernels within half
    an ulp (GPU: twice the float32 allowance, for the approximate exp / rsqrt), the unfused torch sequence
    within TORCH_ULPS of the magnitudes it rounds (it rounds after every op). Returns the worst error in ulps."""
    k = min(CHECK_IMAGES, x.shape[0])
    y, x, gamma, beta = (t[:k].cpu() for t in (y, x, gamma, beta))
    if name == "torch":
        ref, scale = adagn_silu_f64(x, gamma.float(), beta.float(), groups)
        return check_torch(y, ref, scale)
    slack = FP32_SLACK * (2 if GPU else 1)
    worst = adagn_silu_ulp_error(y, x, gamma.float(), beta.float(), groups, fp32_slack=slack).max().item()
    assert worst <= 0.5, f"{name}: an element is {worst:.3f} ulp of {y.dtype} off (round to nearest: <= 0.5)"
    return worst


TORCH_ULPS = {torch.float32: 256, torch.float16: 4, torch.bfloat16: 4}  # torch's fp32 group_norm: ~2**-16


def check_torch(y, ref, scale):
    """The unfused baseline: |y - ref| within TORCH_ULPS ulps of `scale` (the magnitudes its ops round)."""
    worst = ((y.double() - ref).abs() / ulp(scale, y.dtype)).max().item()
    assert worst <= TORCH_ULPS[y.dtype], f"unfused torch is {worst:.2f} ulps of the scale off"
    return worst


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("label", list(ADAGN_SHAPES))
@pytest.mark.parametrize("name", ["torch", "native", "triton"])
def test_adagn_silu(benchmark, name, label, layout, dtype):
    c, h, w, groups, preset = ADAGN_SHAPES[label]
    n = batch(preset)
    fn = provider(name, "adagn_silu")
    x = torch.randn(n, c, h, w, device=DEVICE, dtype=dtype).contiguous(memory_format=LAYOUTS[layout])
    # float32 style, as the engine's fused backends pass it (the torch sequence casts it to x's dtype)
    gamma = 1 + 0.1 * torch.randn(n, c, device=DEVICE)
    beta = 0.1 * torch.randn(n, c, device=DEVICE)
    benchmark.group = f"adagn_silu {label} {layout} {str(dtype).replace('torch.', '')}"
    benchmark.extra_info.update(op="adagn_silu", provider=name, shape=[n, c, h, w], layout=layout, dtype=str(dtype),
                                device=str(DEVICE), bytes=2 * x.numel() * x.element_size())
    if name == "triton":  # review 2.2: Cg = 4 in channels_last runs G_BLOCK > 1 groups per program
        plan = importlib.import_module("pdgan_infer.kernels.adagn").adagn_plan(x.shape, dtype, groups,
                                                                               layout == "channels_last")
        benchmark.extra_info.update(path=plan.path, g_block=plan.g_block)
    y = run(benchmark, lambda: fn(x, gamma, beta, groups, 1e-6))
    assert y.shape == x.shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=LAYOUTS[layout]) or name == "torch"
    benchmark.extra_info["max_error_ulps"] = check_adagn(name, y, x, gamma, beta, groups)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("label", list(POSTERIOR_SHAPES))
@pytest.mark.parametrize("name", ["torch", "native", "triton"])
def test_posterior_step(benchmark, name, label, dtype):
    c, h, w = POSTERIOR_SHAPES[label]
    n = 100 if not os.environ.get("PDGAN_BENCH_BATCH") else int(os.environ["PDGAN_BENCH_BATCH"])
    fn = provider(name, "posterior_step")
    x0, xt, noise = (torch.randn(n, c, h, w, device=DEVICE, dtype=dtype) for _ in range(3))
    benchmark.group = f"posterior_step {label} {str(dtype).replace('torch.', '')}"
    benchmark.extra_info.update(op="posterior_step", provider=name, shape=[n, c, h, w], dtype=str(dtype),
                                device=str(DEVICE), bytes=4 * x0.numel() * x0.element_size())
    y = run(benchmark, lambda: fn(x0, xt, C1, C2, SIGMA, noise=noise))
    assert y.shape == x0.shape and y.dtype == dtype
    k = min(CHECK_IMAGES, n)  # against float64
    y, x0, xt, noise = (t[:k].cpu() for t in (y, x0, xt, noise))
    if name == "torch":  # it rounds after each of its 5 ops
        terms = (C1 * x0.double(), C2 * xt.double(), SIGMA * noise.double())
        worst = check_torch(y, sum(terms), sum(t.abs() for t in terms))
    else:
        worst = posterior_step_ulp_error(y, x0, xt, C1, C2, SIGMA, noise).max().item()
        assert worst <= 0.5, f"{name}: an element is {worst:.3f} ulp of {dtype} off (round to nearest: <= 0.5)"
    benchmark.extra_info["max_error_ulps"] = worst
