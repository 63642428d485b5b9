"""Triton kernels (fused AdaGN + SiLU, fused posterior step) against float64 references.

Without CUDA the kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1, set by conftest.py and
again here so the file also runs alone), bfloat16 included; the largest shape is marked slow.
Tolerance: every output element within half an ulp of its dtype around the exact (float64) value for the
given inputs, after a float32 allowance (`reference.adagn_silu_ulp_error`), as for the native kernels.
One exception, measured: the interpreter's float32 -> bfloat16 cast truncates (100% of elements match
truncation), so interpreted bfloat16 is allowed one ulp; on a GPU (round to nearest) it is half an ulp.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

pytest.importorskip("triton", reason="triton is not installed: pip install 'pdgan[triton]'")

from pdgan_infer.kernels import _triton  # noqa: E402
from pdgan_infer.kernels import adagn as adagn_module  # noqa: E402
from pdgan_infer.kernels.adagn import adagn_plan, adagn_silu  # noqa: E402
from pdgan_infer.kernels.posterior import posterior_step  # noqa: E402
from pdgan_infer.kernels.reference import (  # noqa: E402
    FP32_SLACK,
    adagn_silu_f64,
    adagn_silu_ref,
    adagn_silu_ulp_error,
    posterior_step_ref,
    posterior_step_ulp_error,
)

if not _triton.available():
    pytest.skip("Triton cannot run here: no CUDA device and TRITON_INTERPRET unset",
                allow_module_level=True)

INTERPRET = _triton.interpreting()
DEVICE = "cpu" if INTERPRET else "cuda"
if not INTERPRET:  # on a GPU every test here runs there: `make gpu-check` selects them with -m gpu
    pytestmark = pytest.mark.gpu
SLOW_ON_CPU = [pytest.mark.slow] if INTERPRET else []
gpu_only = pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(), reason="needs a CUDA GPU")

# (dtype, max error in ulps of the dtype): round to nearest is <= 0.5; the interpreter truncates to bfloat16
DTYPES = [
    pytest.param(torch.float32, 0.5, id="fp32"),
    pytest.param(torch.float16, 0.5, id="fp16"),
    pytest.param(torch.bfloat16, 1.0 if INTERPRET else 0.5, id="bf16"),
]
LAYOUTS = [pytest.param(False, id="nchw"), pytest.param(True, id="channels_last")]
SHAPES = [  # (N, C, H, W, G)
    pytest.param((1, 4, 1, 1, 2), id="minimal"),
    pytest.param((3, 12, 7, 5, 3), id="odd"),
    pytest.param((2, 128, 32, 32, 32), id="cifar10-32x32"),
    pytest.param((2, 256, 16, 16, 32), id="cifar10-16x16"),
    pytest.param((2, 256, 8, 8, 32), id="cifar10-8x8"),
    pytest.param((1, 256, 4, 4, 32), id="cifar10-4x4"),
    pytest.param((1, 64, 256, 256, 16), id="celebahq256-256x256", marks=SLOW_ON_CPU),
]


def make_adagn_inputs(shape, dtype, channels_last):
    n, c, h, w, _ = shape
    x = (torch.randn(n, c, h, w, device=DEVICE) * 2.0 + 0.5).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    # (gamma, beta) = strided halves of the style Linear's float32 output, as the fused backends pass them
    style = torch.randn(n, 2 * c, device=DEVICE) * 0.5
    gamma, beta = (style + torch.cat([torch.ones(c, device=DEVICE), torch.zeros(c, device=DEVICE)])).chunk(2, dim=1)
    return x, gamma, beta


def assert_adagn_close(y, x, gamma, beta, num_groups, max_ulps, eps=1e-6):
    assert y.shape == x.shape and y.dtype == x.dtype and y.stride() == x.stride()
    slack = FP32_SLACK * (1 if INTERPRET else 2)  # the GPU's tl.exp / tl.rsqrt are approximate
    err = adagn_silu_ulp_error(y.cpu(), x.cpu(), gamma.float().cpu(), beta.float().cpu(), num_groups, eps,
                               fp32_slack=slack)
    worst = err.max().item()
    assert worst <= max_ulps, f"an element is {worst:.3f} ulp of {y.dtype} off (allowed {max_ulps})"


# --- fused AdaGN + SiLU -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, max_ulps", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_adagn_silu(shape, channels_last, dtype, max_ulps):
    x, gamma, beta = make_adagn_inputs(shape, dtype, channels_last)
    assert_adagn_close(adagn_silu(x, gamma, beta, shape[-1]), x, gamma, beta, shape[-1], max_ulps)


@pytest.mark.parametrize("dtype, max_ulps", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("eps", [0.1, 1e-6])
def test_adagn_silu_eps_on_near_constant_groups(eps, channels_last, dtype, max_ulps):
    """Groups of variance ~1e-6 (float32) or exactly 0 (16-bit inputs), where eps sets the scale, beside a
    group of ordinary data; single and split paths."""
    n, c, h, w, g = 2, 8, 6, 5, 4
    x = (torch.randn(n, g, 1, 1, 1) * 2.0 + 1e-3 * torch.randn(n, g, c // g, h, w)).reshape(n, c, h, w)
    x[:, : c // g] = torch.randn(n, c // g, h, w)
    x = x.to(DEVICE, dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    gamma, beta = torch.randn(n, c, device=DEVICE) * 0.5 + 1.0, torch.randn(n, c, device=DEVICE)
    if channels_last:  # Cg = 2: the automatic single path is the wide kernel, all 4 groups in one program
        assert adagn_plan(x.shape, dtype, g, True).g_block == 4
    paths = [dict(split=False), dict(split=True, tile=16)]  # single: the wide kernel in channels_last
    for path in paths + ([dict(split=False, g_block=2)] if channels_last else []):
        y = adagn_silu(x, gamma, beta, g, eps=eps, **path)
        assert_adagn_close(y, x, gamma, beta, g, max_ulps, eps=eps)
        if eps == 0.1 and dtype == torch.float32:  # the exact value depends on eps at this scale
            wrong, _ = adagn_silu_f64(x.cpu(), gamma.cpu(), beta.cpu(), g, 1e-6)
            assert (y.cpu().double() - wrong).abs().max().item() > 1e-2


# channels_last groups narrower than a 32-byte sector: one program covers G_BLOCK whole groups, a run of
# G_BLOCK * Cg contiguous channels per pixel. Expected G_BLOCK by hand: double while G_BLOCK <= G, the run
# <= 128 bytes and next_pow2(G_BLOCK * Cg) * next_pow2(H * W) <= SINGLE_MAX (8192).
PLAN_CASES = [  # (N, C, H, W, G), dtype, channels_last, expected (path, g_block)
    pytest.param((100, 128, 32, 32, 32), torch.float32, True, ("single", 2), id="cifar10-128x32x32-fp32"),
    pytest.param((100, 128, 32, 32, 32), torch.bfloat16, True, ("single", 2), id="cifar10-128x32x32-bf16"),
    pytest.param((8, 64, 16, 16, 16), torch.float32, True, ("single", 8), id="c64-g16-16x16-fp32"),
    pytest.param((8, 64, 16, 16, 16), torch.float16, True, ("single", 8), id="c64-g16-16x16-fp16"),
    pytest.param((2, 64, 8, 8, 16), torch.bfloat16, True, ("single", 16), id="c64-g16-8x8-bf16"),
    pytest.param((2, 24, 5, 3, 6), torch.float32, True, ("single", 4), id="g6-fp32"),
    pytest.param((100, 256, 8, 8, 32), torch.bfloat16, True, ("single", 8), id="cg8-bf16"),
    pytest.param((100, 256, 8, 8, 32), torch.float32, True, ("single", 1), id="cg8-fp32-is-a-sector"),
    pytest.param((100, 128, 32, 32, 32), torch.float32, False, ("single", 1), id="nchw-unchanged"),
    pytest.param((8, 64, 256, 256, 16), torch.bfloat16, True, ("split", 16), id="celebahq-split"),
]


@pytest.mark.parametrize("shape, dtype, channels_last, expected", PLAN_CASES)
def test_adagn_plan_widens_narrow_channels_last_groups(shape, dtype, channels_last, expected):
    assert tuple(adagn_plan(shape[:4], dtype, shape[4], channels_last)) == expected


WIDE_CASES = [  # (N, C, H, W, G), g_block (None: the plan's)
    pytest.param((2, 64, 8, 8, 16), None, id="c64-g16"),
    pytest.param((2, 24, 5, 3, 6), None, id="g6-blocks-of-4"),
    pytest.param((3, 12, 7, 5, 3), 2, id="odd-g3-blocks-of-2"),
]


@pytest.mark.parametrize("dtype, max_ulps", DTYPES)
@pytest.mark.parametrize("shape, g_block", WIDE_CASES)
def test_adagn_silu_wide_single_path(monkeypatch, shape, g_block, dtype, max_ulps):
    """The wide kernel (seen by its launch grid: N * cdiv(G, G_BLOCK) programs), including a last program with
    fewer than G_BLOCK groups, within half an ulp of float64 (the cifar10 128x32x32 case is in test_adagn_silu)."""
    launched, real = [], adagn_module._adagn_silu_wide_kernel

    class Spy:
        def __getitem__(self, grid):
            launched.append(grid)
            return real[grid]
    monkeypatch.setattr(adagn_module, "_adagn_silu_wide_kernel", Spy())
    x, gamma, beta = make_adagn_inputs(shape, dtype, True)
    gb = g_block or adagn_plan(x.shape, dtype, shape[-1], True).g_block
    assert gb > 1
    y = adagn_silu(x, gamma, beta, shape[-1], g_block=g_block)
    assert launched == [(shape[0] * -(-shape[-1] // gb),)]
    assert_adagn_close(y, x, gamma, beta, shape[-1], max_ulps)


def test_adagn_silu_rejects_bad_g_block():
    x, gamma, beta = make_adagn_inputs((2, 16, 4, 4, 4), torch.float32, False)
    with pytest.raises(ValueError, match="g_block must be a power of two"):
        adagn_silu(x, gamma, beta, 4, g_block=2)  # NCHW
    with pytest.raises(ValueError, match="g_block must be a power of two"):
        adagn_silu(x.to(memory_format=torch.channels_last), gamma, beta, 4, g_block=3)


SPLIT_CASES = [  # (N, C, H, W, G), tile: several tiles per group; groups wider than a tile
    pytest.param((3, 12, 7, 5, 3), 32, id="odd-tile32"),
    pytest.param((2, 32, 12, 12, 4), 256, id="medium-tile256"),
    pytest.param((1, 16, 3, 3, 1), 8, id="group-wider-than-tile"),
]


@pytest.mark.parametrize("dtype, max_ulps", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("shape, tile", SPLIT_CASES)
def test_adagn_silu_split_path(shape, tile, channels_last, dtype, max_ulps):
    x, gamma, beta = make_adagn_inputs(shape, dtype, channels_last)
    y = adagn_silu(x, gamma, beta, shape[-1], split=True, tile=tile)
    assert_adagn_close(y, x, gamma, beta, shape[-1], max_ulps)


@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_adagn_silu_automatic_split_with_the_default_tile(monkeypatch, channels_last):
    """A group of 4 x 48 x 48 = 9216 elements is past the single path's limit: the automatic choice takes the
    split path with the default tile (seen by the launches), and the result is within half an ulp."""
    launched, real = [], adagn_module._stats_kernel

    class Spy:  # the split path's first launch: _stats_kernel[grid](...)
        def __getitem__(self, grid):
            launched.append(grid)
            return real[grid]
    monkeypatch.setattr(adagn_module, "_stats_kernel", Spy())
    x, gamma, beta = make_adagn_inputs((1, 8, 48, 48, 2), torch.float32, channels_last)
    assert_adagn_close(adagn_silu(x, gamma, beta, 2), x, gamma, beta, 2, 0.5)
    assert launched, "the automatic choice did not take the split path"


@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_adagn_silu_split_merges_in_blocks(monkeypatch, channels_last):
    """Finalize merges the partials (18 here) and writes the channels (16) in blocks of 4."""
    monkeypatch.setattr(adagn_module, "MERGE_BLOCK", 4)
    shape = (1, 16, 3, 3, 1)
    x, gamma, beta = make_adagn_inputs(shape, torch.float32, channels_last)
    assert_adagn_close(adagn_silu(x, gamma, beta, 1, split=True, tile=8), x, gamma, beta, 1, 0.5)


@pytest.mark.parametrize("split", [False, True], ids=["single", "split"])
def test_adagn_silu_large_mean_is_stable(split):
    """|mean| / std = 100 (where E[x^2] - E[x]^2 in float32 is off by ~0.1% of the variance): within half an
    ulp of the float64 value after the float32 allowance (which covers the rounding of mean * a)."""
    x, gamma, beta = make_adagn_inputs((2, 8, 16, 16, 2), torch.float32, False)
    x = (x - 0.5) * 0.05 + 10.0
    assert_adagn_close(adagn_silu(x, gamma, beta, 2, split=split, tile=256), x, gamma, beta, 2, 0.5)


def test_adagn_silu_other_layout_is_copied():
    x, gamma, beta = make_adagn_inputs((2, 8, 6, 10, 4), torch.float32, False)
    x = x[..., ::2]  # neither NCHW- nor channels_last-contiguous
    y = adagn_silu(x, gamma, beta, 4)
    assert y.is_contiguous()
    torch.testing.assert_close(y, adagn_silu_ref(x, gamma, beta, 4), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("make_args, match", [
    (lambda x, g, b: (x, g[:, :4], b, 4), "gamma must have shape"),
    (lambda x, g, b: (x, g, b[:1], 4), "beta must have shape"),
    (lambda x, g, b: (x, g, b, 3), "not divisible by num_groups"),
    (lambda x, g, b: (x, g, b, 0), "not divisible by num_groups"),
    (lambda x, g, b: (x.to(torch.int32), g, b, 4), "dtype must be one of"),
    (lambda x, g, b: (x, g.to(torch.int64), b, 4), "gamma must be a float tensor"),
    (lambda x, g, b: (x[0], g, b, 4), r"must be \(N, C, H, W\)"),
], ids=["gamma-shape", "beta-shape", "groups-do-not-divide", "zero-groups", "int-x", "int-gamma", "3d-x"])
def test_adagn_silu_rejects_bad_input(make_args, match):
    x, gamma, beta = make_adagn_inputs((2, 8, 4, 4, 4), torch.float32, False)
    with pytest.raises(ValueError, match=match):
        adagn_silu(*make_args(x, gamma, beta))


def test_adagn_silu_rejects_bad_path_options():
    x, gamma, beta = make_adagn_inputs((1, 8, 64, 64, 2), torch.float32, False)  # group of 4 x 4096
    with pytest.raises(ValueError, match="too big for the single path"):
        adagn_silu(x, gamma, beta, 2, split=False)
    with pytest.raises(ValueError, match="power of two"):
        adagn_silu(x[:, :, :4, :4], gamma, beta, 2, split=True, tile=3)


@gpu_only
@pytest.mark.gpu
@pytest.mark.parametrize("dtype, max_ulps", DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_adagn_silu_celebahq_batch_gpu(channels_last, dtype, max_ulps):
    shape = (8, 64, 256, 256, 16)
    x, gamma, beta = make_adagn_inputs(shape, dtype, channels_last)
    assert_adagn_close(adagn_silu(x, gamma, beta, 16), x, gamma, beta, 16, max_ulps)


@gpu_only
@pytest.mark.gpu
@pytest.mark.slow
def test_adagn_silu_beyond_int32_elements_gpu():
    """N * C * H * W > 2**31 (per-image offsets stay int32, the batch offset is int64)."""
    n, c, r, g = 520, 64, 256, 16
    x = torch.randn(n, c, r, r, device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
    gamma = torch.randn(n, c, device="cuda", dtype=torch.float16)
    beta = torch.randn(n, c, device="cuda", dtype=torch.float16)
    y = adagn_silu(x, gamma, beta, g)
    assert_adagn_close(y[-2:], x[-2:], gamma[-2:], beta[-2:], g, 0.5)


# --- posterior step -----------------------------------------------------------------------------
POSTERIOR_SHAPES = [
    pytest.param((3, 5, 7), id="odd"),
    pytest.param((2, 3, 32, 32), id="cifar10"),
    pytest.param((1, 3, 256, 256), id="celebahq256"),
]
C1, C2, SIGMA = 0.3, 0.9, 0.25


@pytest.mark.parametrize("dtype, max_ulps", DTYPES)
@pytest.mark.parametrize("shape", POSTERIOR_SHAPES)
def test_posterior_step_with_noise(shape, dtype, max_ulps):
    x0, xt, noise = (torch.randn(shape, device=DEVICE).to(dtype) for _ in range(3))
    y = posterior_step(x0, xt, C1, C2, SIGMA, noise=noise).cpu()
    worst = posterior_step_ulp_error(y, x0.cpu(), xt.cpu(), C1, C2, SIGMA, noise.cpu()).max().item()
    assert worst <= max_ulps, f"an element is {worst:.3f} ulp of {dtype} off (allowed {max_ulps})"


def test_posterior_step_keeps_channels_last():
    x0, xt, noise = (torch.randn(2, 3, 8, 8, device=DEVICE).to(memory_format=torch.channels_last)
                     for _ in range(3))
    y = posterior_step(x0, xt, C1, C2, SIGMA, noise=noise)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, posterior_step_ref(x0, xt, C1, C2, SIGMA, noise))
    mixed = posterior_step(x0, xt.contiguous(), C1, C2, SIGMA, noise=noise)  # no shared layout: copied
    torch.testing.assert_close(mixed, posterior_step_ref(x0, xt, C1, C2, SIGMA, noise))


def test_posterior_step_sigma_zero_has_no_noise_term():
    x0, xt = torch.randn(2, 3, 5, 5, device=DEVICE), torch.randn(2, 3, 5, 5, device=DEVICE)
    nan_noise = torch.full_like(x0, float("nan"))  # never read when sigma == 0
    expected = posterior_step_ref(x0, xt, C1, C2, 0.0, None)
    torch.testing.assert_close(posterior_step(x0, xt, C1, C2, 0.0, noise=nan_noise), expected)
    torch.testing.assert_close(posterior_step(x0, xt, C1, C2, 0.0), expected)


def test_posterior_step_in_kernel_noise_is_seeded():
    x0, xt = torch.randn(2, 3, 16, 16, device=DEVICE), torch.randn(2, 3, 16, 16, device=DEVICE)
    a = posterior_step(x0, xt, C1, C2, SIGMA, seed=1234)
    assert torch.equal(a, posterior_step(x0, xt, C1, C2, SIGMA, seed=1234))
    b = posterior_step(x0, xt, C1, C2, SIGMA, seed=1235)
    assert (a != b).float().mean().item() > 0.99
    big = posterior_step(x0, xt, C1, C2, SIGMA, seed=2**40 + 7)  # 64-bit seeds
    assert (a != big).float().mean().item() > 0.99
    # the noise depends on (seed, index), not on the dtype
    half = posterior_step(x0.half(), xt.half(), C1, C2, SIGMA, seed=1234)
    torch.testing.assert_close(half.float(), a, atol=4e-3, rtol=2e-3)


@pytest.mark.parametrize("offset", [0, 3, 2**34 + 1])
def test_posterior_step_in_kernel_noise_is_the_philox_stream(offset):
    """Seed mode adds normals offset + i of the project's Philox stream (csrc/philox.h), checked against
    the independent pure-Python Philox of philox_spec.py; the same numbers as native.posterior_step."""
    from philox_spec import python_normals
    shape, seed = (2, 3, 5, 7), 2**40 + 9
    zeros = torch.zeros(shape, device=DEVICE)
    z = posterior_step(zeros, zeros, 0.0, 0.0, 1.0, seed=seed, offset=offset).flatten().cpu()
    expect = torch.tensor(python_normals(z.numel(), seed, offset), dtype=torch.float32)
    torch.testing.assert_close(z, expect, rtol=2e-7, atol=2e-7)
    x0, xt = torch.randn(shape, device=DEVICE), torch.randn(shape, device=DEVICE)
    y = posterior_step(x0, xt, C1, C2, SIGMA, seed=seed, offset=offset)
    torch.testing.assert_close(y, posterior_step_ref(x0, xt, C1, C2, SIGMA, expect.view(shape).to(DEVICE)))


def test_posterior_step_in_kernel_noise_is_standard_normal():
    shape = (4, 3, 96, 96)  # 110592 samples: standard error of the mean 0.003
    zeros = torch.zeros(shape, device=DEVICE)
    z = posterior_step(zeros, zeros, 0.0, 0.0, 1.0, seed=7).flatten().double()
    assert abs(z.mean().item()) < 0.015
    assert abs(z.std().item() - 1.0) < 0.015
    assert abs(torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1].item()) < 0.015  # neighbours
    assert abs((z.abs() > 1.959964).double().mean().item() - 0.05) < 0.005  # tails


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "needs noise or a seed"),
    (dict(noise="same", seed=1), "not both"),
    (dict(noise="wrong-shape"), "noise must be a float tensor"),
    (dict(seed=-1), "seed must be in"),
    (dict(xt="wrong-shape", seed=1), "must match"),
    (dict(x0="int", seed=1), "dtype must be one of"),
], ids=["no-noise", "noise-and-seed", "noise-shape", "negative-seed", "xt-shape", "int-dtype"])
def test_posterior_step_rejects_bad_input(kwargs, match):
    x0 = torch.randn(2, 3, 4, 4, device=DEVICE)
    values = {"same": x0, "wrong-shape": x0[:1], "int": x0.to(torch.int32)}
    args = {k: values.get(v, v) for k, v in kwargs.items()}
    x0, xt = args.pop("x0", x0), args.pop("xt", x0)
    with pytest.raises(ValueError, match=match):
        posterior_step(x0, xt, C1, C2, SIGMA, **args)


def test_launches_enter_the_tensors_device(monkeypatch):
    """Review 2.1: Triton launches on the *current* CUDA device, so tensors on cuda:1 with device 0 current
    faulted. Every launcher enters its tensors' device (on_device: torch.cuda.device for CUDA tensors)."""
    import contextlib

    from pdgan_infer.kernels import philox as philox_module
    from pdgan_infer.kernels import posterior as posterior_module
    entered = []

    def spy(device):
        entered.append(torch.device(device))
        return contextlib.nullcontext()
    for module in (adagn_module, posterior_module, philox_module):
        monkeypatch.setattr(module, "on_device", spy)
    x, gamma, beta = make_adagn_inputs((1, 4, 2, 2, 2), torch.float32, False)
    adagn_silu(x, gamma, beta, 2)
    posterior_step(x, x, C1, C2, SIGMA, noise=x)
    philox_module.philox_normal_rows(torch.tensor([1, 2], device=DEVICE), 8)
    assert entered == [x.device] * 3
    assert isinstance(_triton.on_device(torch.device("cuda:1")), torch.cuda.device)
    assert isinstance(_triton.on_device(torch.device("cpu")), contextlib.nullcontext)


# --- packaging: torch.library ops, optional dependency ------------------------------------------
def test_custom_ops_trace_under_torch_compile():
    x, gamma, beta = make_adagn_inputs((2, 8, 3, 5, 4), torch.float32, True)
    torch.library.opcheck(torch.ops.pdgan_triton.adagn_silu.default, (x, gamma, beta, 4, 1e-6))
    torch.library.opcheck(torch.ops.pdgan_triton.posterior_step.default, (x, x, C1, C2, SIGMA),
                          {"seed": 3})

    def step(x, gamma, beta):
        h = torch.ops.pdgan_triton.adagn_silu(x * 2.0, gamma, beta, 4, 1e-6)
        return torch.ops.pdgan_triton.posterior_step(h, x, C1, C2, SIGMA, None, 5)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, gamma, beta), step(x, gamma, beta))


def test_kernel_modules_import_without_triton():
    code = """
import sys
sys.modules["triton"] = None  # import triton fails, find_spec returns None
import torch
from pdgan_infer.kernels import _triton, adagn, posterior
assert not _triton.HAS_TRITON and not _triton.available()
x = torch.randn(1, 4, 2, 2)
for call in (lambda: adagn.adagn_silu(x, x[:, :, 0, 0], x[:, :, 0, 0], 2),
             lambda: posterior.posterior_step(x, x, 0.5, 0.5, 0.1, seed=0)):
    try:
        call()
    except ImportError as e:
        assert "pip install 'pdgan[triton]'" in str(e), e
    else:
        raise AssertionError("no ImportError")
"""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, check=False,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
