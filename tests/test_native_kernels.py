"""The C++ / CUDA extension (csrc/, pdgan_infer.kernels.native) against the pure-torch references.

AdaGN tolerance (flash-attention's rule): max|ours - ref_fp32| <= 2 * max|torch_same_dtype - ref_fp32| + atol,
ref_fp32 = adagn_silu_ref on the float32 input, torch_same_dtype = adagn_silu_unfused in x's dtype.
The Philox stream is checked against an independent pure-Python Philox4x32-10 + Box-Muller written here
from the published constants (and itself checked on Random123's known-answer vectors).
CUDA cases run the same checks when a GPU is present; everything skips, with the reason, when the
extension is not built.
"""
from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch
from philox_spec import MASK, philox4x32_10, python_normals  # noqa: E402  (tests/ is on sys.path)

from pdgan_infer.kernels import native
from pdgan_infer.kernels.reference import adagn_silu_ref, adagn_silu_unfused, posterior_step_ref

needs_native = pytest.mark.skipif(not native.available(), reason=f"pdgan native extension unavailable: "
                                  f"{native.unavailable_reason()}")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]

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
# dtype: atol of the tolerance rule (float32: torch_same_dtype == ref_fp32, so atol carries it alone;
# it covers the float32 rounding differences of torch's own group_norm, ~1e-5 at 256 x 256).
ATOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", list(ATOL), ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("label", list(ADAGN_SHAPES))
def test_adagn_silu_matches_reference(label, dtype, channels_last, device):
    shape, groups = ADAGN_SHAPES[label]
    x32 = _layout(torch.randn(shape) * 2.0 + 0.5, channels_last).to(device)
    gamma = (torch.randn(shape[:2]) * 0.5 + 1.0).to(device)
    beta = torch.randn(shape[:2]).to(device)
    x = x32.to(dtype)
    ours = native.adagn_silu(x, gamma, beta, groups)
    assert ours.dtype == dtype and ours.shape == x.shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert ours.is_contiguous(memory_format=fmt)
    ref = adagn_silu_ref(x.float(), gamma, beta, groups)
    same = adagn_silu_unfused(x, gamma, beta, groups).float()
    err, torch_err = (ours.float() - ref).abs().max().item(), (same - ref).abs().max().item()
    assert err <= 2 * torch_err + ATOL[dtype], f"{label} {dtype}: ours {err:.3g}, torch {torch_err:.3g}"


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
@pytest.mark.parametrize("threads", [1, 16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_adagn_silu_cpu_parallel_plans(threads, channels_last):
    """The CPU kernel picks its plan from the thread count (one task per group / image, or statistics
    split into pieces and tiles merged afterwards); every plan must give the same result."""
    x = _layout(torch.randn(2, 8, 96, 96) * 3.0 - 1.0, channels_last)
    gamma, beta = torch.randn(2, 8), torch.randn(2, 8)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = native.adagn_silu(x, gamma, beta, 2)
    finally:
        torch.set_num_threads(old)
    assert (ours - adagn_silu_ref(x, gamma, beta, 2)).abs().max().item() <= ATOL[torch.float32]


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape, groups", [((2, 8, 5, 3), 4), ((2, 128, 32, 32), 32)], ids=["small", "cifar10-32"])
def test_unaligned_inputs(shape, groups, device):
    """Views that start one element into their storage take the scalar (unvectorised) paths."""
    numel = math.prod(shape)
    x = torch.randn(numel + 1, device=device)[1:].view(shape)
    g, b = torch.randn(shape[:2], device=device), torch.randn(shape[:2], device=device)
    torch.testing.assert_close(native.adagn_silu(x, g, b, groups), adagn_silu_ref(x, g, b, groups),
                               atol=ATOL[torch.float32], rtol=0)
    xt, z = torch.randn(numel + 1, device=device)[1:].view(shape), torch.randn(shape, device=device)
    torch.testing.assert_close(native.posterior_step(x, xt, C1, C2, SIGMA, noise=z),
                               posterior_step_ref(x, xt, C1, C2, SIGMA, z))


@needs_native
@pytest.mark.parametrize("device", DEVICES)
def test_adagn_silu_gamma_dtypes_and_torch_ops(device):
    x = torch.randn(2, 8, 5, 5, device=device)
    gamma, beta = torch.randn(2, 8, device=device), torch.randn(2, 8, device=device)
    y = native.adagn_silu(x, gamma, beta, 4)
    y64 = native.adagn_silu(x, gamma.double(), beta.double(), 4)
    torch.testing.assert_close(y, y64)
    torch.testing.assert_close(torch.ops.pdgan.adagn_silu(x, gamma, beta, 4, 1e-6), y)


# ---------------------------------------------------------------------------------------------------
# posterior step

POSTERIOR_SHAPES = {"minimal": (1,), "odd": (3, 5, 7), "cifar10": (4, 3, 32, 32), "celebahq256": (2, 3, 256, 256)}
C1, C2, SIGMA = 0.7, 0.25, 0.3


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(ATOL), ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("label", list(POSTERIOR_SHAPES))
def test_posterior_step_explicit_noise(label, dtype, device):
    shape = POSTERIOR_SHAPES[label]
    x0, xt, z = (torch.randn(shape, device=device).to(dtype) for _ in range(3))
    ours = native.posterior_step(x0, xt, C1, C2, SIGMA, noise=z)
    assert ours.dtype == dtype and ours.shape == x0.shape
    torch.testing.assert_close(ours, posterior_step_ref(x0, xt, C1, C2, SIGMA, z))
    no_noise = native.posterior_step(x0, xt, C1, C2, 0.0)  # sigma == 0: no noise needed
    torch.testing.assert_close(no_noise, posterior_step_ref(x0, xt, C1, C2, 0.0, None))


@needs_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(ATOL), ids=lambda d: str(d).split(".")[-1])
def test_posterior_step_philox_noise(dtype, device):
    x0, xt = (torch.randn(3, 3, 17, 9, device=device).to(dtype) for _ in range(2))
    a = native.posterior_step(x0, xt, C1, C2, SIGMA, seed=123, offset=5)
    b = native.posterior_step(x0, xt, C1, C2, SIGMA, seed=123, offset=5)
    c = native.posterior_step(x0, xt, C1, C2, SIGMA, seed=124, offset=5)
    assert torch.equal(a, b), "same (seed, offset) must give the same result"
    assert not torch.equal(a, c), "different seeds must give different noise"
    z = native.philox_normal(x0.shape, 123, offset=5, device=device)  # float32 normals
    torch.testing.assert_close(a, posterior_step_ref(x0, xt, C1, C2, SIGMA, z))


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
    spec = importlib.util.spec_from_file_location("_native_unbuilt", native.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert not mod.available() and not mod.cuda_available()
    assert "pip install --no-build-isolation -e ." in mod.unavailable_reason()
    with pytest.raises(RuntimeError, match="pip install --no-build-isolation -e ."):
        mod.adagn_silu(torch.randn(1, 4, 2, 2), torch.ones(1, 4), torch.zeros(1, 4), 2)
    with pytest.raises(RuntimeError, match="unavailable"):
        mod.posterior_step(torch.zeros(3), torch.zeros(3), 1.0, 0.0, 0.0)
    with pytest.raises(RuntimeError, match="unavailable"):
        mod.philox_normal(3, 0)
