"""The project's Philox4x32-10 + Box-Muller normal stream in each implementation (the pure-torch reference,
the native C++ / CUDA kernels, the Triton kernel) against the independent pure-Python Philox + Box-Muller of
philox_spec.py, itself checked on Random123's known-answer vectors: single streams, rows of streams (one per
seed, as `sampler.draw_noise` uses them), long streams past the CPU kernel's parallel chunks, statistics."""
from __future__ import annotations

import pytest
import torch
from native_impl import DEVICES, needs_native
from philox_spec import MASK, philox4x32_10, python_normals, random123_known_answers

from pdgan_infer.kernels import _triton, native
from pdgan_infer.kernels.reference import philox4x32_10_ref, philox_normal_rows_ref
from pdgan_infer.sampler import TENSOR_STRIDE

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_triton = pytest.mark.skipif(not _triton.available(), reason="triton is not installed or cannot run here")
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
