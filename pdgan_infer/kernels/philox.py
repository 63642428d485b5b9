"""The Philox4x32-10 normal stream of csrc/philox.h in Triton: the per-image noise rows of
`pdgan_infer.sampler.draw_noise` and the in-kernel noise of the Triton posterior step.

    key      = (lo32(seed), hi32(seed));  normal p: block b = p // 4, lane p % 4
    counter  = (lo32(b), hi32(b), 0, 0);  (r0, r1, r2, r3) = Philox4x32-10(counter, key)
    u_k      = (r_k + 0.5) / 2**32;  lanes 0, 1 = sqrt(-2 ln u0) (cos, sin)(2 pi u1); 2, 3 likewise from u2, u3
    computed in float64, rounded to float32 (then to the output dtype, as the C++ / CUDA kernels).

Reference: `reference.philox_normal_rows_ref`; the C++ / CUDA kernels compute the same numbers
(`native.philox_normal_rows`). Float64 transcendental functions are libdevice's on the GPU (as in the
CUDA kernels) and numpy's in the interpreter, so results agree to float32 rounding.
"""
from __future__ import annotations

import torch

from ._triton import check_device, import_triton, on_device

triton, tl = import_triton()

BLOCKS = 256  # Philox blocks (4 normals each) per program
MAX_ROWS = 65535  # grid axis 1
TWO_PI = tl.constexpr(6.283185307179586476925286766559)  # module values read in @triton.jit code are constexprs
INV_2_32 = tl.constexpr(2.3283064365386962890625e-10)  # 2**-32


@triton.jit
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten rounds on uint32 words, the key bumped between rounds (Random123's philox4x32_R(10))."""
    for r in tl.static_range(10):
        if r > 0:
            k0 = k0 + 0x9E3779B9
            k1 = k1 + 0xBB67AE85
        hi0 = tl.umulhi(c0, 0xD2511F53)
        lo0 = c0 * 0xD2511F53
        hi1 = tl.umulhi(c2, 0xCD9E8D57)
        lo1 = c2 * 0xCD9E8D57
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


@triton.jit
def _cos_sin_2pi(u):
    """(cos, sin)(2 pi u) for float64 u in (0, 1), without libdevice's trigonometric slow path (its
    Payne-Hanek tables live in local memory): q = round(4u) quarter turns, r = u - q / 4 in [-1/8, 1/8]
    (exact), a = 2 pi r, |a| <= pi / 4, Taylor polynomials to a**16 / a**17 (truncation < 1e-18), then
    the quarter-turn rotation. Float64 throughout: a few ulps of float64 from libm's cos / sin."""
    q = (u * 4.0 + 0.5).to(tl.int32)  # u > 0: truncation is floor
    a = (u - q.to(tl.float64) * 0.25) * TWO_PI
    a2 = a * a
    s = a * (1.0 + a2 * (-1.0 / 6 + a2 * (1.0 / 120 + a2 * (-1.0 / 5040 + a2 * (1.0 / 362880 + a2 * (
        -1.0 / 39916800 + a2 * (1.0 / 6227020800 + a2 * (-1.0 / 1307674368000 + a2 * (
            1.0 / 355687428096000)))))))))
    c = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24 + a2 * (-1.0 / 720 + a2 * (1.0 / 40320 + a2 * (-1.0 / 3628800 + a2 * (
        1.0 / 479001600 + a2 * (-1.0 / 87178291200 + a2 * (1.0 / 20922789888000))))))))
    q = q & 3  # cos(a + q pi/2), sin(a + q pi/2)
    cos = tl.where(q == 0, c, tl.where(q == 1, -s, tl.where(q == 2, -c, s)))
    sin = tl.where(q == 0, s, tl.where(q == 1, c, tl.where(q == 2, -s, -c)))
    return cos, sin


@triton.jit
def _box_muller(r_radius, r_angle):
    """Two float64 normals from two uint32 words."""
    u_radius = (r_radius.to(tl.float64) + 0.5) * INV_2_32
    u_angle = (r_angle.to(tl.float64) + 0.5) * INV_2_32
    radius = tl.sqrt(-2.0 * tl.log(u_radius))  # float64: sqrt.rn.f64, libdevice log
    cos, sin = _cos_sin_2pi(u_angle)
    return radius * cos, radius * sin


@triton.jit
def _philox_blocks(seed, b):
    """The four float64 normals of Philox blocks `b` (int64 tensor) of key `seed` (int64 scalar)."""
    seed = seed.to(tl.int64).to(tl.uint64, bitcast=True)  # a small seed argument arrives as int32
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    bu = b.to(tl.uint64, bitcast=True)
    c0 = (bu & 0xFFFFFFFF).to(tl.uint32)
    c1 = (bu >> 32).to(tl.uint32)
    zero = tl.zeros(b.shape, tl.uint32)
    r0, r1, r2, r3 = _philox4x32_10(c0, c1, zero, zero, k0, k1)
    z0, z1 = _box_muller(r0, r1)
    z2, z3 = _box_muller(r2, r3)
    return z0, z1, z2, z3


@triton.jit
def philox_normal_quads(seed, b, NB: tl.constexpr):
    """The 4 * NB float32 normals of Philox blocks `b` (an (NB,) int64 tensor) of the stream of `seed`,
    block by block: element 4 j + k is lane k of block b[j] (stream position 4 b[j] + k)."""
    z0, z1, z2, z3 = _philox_blocks(seed, b)
    return tl.reshape(tl.join(tl.join(z0, z2), tl.join(z1, z3)), [4 * NB]).to(tl.float32)


@triton.jit
def _round_to(x, dtype: tl.constexpr):
    """float32 -> dtype, round to nearest even. bfloat16 is rounded in integer arithmetic: the GPU's
    cvt.rn does the same, Triton's interpreter would truncate (finite x only: these are normals)."""
    if dtype == tl.bfloat16:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return x.to(dtype)


@triton.jit
def _philox_rows_kernel(
    OUT,  # (rows, cols) output, contiguous, float32/float16/bfloat16
    SEEDS,  # (rows,) int64 keys
    cols,  # int, row length
    first_block,  # int64, offset // 4
    LEAD: tl.constexpr,  # offset % 4: the first block's lanes before the row starts (0: aligned stores)
    BLOCKS: tl.constexpr,  # Philox blocks per program
):
    row = tl.program_id(1)
    seed = tl.load(SEEDS + row)
    block = tl.program_id(0) * BLOCKS + tl.arange(0, BLOCKS)
    z = philox_normal_quads(seed, first_block + block.to(tl.int64), BLOCKS)
    e = tl.program_id(0) * (4 * BLOCKS) + tl.arange(0, 4 * BLOCKS) - LEAD
    mask = (e >= 0) & (e < cols)
    tl.store(OUT + row.to(tl.int64) * cols + e, _round_to(z, OUT.dtype.element_ty), mask=mask)


def philox_normal_rows(seeds: torch.Tensor, count: int, offset: int = 0, dtype: torch.dtype = torch.float32
                       ) -> torch.Tensor:
    """(len(seeds), count) on seeds' device: row n holds normals offset .. offset + count - 1 of the stream
    of seeds[n] (a 1-D int64 tensor; the key is its 64 bits)."""
    if seeds.dtype != torch.int64 or seeds.dim() != 1:
        raise ValueError(f"philox_normal_rows: seeds must be a 1-D int64 tensor, got {seeds.dtype} "
                         f"{tuple(seeds.shape)}")
    if not 0 <= offset < 2**62 or count < 0 or count >= 2**31:
        raise ValueError(f"philox_normal_rows: need 0 <= offset < 2**62 and 0 <= count < 2**31, got {offset}, {count}")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"philox_normal_rows: dtype must be float32, float16 or bfloat16, got {dtype}")
    check_device("philox_normal_rows", _philox_rows_kernel, seeds)
    seeds = seeds.contiguous()
    out = torch.empty((seeds.shape[0], count), dtype=dtype, device=seeds.device)
    if out.numel() == 0:
        return out
    lead = offset & 3
    programs = -(-(lead + count) // (4 * BLOCKS))
    with on_device(seeds.device):
        for start in range(0, seeds.shape[0], MAX_ROWS):  # grid axis 1 holds at most 65535 rows
            rows = min(MAX_ROWS, seeds.shape[0] - start)
            _philox_rows_kernel[(programs, rows)](out[start:], seeds[start:], count, offset >> 2,
                                                  LEAD=lead, BLOCKS=BLOCKS, num_warps=4)
    return out
