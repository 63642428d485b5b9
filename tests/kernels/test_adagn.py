"""Fused AdaGN + SiLU (`adagn_silu`) in each implementation against the float64 reference
(`pdgan_infer.kernels.reference`): the native C++ / CUDA kernel and the Triton kernel (in Triton's CPU interpreter
without a GPU).

Tolerance: every output element within half an ulp of its dtype around the exact (float64) value for the given
inputs, after a float32 allowance (`reference.adagn_silu_ulp_error`): a kernel that computes in float32 and
rounds to nearest passes; rounding toward zero, a wrong eps, or gamma / beta rounded to the storage dtype
fail. eps is tested beyond its default on near-constant groups (variance ~ 0, where eps decides the result).
One exception, measured: the interpreter's float32 -> bfloat16 cast truncates (100% of elements match
truncation), so interpreted bfloat16 is allowed one ulp; on a GPU (round to nearest) it is half an ulp.
"""
from __future__ import annotations

import math

import pytest
import torch
from native_impl import C1, C2, DEVICES, DTYPES, SIGMA, assert_adagn_within_half_ulp, needs_native
from triton_impl import (
    DEVICE,
    LAYOUTS,
    SLOW_ON_CPU,
    assert_adagn_close,
    gpu_only,
    make_adagn_inputs,
    triton_test,
)
from triton_impl import DTYPES as TRITON_DTYPES

from pdgan_infer.kernels import adagn as adagn_module
from pdgan_infer.kernels import native
from pdgan_infer.kernels.adagn import adagn_plan, adagn_silu
from pdgan_infer.kernels.reference import adagn_silu_f64, adagn_silu_ref, posterior_step_ref

# === native C++ / CUDA (pdgan_infer.kernels.native) =========================================
# label: ((N, C, H, W), G)
ADAGN_SHAPES = {
    "minimal": ((1, 4, 1, 1), 2),
    "odd": ((3, 12, 7, 5), 3),
    "cifar10-32": ((2, 128, 32, 32), 32),
    "cifar10-16": ((2, 256, 16, 16), 32),
    "cifar10-8": ((2, 256, 8, 8), 32),
    "cifar10-4": ((2, 256, 4, 4), 32),
    "celebahq256-256": ((1, 64, 256, 256), 16),
}
def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("label", list(ADAGN_SHAPES))
def test_adagn_silu_matches_reference(label, dtype, channels_last, device):
    shape, groups = ADAGN_SHAPES[label]
    x = _layout(torch.randn(shape) * 2.0 + 0.5, channels_last).to(dtype).to(device)
    gamma = (torch.randn(shape[:2]) * 0.5 + 1.0).to(device)
    beta = torch.randn(shape[:2]).to(device)
    ours = native.adagn_silu(x, gamma, beta, groups)
    assert ours.dtype == dtype and ours.shape == x.shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert ours.is_contiguous(memory_format=fmt)
    assert_adagn_within_half_ulp(ours, x, gamma, beta, groups, what=f"{label} {dtype}")


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("eps", [0.1, 1e-6, 1e-3])
def test_adagn_silu_eps_on_near_constant_groups(eps, dtype, channels_last, device):
    """Groups of variance ~1e-6 (float32) or exactly 0 (16-bit inputs round the wiggle away), where eps sets
    the scale: a kernel that ignores or changes eps is off by far more than an ulp. One group per image
    holds ordinary data, so both kinds meet in one launch; the split plan (96 x 96) and the fused one run."""
    for shape, groups in (((2, 16, 5, 7), 4), ((1, 8, 96, 96), 2)):
        n, c = shape[:2]
        level = torch.randn(n, groups, 1, 1, 1) * 2.0
        x = (level + 1e-3 * torch.randn(n, groups, c // groups, *shape[2:])).reshape(shape)
        x[:, : c // groups] = torch.randn(n, c // groups, *shape[2:])  # group 0: variance 1
        x = _layout(x, channels_last).to(dtype).to(device)
        gamma = (torch.randn(n, c) * 0.5 + 1.0).to(device)
        beta = torch.randn(n, c).to(device)
        ours = native.adagn_silu(x, gamma, beta, groups, eps=eps)
        assert_adagn_within_half_ulp(ours, x, gamma, beta, groups, eps, what=f"{shape} eps={eps} {dtype}")
        if eps == 0.1 and dtype == torch.float32:  # the exact value depends on eps at this scale
            wrong, _ = adagn_silu_f64(x.cpu(), gamma.cpu(), beta.cpu(), groups, 1e-6)
            assert (ours.cpu().double() - wrong).abs().max().item() > 1e-2


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_adagn_silu_stable_at_large_mean(device, channels_last):
    """|mean| >> std: E[x^2] - E[x]^2 in float32 would lose every digit; the two-pass form does not."""
    x = _layout(1000.0 + torch.randn(2, 64, 16, 16), channels_last).to(device)
    gamma, beta = torch.ones(2, 64, device=device), torch.zeros(2, 64, device=device)
    ours = native.adagn_silu(x, gamma, beta, 8).double()
    exact = torch.nn.functional.silu(torch.nn.functional.group_norm(x.double(), 8, eps=1e-6))
    assert (ours - exact).abs().max().item() < 1e-3  # float32 quantisation of x at 1000 is 6e-5 (std 1)


@needs_native
@pytest.mark.parametrize("threads", [1, 3, 16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_adagn_silu_cpu_parallel_plans(threads, channels_last):
    """The CPU kernel picks its plan from the thread count (one task per group / image, or statistics
    split into pieces and tiles merged afterwards); every plan must be within half an ulp."""
    x = _layout(torch.randn(2, 8, 96, 96) * 3.0 - 1.0, channels_last)
    gamma, beta = torch.randn(2, 8), torch.randn(2, 8)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = native.adagn_silu(x, gamma, beta, 2)
        ours_bf16 = native.adagn_silu(x.bfloat16(), gamma, beta, 2)
    finally:
        torch.set_num_threads(old)
    assert_adagn_within_half_ulp(ours, x, gamma, beta, 2, what=f"{threads} threads")
    assert_adagn_within_half_ulp(ours_bf16, x.bfloat16(), gamma, beta, 2, what=f"{threads} threads bf16")


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, groups", [((2, 8, 5, 3), 4), ((2, 128, 32, 32), 32)], ids=["small", "cifar10-32"])
def test_unaligned_inputs(shape, groups, device):
    """Views that start one element into their storage: on CUDA they take the scalar (unvectorised) paths;
    the CPU kernels have no alignment-dependent path, so on the CPU this only checks that such views work."""
    numel = math.prod(shape)
    x = torch.randn(numel + 1, device=device)[1:].view(shape)
    g, b = torch.randn(shape[:2], device=device), torch.randn(shape[:2], device=device)
    assert_adagn_within_half_ulp(native.adagn_silu(x, g, b, groups), x, g, b, groups, what="unaligned")
    xt, z = torch.randn(numel + 1, device=device)[1:].view(shape), torch.randn(shape, device=device)
    torch.testing.assert_close(native.posterior_step(x, xt, C1, C2, SIGMA, noise=z),
                               posterior_step_ref(x, xt, C1, C2, SIGMA, z))


@needs_native
@pytest.mark.parametrize("device", DEVICES)
def test_adagn_silu_reads_gamma_of_any_float_dtype_exactly(device):
    """gamma / beta are read as float32 whatever their dtype: float64 values that float32 holds exactly give
    the same result, bfloat16 ones are widened exactly, and the values are used unrounded (a kernel that
    rounded float32 gamma to the 16-bit storage dtype fails the half-ulp check of a bf16 x)."""
    x = torch.randn(2, 8, 5, 5, device=device)
    gamma = torch.randn(2, 8, device=device) * 0.5 + 1.0
    beta = torch.randn(2, 8, device=device)
    y = native.adagn_silu(x, gamma, beta, 4)
    assert torch.equal(native.adagn_silu(x, gamma.double(), beta.double(), 4), y)
    g16, b16 = gamma.bfloat16(), beta.bfloat16()
    assert_adagn_within_half_ulp(native.adagn_silu(x, g16, b16, 4), x, g16.float(), b16.float(), 4, what="bf16 gamma")
    fine = gamma + torch.randn_like(gamma) * 2.0 ** -10  # not bfloat16 numbers
    assert_adagn_within_half_ulp(native.adagn_silu(x.bfloat16(), fine, beta, 4), x.bfloat16(), fine, beta, 4,
                                 what="float32 gamma, bf16 x")


@needs_native
@pytest.mark.parametrize("device", DEVICES)
def test_adagn_silu_rejects_bad_inputs(device):
    x = torch.randn(2, 8, 4, 4, device=device)
    g = torch.randn(2, 8, device=device)
    bad = [
        ((x, torch.randn(2, 9, device=device), g, 4), "gamma must have shape"),
        ((x, g, torch.randn(8, device=device), 4), "beta must have shape"),
        ((x, g, g, 3), "num_groups=3"),
        ((x, g, g, 0), "num_groups=0"),
        ((x.to(torch.int32), g, g, 4), "float32, float16 or bfloat16"),
        ((x.double(), g, g, 4), "float32, float16 or bfloat16"),
        ((x, g.long(), g, 4), "floating-point"),
        ((x[0], g, g, 4), "4-D"),
        ((x.transpose(2, 3), g, g, 4), "contiguous"),
        ((torch.randn(8, 2, 4, 4, device=device).transpose(0, 1), g, g, 4), "contiguous"),
    ]
    for args, match in bad:
        with pytest.raises((ValueError, RuntimeError), match=match):
            native.adagn_silu(*args)
    with pytest.raises(ValueError, match="eps"):
        native.adagn_silu(x, g, g, 4, eps=-1.0)
    other = "meta" if device == "cpu" else "cpu"
    with pytest.raises(RuntimeError, match="same device"):
        native.adagn_silu(x, g.to(other), g, 4)
    if device == "cuda":  # the C++ check, reached through torch.ops directly
        with pytest.raises(RuntimeError, match="gamma is on cpu"):
            torch.ops.pdgan.adagn_silu(x, g.cpu(), g, 4, 1e-6)


# === Triton (pdgan_infer.kernels.adagn), interpreted on the CPU ==================================
SHAPES = [  # (N, C, H, W, G)
    pytest.param((1, 4, 1, 1, 2), id="minimal"),
    pytest.param((3, 12, 7, 5, 3), id="odd"),
    pytest.param((2, 128, 32, 32, 32), id="cifar10-32x32"),
    pytest.param((2, 256, 16, 16, 32), id="cifar10-16x16"),
    pytest.param((2, 256, 8, 8, 32), id="cifar10-8x8"),
    pytest.param((1, 256, 4, 4, 32), id="cifar10-4x4"),
    pytest.param((1, 64, 256, 256, 16), id="celebahq256-256x256", marks=SLOW_ON_CPU),
]


@triton_test
@pytest.mark.parametrize("dtype, max_ulps", TRITON_DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_adagn_silu(shape, channels_last, dtype, max_ulps):
    x, gamma, beta = make_adagn_inputs(shape, dtype, channels_last)
    assert_adagn_close(adagn_silu(x, gamma, beta, shape[-1]), x, gamma, beta, shape[-1], max_ulps)


@triton_test
@pytest.mark.parametrize("dtype, max_ulps", TRITON_DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("eps", [0.1, 1e-6])
def test_adagn_silu_eps_on_near_constant_groups_triton(eps, channels_last, dtype, max_ulps):
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


@triton_test
@pytest.mark.parametrize("shape, dtype, channels_last, expected", PLAN_CASES)
def test_adagn_plan_widens_narrow_channels_last_groups(shape, dtype, channels_last, expected):
    assert tuple(adagn_plan(shape[:4], dtype, shape[4], channels_last)) == expected


WIDE_CASES = [  # (N, C, H, W, G), g_block (None: the plan's)
    pytest.param((2, 64, 8, 8, 16), None, id="c64-g16"),
    pytest.param((2, 24, 5, 3, 6), None, id="g6-blocks-of-4"),
    pytest.param((3, 12, 7, 5, 3), 2, id="odd-g3-blocks-of-2"),
]


@triton_test
@pytest.mark.parametrize("dtype, max_ulps", TRITON_DTYPES)
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


@triton_test
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


@triton_test
@pytest.mark.parametrize("dtype, max_ulps", TRITON_DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("shape, tile", SPLIT_CASES)
def test_adagn_silu_split_path(shape, tile, channels_last, dtype, max_ulps):
    x, gamma, beta = make_adagn_inputs(shape, dtype, channels_last)
    y = adagn_silu(x, gamma, beta, shape[-1], split=True, tile=tile)
    assert_adagn_close(y, x, gamma, beta, shape[-1], max_ulps)


@triton_test
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


@triton_test
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_adagn_silu_split_merges_in_blocks(monkeypatch, channels_last):
    """Finalize merges the partials (18 here) and writes the channels (16) in blocks of 4."""
    monkeypatch.setattr(adagn_module, "MERGE_BLOCK", 4)
    shape = (1, 16, 3, 3, 1)
    x, gamma, beta = make_adagn_inputs(shape, torch.float32, channels_last)
    assert_adagn_close(adagn_silu(x, gamma, beta, 1, split=True, tile=8), x, gamma, beta, 1, 0.5)


@triton_test
@pytest.mark.parametrize("split", [False, True], ids=["single", "split"])
def test_adagn_silu_large_mean_is_stable(split):
    """|mean| / std = 100 (where E[x^2] - E[x]^2 in float32 is off by ~0.1% of the variance): within half an
    ulp of the float64 value after the float32 allowance (which covers the rounding of mean * a)."""
    x, gamma, beta = make_adagn_inputs((2, 8, 16, 16, 2), torch.float32, False)
    x = (x - 0.5) * 0.05 + 10.0
    assert_adagn_close(adagn_silu(x, gamma, beta, 2, split=split, tile=256), x, gamma, beta, 2, 0.5)


@triton_test
def test_adagn_silu_other_layout_is_copied():
    x, gamma, beta = make_adagn_inputs((2, 8, 6, 10, 4), torch.float32, False)
    x = x[..., ::2]  # neither NCHW- nor channels_last-contiguous
    y = adagn_silu(x, gamma, beta, 4)
    assert y.is_contiguous()
    torch.testing.assert_close(y, adagn_silu_ref(x, gamma, beta, 4), atol=1e-5, rtol=1e-5)


@triton_test
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


@triton_test
def test_adagn_silu_rejects_bad_path_options():
    x, gamma, beta = make_adagn_inputs((1, 8, 64, 64, 2), torch.float32, False)  # group of 4 x 4096
    with pytest.raises(ValueError, match="too big for the single path"):
        adagn_silu(x, gamma, beta, 2, split=False)
    with pytest.raises(ValueError, match="power of two"):
        adagn_silu(x[:, :, :4, :4], gamma, beta, 2, split=True, tile=3)


@triton_test
@gpu_only
@pytest.mark.gpu
@pytest.mark.parametrize("dtype, max_ulps", TRITON_DTYPES)
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_adagn_silu_celebahq_batch_gpu(channels_last, dtype, max_ulps):
    shape = (8, 64, 256, 256, 16)
    x, gamma, beta = make_adagn_inputs(shape, dtype, channels_last)
    assert_adagn_close(adagn_silu(x, gamma, beta, 16), x, gamma, beta, 16, max_ulps)


@triton_test
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
