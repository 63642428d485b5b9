"""The reference sampler: wiring against a hand-unrolled chain, batch-size independence, seeding, and the noise
definition (`sampler.draw_noise`) in every implementation against the pure-Python Philox of philox_spec.py."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from philox_spec import python_normals

from pdgan_infer import PDGAN, SamplerNoise, Schedule, draw_noise, sample
from pdgan_infer.engine import redraw_zero_init
from pdgan_infer.kernels import _triton, native
from pdgan_infer.sampler import EPS, LATENT, TENSOR_STRIDE, X_T, Z, to_uint8

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_native = pytest.mark.skipif(not native.available(), reason=f"native: {native.unavailable_reason()}")
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None or not _triton.available(),
                                  reason="triton cannot run here (no CUDA and TRITON_INTERPRET unset)")


class ToyG(torch.nn.Module):
    """A generator whose output reveals its inputs: x0 = tanh(x_t * 0.5 + mean(z) + 0.1 t)."""

    def forward(self, x, z, t):
        return torch.tanh(0.5 * x + z.mean(1)[:, None, None, None] + 0.1 * t[:, None, None, None])


def test_chain_matches_hand_unrolled_T2():
    s = Schedule.pdgan(2)
    noise = draw_noise([3, 4], 2, 3, 8, 5)
    z_T = torch.randn(2, 5)
    out = sample(ToyG(), s, z_T, noise)
    b1, b2 = s.betas.tolist()
    ab2 = (1 - b1) * (1 - b2)
    c1 = b2 * (1 - b1) ** 0.5 / (1 - ab2)  # closed-form posterior at t = 2
    c2 = b1 * (1 - b2) ** 0.5 / (1 - ab2)
    sig = (b2 * b1 / (1 - ab2)) ** 0.5
    g = ToyG()
    x0_T = g(noise.x_T, z_T, torch.full((2,), 2.0))
    x1 = c1 * x0_T + c2 * noise.x_T + sig * noise.eps[0]
    expect = g(x1, noise.z[0], torch.full((2,), 1.0))
    assert torch.allclose(out, expect, atol=1e-6)


def test_draw_noise_one_seed_per_image():
    a = draw_noise([7, 8, 9], 3, 3, 4, 6)
    b = draw_noise([9], 3, 3, 4, 6)
    assert a.z.shape == (2, 3, 6) and a.eps.shape == (2, 3, 3, 4, 4)
    assert torch.equal(a.x_T[2], b.x_T[0]) and torch.equal(a.z[:, 2], b.z[:, 0])
    assert torch.equal(a.eps[:, 2], b.eps[:, 0]) and torch.equal(a.z_T_noise[2], b.z_T_noise[0])
    assert not torch.equal(a.x_T[0], a.x_T[1])
    assert draw_noise([], 2, 3, 4, 6).x_T.shape == (0, 3, 4, 4)


def test_batch_size_1_and_7_same_images():
    torch.manual_seed(0)
    m = PDGAN("digits").eval()
    redraw_zero_init(m)  # images of real contrast (training's 1e-10 layers give x0 ~ 1e-5, uint8 127/128)
    noise = draw_noise(list(range(100, 107)), 2, 3, 32, 32)
    with torch.no_grad():
        z_T = m.latent.sample(noise.z_T_noise)
        z_1 = torch.cat([m.latent.sample(noise.z_T_noise[i:i + 1]) for i in range(7)])
    assert torch.allclose(z_T, z_1, rtol=1e-4, atol=1e-4)  # untrained: |z| ~ 100
    x7 = sample(m.generator, m.schedule, z_T, noise)
    assert x7.std() > 0.1 and len(to_uint8(x7).unique()) > 100  # the comparison below is not a sign test
    x1 = torch.cat([sample(m.generator, m.schedule, z_T[i:i + 1],
                           SamplerNoise(noise.x_T[i:i + 1], noise.z_T_noise[i:i + 1], noise.z[:, i:i + 1],
                                        noise.eps[:, i:i + 1])) for i in range(7)])
    # oneDNN may pick batch-dependent convolution algorithms: equal up to float rounding (~1e-6 at unit scale),
    # so a pixel that sits on a rounding boundary can move by one uint8 level, and no more
    assert torch.allclose(x7, x1, atol=1e-5)
    levels = (to_uint8(x7).int() - to_uint8(x1).int()).abs()
    assert levels.max() <= 1 and (levels > 0).float().mean() < 1e-3


def test_to_uint8():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2)
    u = to_uint8(x)
    assert u.shape == (1, 2, 2, 3) and u.dtype == torch.uint8
    assert u[0, :, :, 0].flatten().tolist() == [0, 128, 255, 255]


def test_two_step_chain_of_the_real_generator_by_hand():
    """The real (re-drawn, unit-scale) generator through `sample` against the chain written out with the
    closed-form DDPM posterior of Schedule.pdgan(2): a wrong coefficient or step index moves the images."""
    torch.manual_seed(1)
    m = PDGAN("digits", with_latent=False).eval()
    redraw_zero_init(m)
    noise = draw_noise([5, 6, 7], 2, 3, 32, 32)
    z_T = torch.randn(3, 32)
    with torch.no_grad():
        out = sample(m.generator, m.schedule, z_T, noise)
        b1, b2 = m.schedule.betas.tolist()
        ab2 = (1 - b1) * (1 - b2)
        c1, c2 = b2 * (1 - b1) ** 0.5 / (1 - ab2), b1 * (1 - b2) ** 0.5 / (1 - ab2)
        sigma = (b2 * b1 / (1 - ab2)) ** 0.5
        x1 = c1 * m.generator(noise.x_T, z_T, torch.full((3,), 2.0)) + c2 * noise.x_T + sigma * noise.eps[0]
        expect = m.generator(x1, noise.z[0], torch.full((3,), 1.0))
        wrong = m.generator(x1 + 0.05 * noise.eps[0], noise.z[0], torch.full((3,), 1.0))  # sigma off by 0.05
    assert out.std() > 0.1
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=0)
    assert (to_uint8(wrong).int() - to_uint8(expect).int()).abs().max() > 2


# --- the noise definition: element j of tensor k of the image with seed s is normal k * 2**34 + j of the
# Philox4x32-10 stream keyed by s, in every implementation (tests/kernels/test_philox.py checks the streams)
def spec_rows(seeds, count, offset):
    return torch.tensor([python_normals(count, s, offset) for s in seeds], dtype=torch.float32)


def _expected_noise(seeds, T, c, r, nz):
    pixels = c * r * r
    x_T = spec_rows(seeds, pixels, X_T * TENSOR_STRIDE).view(len(seeds), c, r, r)
    latent = spec_rows(seeds, nz, LATENT * TENSOR_STRIDE)
    z = spec_rows(seeds, (T - 1) * nz, Z * TENSOR_STRIDE).view(len(seeds), T - 1, nz).transpose(0, 1)
    eps = spec_rows(seeds, (T - 1) * pixels, EPS * TENSOR_STRIDE).view(len(seeds), T - 1, c, r, r).transpose(0, 1)
    return x_T, latent, z, eps


IMPLS = ["reference", pytest.param("native", marks=needs_native), pytest.param("triton", marks=needs_triton)]


@pytest.mark.parametrize("impl", IMPLS)
def test_draw_noise_is_the_documented_philox_stream(impl):
    """Today's definition, not torch.Generator's mt19937: every tensor from the spec's stream."""
    seeds, T, c, r, nz = [3, 2**33 + 5], 3, 3, 4, 6
    if impl == "triton" and not _triton.interpreting():
        noise = draw_noise(seeds, T, c, r, nz, device="cuda", impl=impl)
    else:
        noise = draw_noise(seeds, T, c, r, nz, impl=impl)
    for ours, expect in zip((noise.x_T, noise.z_T_noise, noise.z, noise.eps), _expected_noise(seeds, T, c, r, nz)):
        assert ours.dtype == torch.float32 and ours.is_contiguous()
        torch.testing.assert_close(ours.cpu(), expect, rtol=2e-7, atol=2e-7)


def test_draw_noise_independent_of_batch_and_position():
    a = draw_noise([7, 8, 9], 3, 3, 4, 6)
    b = draw_noise([9, 7], 3, 3, 4, 6)
    for ta, tb in ((a.x_T, b.x_T), (a.z_T_noise, b.z_T_noise)):
        assert torch.equal(ta[2], tb[0]) and torch.equal(ta[0], tb[1])
    for ta, tb in ((a.z, b.z), (a.eps, b.eps)):
        assert torch.equal(ta[:, 2], tb[:, 0]) and torch.equal(ta[:, 0], tb[:, 1])
    assert not torch.equal(a.x_T[0], a.x_T[1])
    assert not torch.equal(a.eps[0, 0], a.eps[1, 0])  # steps draw different noise
    assert not torch.equal(a.x_T[0].flatten()[:6], a.z_T_noise[0])  # tensors draw different noise


def test_draw_noise_edge_cases():
    empty = draw_noise([], 2, 3, 4, 6)
    assert empty.x_T.shape == (0, 3, 4, 4) and empty.z.shape == (1, 0, 6) and empty.eps.shape == (1, 0, 3, 4, 4)
    one_step = draw_noise([1], 1, 3, 4, 6)
    assert one_step.z.shape == (0, 1, 6) and one_step.eps.shape == (0, 1, 3, 4, 4)
    assert torch.equal(draw_noise([-1], 2, 1, 2, 2).x_T, draw_noise([2**64 - 1], 2, 1, 2, 2).x_T)
    with pytest.raises(ValueError, match="outside"):
        draw_noise([2**64], 2, 1, 2, 2)
    with pytest.raises(ValueError, match="impl"):
        draw_noise([1], 2, 1, 2, 2, impl="mt19937")


def test_draw_noise_statistics():
    noise = draw_noise(list(range(64)), 2, 3, 32, 32)
    x = torch.cat([noise.x_T.flatten(), noise.eps.flatten()]).double()
    assert abs(x.mean().item()) < 5 * (1 / x.numel()) ** 0.5 and abs(x.std().item() - 1) < 0.01


@CUDA
@pytest.mark.gpu
def test_draw_noise_same_on_cpu_and_cuda():
    """One seed, the same noise on CPU and GPU up to float rounding (libm vs libdevice float64)."""
    cpu = draw_noise(list(range(8)), 2, 3, 32, 32)
    for impl in ("reference", "native", "triton"):
        if impl == "native" and not native.cuda_available():
            continue
        gpu = draw_noise(list(range(8)), 2, 3, 32, 32, device="cuda", impl=impl)
        for a, b in zip((cpu.x_T, cpu.z_T_noise, cpu.z, cpu.eps), (gpu.x_T, gpu.z_T_noise, gpu.z, gpu.eps)):
            torch.testing.assert_close(b.cpu(), a, rtol=2e-7, atol=2e-7)


def test_the_old_name_of_z_T_noise_warns():
    noise = draw_noise([0, 1], 2, 1, 4, 3)
    with pytest.warns(DeprecationWarning, match="z_T_noise"):
        assert noise.latent is noise.z_T_noise
