"""The fused posterior step (`posterior_step`: c1 * x0 + c2 * xt + sigma * z, with explicit noise or the
project's Philox stream drawn in the kernel) in each implementation against the float64 reference: the native
C++ / CUDA kernel and the Triton kernel (in Triton's CPU interpreter without a GPU). Every element within half an
ulp of its dtype (interpreted bfloat16: one ulp, the interpreter truncates); the in-kernel noise against the
independent pure-Python Philox of philox_spec.py."""
from __future__ import annotations

import pytest
import torch
from native_impl import C1, C2, DEVICES, DTYPES, SIGMA, needs_native
from philox_spec import python_normals
from triton_impl import C1 as T_C1
from triton_impl import C2 as T_C2
from triton_impl import DEVICE, triton_test
from triton_impl import DTYPES as TRITON_DTYPES
from triton_impl import SIGMA as T_SIGMA

from pdgan_infer.kernels import native
from pdgan_infer.kernels.posterior import posterior_step
from pdgan_infer.kernels.reference import posterior_step_ref, posterior_step_ulp_error

# === native C++ / CUDA (pdgan_infer.kernels.native) =========================================

POSTERIOR_SHAPES = {"minimal": (1,), "odd": (3, 5, 7), "cifar10": (4, 3, 32, 32), "celebahq256": (2, 3, 256, 256)}


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


# === Triton (pdgan_infer.kernels.posterior), interpreted on the CPU ==================================
TRITON_POSTERIOR_SHAPES = [
    pytest.param((3, 5, 7), id="odd"),
    pytest.param((2, 3, 32, 32), id="cifar10"),
    pytest.param((1, 3, 256, 256), id="celebahq256"),
]


@triton_test
@pytest.mark.parametrize("dtype, max_ulps", TRITON_DTYPES)
@pytest.mark.parametrize("shape", TRITON_POSTERIOR_SHAPES)
def test_posterior_step_with_noise(shape, dtype, max_ulps):
    x0, xt, noise = (torch.randn(shape, device=DEVICE).to(dtype) for _ in range(3))
    y = posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, noise=noise).cpu()
    worst = posterior_step_ulp_error(y, x0.cpu(), xt.cpu(), T_C1, T_C2, T_SIGMA, noise.cpu()).max().item()
    assert worst <= max_ulps, f"an element is {worst:.3f} ulp of {dtype} off (allowed {max_ulps})"


@triton_test
def test_posterior_step_keeps_channels_last():
    x0, xt, noise = (torch.randn(2, 3, 8, 8, device=DEVICE).to(memory_format=torch.channels_last)
                     for _ in range(3))
    y = posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, noise=noise)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, posterior_step_ref(x0, xt, T_C1, T_C2, T_SIGMA, noise))
    mixed = posterior_step(x0, xt.contiguous(), T_C1, T_C2, T_SIGMA, noise=noise)  # no shared layout: copied
    torch.testing.assert_close(mixed, posterior_step_ref(x0, xt, T_C1, T_C2, T_SIGMA, noise))


@triton_test
def test_posterior_step_sigma_zero_has_no_noise_term():
    x0, xt = torch.randn(2, 3, 5, 5, device=DEVICE), torch.randn(2, 3, 5, 5, device=DEVICE)
    nan_noise = torch.full_like(x0, float("nan"))  # never read when sigma == 0
    expected = posterior_step_ref(x0, xt, T_C1, T_C2, 0.0, None)
    torch.testing.assert_close(posterior_step(x0, xt, T_C1, T_C2, 0.0, noise=nan_noise), expected)
    torch.testing.assert_close(posterior_step(x0, xt, T_C1, T_C2, 0.0), expected)


@triton_test
def test_posterior_step_in_kernel_noise_is_seeded():
    x0, xt = torch.randn(2, 3, 16, 16, device=DEVICE), torch.randn(2, 3, 16, 16, device=DEVICE)
    a = posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, seed=1234)
    assert torch.equal(a, posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, seed=1234))
    b = posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, seed=1235)
    assert (a != b).float().mean().item() > 0.99
    big = posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, seed=2**40 + 7)  # 64-bit seeds
    assert (a != big).float().mean().item() > 0.99
    # the noise depends on (seed, index), not on the dtype
    half = posterior_step(x0.half(), xt.half(), T_C1, T_C2, T_SIGMA, seed=1234)
    torch.testing.assert_close(half.float(), a, atol=4e-3, rtol=2e-3)


@triton_test
@pytest.mark.parametrize("offset", [0, 3, 2**34 + 1])
def test_posterior_step_in_kernel_noise_is_the_philox_stream(offset):
    """Seed mode adds normals offset + i of the project's Philox stream (csrc/philox.h), checked against
    the independent pure-Python Philox of philox_spec.py; the same numbers as native.posterior_step."""
    shape, seed = (2, 3, 5, 7), 2**40 + 9
    zeros = torch.zeros(shape, device=DEVICE)
    z = posterior_step(zeros, zeros, 0.0, 0.0, 1.0, seed=seed, offset=offset).flatten().cpu()
    expect = torch.tensor(python_normals(z.numel(), seed, offset), dtype=torch.float32)
    torch.testing.assert_close(z, expect, rtol=2e-7, atol=2e-7)
    x0, xt = torch.randn(shape, device=DEVICE), torch.randn(shape, device=DEVICE)
    y = posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, seed=seed, offset=offset)
    torch.testing.assert_close(y, posterior_step_ref(x0, xt, T_C1, T_C2, T_SIGMA, expect.view(shape).to(DEVICE)))


@triton_test
def test_posterior_step_in_kernel_noise_is_standard_normal():
    shape = (4, 3, 96, 96)  # 110592 samples: standard error of the mean 0.003
    zeros = torch.zeros(shape, device=DEVICE)
    z = posterior_step(zeros, zeros, 0.0, 0.0, 1.0, seed=7).flatten().double()
    assert abs(z.mean().item()) < 0.015
    assert abs(z.std().item() - 1.0) < 0.015
    assert abs(torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1].item()) < 0.015  # neighbours
    assert abs((z.abs() > 1.959964).double().mean().item() - 0.05) < 0.005  # tails


@triton_test
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
        posterior_step(x0, xt, T_C1, T_C2, T_SIGMA, **args)
