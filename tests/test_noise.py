"""The sampler's noise definition (`pdgan_infer.sampler.draw_noise`): element j of tensor k of the image
with seed s is normal k * 2**34 + j of the Philox4x32-10 stream keyed by s. Every implementation (the
pure-torch reference, the C++ / CUDA kernels, the Triton kernel) is checked against the independent
pure-Python Philox + Box-Muller of philox_spec.py, itself checked on Random123's known-answer vectors."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from philox_spec import python_normals, random123_known_answers

from pdgan_infer.kernels import _triton, native
from pdgan_infer.kernels.reference import philox4x32_10_ref, philox_normal_rows_ref
from pdgan_infer.sampler import EPS, LATENT, TENSOR_STRIDE, X_T, Z, draw_noise

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_native = pytest.mark.skipif(not native.available(), reason=f"native: {native.unavailable_reason()}")
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None or not _triton.available(),
                                  reason="triton cannot run here (no CUDA and TRITON_INTERPRET unset)")
SEEDS = [0, 1, 42, 2**32 - 1, 2**40 + 7, -1]  # -1 is key 2**64 - 1
OFFSETS = [0, 3, 5, TENSOR_STRIDE + 1, 3 * TENSOR_STRIDE]


def spec_rows(seeds, count, offset):
    return torch.tensor([python_normals(count, s, offset) for s in seeds], dtype=torch.float32)


def test_reference_philox_known_answers():
    for ctr, key, expect in random123_known_answers():
        words = [torch.tensor([w], dtype=torch.int64) for w in (*ctr, *key)]
        assert tuple(int(r) for r in philox4x32_10_ref(*words)) == expect


@pytest.mark.parametrize("offset", OFFSETS)
def test_reference_rows_match_spec(offset):
    torch.testing.assert_close(philox_normal_rows_ref(torch.tensor(SEEDS), 37, offset), spec_rows(SEEDS, 37, offset),
                               rtol=0, atol=0)


@needs_native
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[CUDA, pytest.mark.gpu])])
@pytest.mark.parametrize("offset", OFFSETS)
def test_native_rows_match_spec(offset, device):
    ours = native.philox_normal_rows(SEEDS, 37, offset, device=device).cpu()
    torch.testing.assert_close(ours, spec_rows(SEEDS, 37, offset), rtol=2e-7, atol=2e-7)
    for row, seed in zip(ours, SEEDS):  # one row = the single-stream op of that seed
        assert torch.equal(row, native.philox_normal(37, seed, offset, device=device).cpu())


@needs_native
def test_native_rows_dtypes_and_threads():
    full = native.philox_normal_rows(list(range(50)), 4099, 7)
    torch.testing.assert_close(full, philox_normal_rows_ref(torch.arange(50), 4099, 7), rtol=2e-7, atol=2e-7)
    for dtype in (torch.float16, torch.bfloat16):
        assert torch.equal(native.philox_normal_rows(list(range(50)), 4099, 7, dtype=dtype), full.to(dtype))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(native.philox_normal_rows(list(range(50)), 4099, 7), full)
    finally:
        torch.set_num_threads(threads)


@needs_native
def test_native_rows_rejects_bad_inputs():
    out = torch.empty(3, 5)
    with pytest.raises(ValueError, match="int64 vector"):
        torch.ops.pdgan.philox_normal_rows_(out, torch.zeros(2, dtype=torch.int64), 0)
    with pytest.raises(ValueError, match="int64 vector"):
        torch.ops.pdgan.philox_normal_rows_(out, torch.zeros(3, dtype=torch.int32), 0)
    with pytest.raises(ValueError, match="offset"):
        torch.ops.pdgan.philox_normal_rows_(out, torch.zeros(3, dtype=torch.int64), -1)
    with pytest.raises(ValueError, match="contiguous"):
        torch.ops.pdgan.philox_normal_rows_(torch.empty(5, 3).t(), torch.zeros(3, dtype=torch.int64), 0)


@needs_triton
@pytest.mark.parametrize("offset", [0, 3, TENSOR_STRIDE + 1])
def test_triton_rows_match_spec(offset):
    from pdgan_infer.kernels.philox import philox_normal_rows
    device = "cpu" if _triton.interpreting() else "cuda"
    count = 1500  # more than one program (1024 normals each)
    ours = philox_normal_rows(torch.tensor(SEEDS, device=device), count, offset).cpu()
    torch.testing.assert_close(ours, spec_rows(SEEDS, count, offset), rtol=2e-7, atol=2e-7)
    for dtype in (torch.float16, torch.bfloat16):
        low = philox_normal_rows(torch.tensor(SEEDS, device=device), count, offset, dtype=dtype).cpu()
        assert torch.equal(low, ours.to(dtype))


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
    for ours, expect in zip((noise.x_T, noise.latent, noise.z, noise.eps), _expected_noise(seeds, T, c, r, nz)):
        assert ours.dtype == torch.float32 and ours.is_contiguous()
        torch.testing.assert_close(ours.cpu(), expect, rtol=2e-7, atol=2e-7)


def test_draw_noise_independent_of_batch_and_position():
    a = draw_noise([7, 8, 9], 3, 3, 4, 6)
    b = draw_noise([9, 7], 3, 3, 4, 6)
    for ta, tb in ((a.x_T, b.x_T), (a.latent, b.latent)):
        assert torch.equal(ta[2], tb[0]) and torch.equal(ta[0], tb[1])
    for ta, tb in ((a.z, b.z), (a.eps, b.eps)):
        assert torch.equal(ta[:, 2], tb[:, 0]) and torch.equal(ta[:, 0], tb[:, 1])
    assert not torch.equal(a.x_T[0], a.x_T[1])
    assert not torch.equal(a.eps[0, 0], a.eps[1, 0])  # steps draw different noise
    assert not torch.equal(a.x_T[0].flatten()[:6], a.latent[0])  # tensors draw different noise


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
        for a, b in zip((cpu.x_T, cpu.latent, cpu.z, cpu.eps), (gpu.x_T, gpu.latent, gpu.z, gpu.eps)):
            torch.testing.assert_close(b.cpu(), a, rtol=2e-7, atol=2e-7)
