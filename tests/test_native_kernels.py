"""The C++ / CUDA extension (csrc/, pdgan_infer.kernels.native) against independent references.

AdaGN: every output element within half an ulp of its dtype around the exact (float64) value for the given
inputs, after a float32 allowance (`reference.adagn_silu_ulp_error`): a kernel that computes in float32 and
rounds to nearest passes; rounding toward zero, a wrong eps, or gamma / beta rounded to the storage dtype
fail. eps is tested beyond its default on near-constant groups (variance ~ 0, where eps decides the result).
The Philox stream is checked against an independent pure-Python Philox4x32-10 + Box-Muller written from the
published constants (philox_spec.py, itself checked on Random123's known-answer vectors), also past the CPU
kernel's parallel chunks. CUDA cases run the same checks when a GPU is present. The native tests skip only
when PDGAN_SKIP_EXT=1 (conftest.py fails the run when the extension is missing without it).
"""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from philox_spec import MASK, philox4x32_10, python_normals  # noqa: E402  (tests/ is on sys.path)

from pdgan_infer.kernels import native
from pdgan_infer.kernels.reference import (
    FP32_SLACK,
    adagn_silu_f64,
    adagn_silu_ulp_error,
    posterior_step_ref,
    posterior_step_ulp_error,
)

needs_native = pytest.mark.skipif(not native.available(), reason=f"PDGAN_SKIP_EXT=1, native extension unavailable: "
                                  f"{native.unavailable_reason()}")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def assert_adagn_within_half_ulp(ours, x, gamma, beta, groups, eps=1e-6, what=""):
    """max over elements of the rounding error in ulps of ours.dtype <= 0.5 (round to nearest). The GPU's
    approximate __expf / __fdividef / rsqrtf get twice the float32 allowance."""
    slack = FP32_SLACK * (2 if ours.is_cuda else 1)
    err = adagn_silu_ulp_error(ours.cpu(), x.cpu(), gamma.cpu(), beta.cpu(), groups, eps, fp32_slack=slack)
    worst = err.max().item()
    assert worst <= 0.5, f"{what}: an element is {worst:.3f} ulp of {ours.dtype} off (round to nearest: <= 0.5)"


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


# ---------------------------------------------------------------------------------------------------
# posterior step

POSTERIOR_SHAPES = {"minimal": (1,), "odd": (3, 5, 7), "cifar10": (4, 3, 32, 32), "celebahq256": (2, 3, 256, 256)}
C1, C2, SIGMA = 0.7, 0.25, 0.3


def assert_posterior_within_half_ulp(ours, x0, xt, c1, c2, sigma, z, what=""):
    worst = posterior_step_ulp_error(ours.cpu(), x0.cpu(), xt.cpu(), c1, c2, sigma,
                                     None if z is None else z.cpu()).max().item()
    assert worst <= 0.5, f"{what}: an element is {worst:.3f} ulp of {ours.dtype} off (round to nearest: <= 0.5)"


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("label", list(POSTERIOR_SHAPES))
def test_posterior_step_explicit_noise(label, dtype, device):
    shape = POSTERIOR_SHAPES[label]
    x0, xt, z = (torch.randn(shape, device=device).to(dtype) for _ in range(3))
    ours = native.posterior_step(x0, xt, C1, C2, SIGMA, noise=z)
    assert ours.dtype == dtype and ours.shape == x0.shape
    assert_posterior_within_half_ulp(ours, x0, xt, C1, C2, SIGMA, z, what=f"{label} {dtype}")
    no_noise = native.posterior_step(x0, xt, C1, C2, 0.0)  # sigma == 0: no noise needed
    assert_posterior_within_half_ulp(no_noise, x0, xt, C1, C2, 0.0, None, what=f"{label} {dtype} sigma=0")


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_posterior_step_philox_noise(dtype, device):
    """Seed mode adds normals offset .. offset + numel - 1 of the stream, checked against the independent
    pure-Python Philox (philox_spec.py)."""
    x0, xt = (torch.randn(3, 3, 17, 9, device=device).to(dtype) for _ in range(2))
    a = native.posterior_step(x0, xt, C1, C2, SIGMA, seed=123, offset=5)
    assert torch.equal(a, native.posterior_step(x0, xt, C1, C2, SIGMA, seed=123, offset=5))
    z = torch.tensor(python_normals(x0.numel(), 123, 5), dtype=torch.float32).view(x0.shape)
    assert_posterior_within_half_ulp(a, x0, xt, C1, C2, SIGMA, z, what=f"philox {dtype}")
    c = native.posterior_step(x0, xt, C1, C2, SIGMA, seed=124, offset=5)
    assert not torch.equal(a, c), "different seeds must give different noise"


# The independent pure-Python Philox4x32-10 + Box-Muller lives in philox_spec.py (shared with test_noise.py).


def test_python_philox_known_answers():
    """Random123's kat_vectors for philox4x32_10 validate the independent implementation itself."""
    assert philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert philox4x32_10((MASK,) * 4, (MASK, MASK)) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert philox4x32_10((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)) == (
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed, offset", [(0, 0), (42, 3), (2**40 + 7, 2**34 + 1), (2**64 - 1, 6)])
def test_philox_normal_matches_python(seed, offset, device):
    n = 37
    ours = native.philox_normal(n, seed, offset=offset, device=device).cpu()
    expect = torch.tensor(python_normals(n, seed, offset), dtype=torch.float32)
    torch.testing.assert_close(ours, expect, rtol=1e-6, atol=1e-6)


@needs_native
@pytest.mark.parametrize("device", DEVICES)
def test_philox_normal_stream_semantics(device):
    full = native.philox_normal(1000, 9, device=device)
    for k in (1, 2, 3, 4, 517):
        assert torch.equal(native.philox_normal(1000 - k, 9, offset=k, device=device), full[k:])
    assert torch.equal(native.philox_normal((10, 100), 9, device=device).flatten(), full)
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(native.philox_normal(1000, 9, dtype=dtype, device=device), full.to(dtype))
    assert torch.equal(native.philox_normal(5, -1, device=device), native.philox_normal(5, 2**64 - 1, device=device))


@needs_native
@pytest.mark.parametrize("offset", [0, 5])
def test_philox_long_streams_across_cpu_chunks(offset):
    """100003 normals (past the CPU kernel's 16384-element grain) on 3 threads: the parallel chunks start at
    lanes other than 0 (33335 = 4 * 8333 + 3). Bit-identical to one thread, and every element near a chunk
    boundary, and the last ones, equal to the independent Python stream."""
    n, seed = 100_003, 2**40 + 11
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native.philox_normal(n, seed, offset=offset)
        rows_one = native.philox_normal_rows([seed, 7], n, offset)
        torch.set_num_threads(3)
        three = native.philox_normal(n, seed, offset=offset)
        rows_three = native.philox_normal_rows([seed, 7], n, offset)
        x0 = torch.randn(n)
        post_three = native.posterior_step(x0, x0, 0.0, 0.0, 1.0, seed=seed, offset=offset)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, three) and torch.equal(rows_one, rows_three)
    assert torch.equal(rows_three[0], one) and torch.equal(post_three, one)
    probe = sorted({i for b in (16384, 33335, 33336, 66670, 16384 * 5) for i in range(b - 5, b + 5)}
                   | set(range(n - 6, n)))
    expect = torch.tensor([python_normals(1, seed, offset + i)[0] for i in probe], dtype=torch.float32)
    torch.testing.assert_close(three[probe], expect, rtol=2e-7, atol=2e-7)


@needs_native
@pytest.mark.parametrize("device", DEVICES)
def test_philox_normal_statistics(device):
    z = native.philox_normal(1_000_000, 2024, device=device).double()
    assert abs(z.mean().item()) < 5e-3  # 5 standard errors
    assert abs(z.std().item() - 1.0) < 5e-3
    assert abs((z.abs() < 1.0).double().mean().item() - 0.682689) < 3e-3
    assert abs((z ** 3).mean().item()) < 2e-2 and abs((z ** 4).mean().item() - 3.0) < 5e-2
    assert torch.isfinite(z).all()


@needs_native
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_philox_cpu_and_cuda_agree():
    cpu = native.philox_normal(100_003, 77, offset=11)
    gpu = native.philox_normal(100_003, 77, offset=11, device="cuda").cpu()
    torch.testing.assert_close(gpu, cpu, rtol=2e-7, atol=2e-7)


# ---------------------------------------------------------------------------------------------------
# errors


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


@needs_native
@pytest.mark.parametrize("device", DEVICES)
def test_posterior_step_rejects_bad_inputs(device):
    x = torch.randn(2, 3, 4, 4, device=device)
    bad = [
        ((x, x[:1], C1, C2, SIGMA), {"noise": x}, "xt has shape"),
        ((x, x.half(), C1, C2, SIGMA), {"noise": x}, "cast them to one dtype"),
        ((x, x, C1, C2, SIGMA), {"noise": x.half()}, "cast it to x0's dtype"),
        ((x, x, C1, C2, SIGMA), {"noise": x[..., :2]}, "noise has shape"),
        ((x.int(), x.int(), C1, C2, SIGMA), {"seed": 1}, "float32, float16 or bfloat16"),
        ((x.transpose(2, 3), x, C1, C2, SIGMA), {"seed": 1}, "contiguous"),
        ((x, x, C1, C2, SIGMA), {}, "needs noise or a seed"),
        ((x, x, C1, C2, SIGMA), {"noise": x, "seed": 1}, "not both"),
        ((x, x, C1, C2, SIGMA), {"seed": 1, "offset": -1}, "offset"),
        ((x, x, C1, C2, SIGMA), {"seed": 2**64}, "seed"),
    ]
    for args, kwargs, match in bad:
        with pytest.raises((ValueError, RuntimeError), match=match):
            native.posterior_step(*args, **kwargs)
    with pytest.raises(RuntimeError, match="same device"):
        native.posterior_step(x, x.to("meta" if device == "cpu" else "cpu"), C1, C2, 0.0)
    with pytest.raises((ValueError, RuntimeError), match="float32, float16 or bfloat16"):
        native.philox_normal(4, 0, dtype=torch.float64, device=device)


# ---------------------------------------------------------------------------------------------------
# torch.library integration and the unbuilt case


@needs_native
def test_ops_have_fake_kernels():
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 8)
    torch.library.opcheck(torch.ops.pdgan.adagn_silu.default, (x, g, g, 4, 1e-6))
    torch.library.opcheck(torch.ops.pdgan.posterior_step.default, (x.contiguous(), x.contiguous(), C1, C2, SIGMA),
                          {"noise": None, "seed": 3, "offset": 1})
    with torch._subclasses.fake_tensor.FakeTensorMode():
        y = torch.ops.pdgan.adagn_silu(torch.empty(2, 8, 4, 4).contiguous(memory_format=torch.channels_last),
                                       torch.empty(2, 8), torch.empty(2, 8), 4, 1e-6)
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_loader_without_extension_reports_the_fix(monkeypatch):
    """A missing extension must not break `import`; calls name the build command."""
    import pdgan_infer
    monkeypatch.setitem(sys.modules, "pdgan_infer._C", None)  # makes `from pdgan_infer import _C` fail
    monkeypatch.delattr(pdgan_infer, "_C", raising=False)
    monkeypatch.delenv("PDGAN_SKIP_EXT", raising=False)
    spec = importlib.util.spec_from_file_location("_native_unbuilt", native.__file__)
    mod = importlib.util.module_from_spec(spec)
    with pytest.warns(RuntimeWarning, match="native kernels unavailable: extension not built.*PDGAN_SKIP_EXT=1"):
        spec.loader.exec_module(mod)  # backend="auto" falls back, but not silently
    assert not mod.available() and not mod.cuda_available()
    assert "pip install --no-build-isolation -e ." in mod.unavailable_reason()
    with pytest.raises(RuntimeError, match="pip install --no-build-isolation -e ."):
        mod.adagn_silu(torch.randn(1, 4, 2, 2), torch.ones(1, 4), torch.zeros(1, 4), 2)
    with pytest.raises(RuntimeError, match="unavailable"):
        mod.posterior_step(torch.zeros(3), torch.zeros(3), 1.0, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="unavailable"):
        mod.philox_normal(3, 0)


def test_stale_extension_is_reported():
    """An extension built from other csrc/ sources than the checkout's (digest baked in by setup.py) is not
    used: its reason names the rebuild."""
    from types import SimpleNamespace

    from pdgan_infer.kernels._sources import source_digest
    csrc = Path(native.__file__).resolve().parents[2] / "csrc"
    current = source_digest(csrc, False)
    assert native._stale(SimpleNamespace(SOURCE_DIGEST=current, WITH_CUDA=0)) is None
    for built in ("0123456789abcdef", ""):  # other sources; a build from before the digest existed
        reason = native._stale(SimpleNamespace(SOURCE_DIGEST=built, WITH_CUDA=0))
        assert "stale" in reason and "pip install --no-build-isolation -e ." in reason
    # CUDA builds digest the .cu sources too, CPU builds neither them nor the CUDA launchers' headers
    assert source_digest(csrc, True) != current
    names = {p.name for p in __import__("pdgan_infer.kernels._sources", fromlist=["x"]).source_files(csrc, False)}
    assert "adagn_cpu.cpp" in names and not names & {"adagn_cuda.cu", "adagn_cuda.h", "bindings_cuda.cpp"}
    if native.available():  # the loaded build is this checkout's
        assert native._C.SOURCE_DIGEST == source_digest(csrc, native.cuda_available())


@pytest.mark.parametrize("skip_ext", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["fails-the-run", "PDGAN_SKIP_EXT=1"])
def test_suite_fails_without_the_extension_unless_skip_is_requested(skip_ext):
    """conftest.py: a missing extension ends the test run with exit status 1 and the reason; with
    PDGAN_SKIP_EXT=1 the run goes on and the native tests skip."""
    code = ("import sys; sys.modules['pdgan_infer._C'] = None; import pytest; "
            "sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', "
            "'tests/test_native_kernels.py::test_python_philox_known_answers', "
            "'tests/test_native_kernels.py::test_ops_have_fake_kernels']))")
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PDGAN_SKIP_EXT"}
    if skip_ext:
        env["PDGAN_SKIP_EXT"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    out = proc.stdout + proc.stderr
    if skip_ext:
        assert proc.returncode == 0, out[-3000:]
        assert "1 passed, 1 skipped" in out and "PDGAN_SKIP_EXT=1" in out
    else:
        assert proc.returncode == 1, out[-3000:]
        assert "pdgan native extension unavailable: extension not built" in out and "PDGAN_SKIP_EXT=1" in out
        assert "passed" not in out
