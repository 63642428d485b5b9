"""Pure-torch references for the fused kernels. Every implementation (Triton, C++, CUDA) is tested
against these, computed in float32.

adagn_silu:      y[n, c] = silu(GroupNorm(x)[n, c] * gamma[n, c] + beta[n, c])
                 GroupNorm has no affine parameters; statistics over (C / G, H, W) per (n, g).
                 Written in the fused kernels' form  y = silu(x * a + d),  a = rstd * gamma,
                 d = beta - mean * a.
posterior_step:  x_{t-1} = c1 * x0 + c2 * x_t + sigma * noise        (q(x_{t-1} | x_t, x0) sample)
philox_normal_rows: the Philox4x32-10 normal stream of csrc/philox.h (documented in
                 `pdgan_infer.kernels.native`), one stream per row, in int64 / float64 torch ops (any device).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def adagn_silu_ref(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int,
                   eps: float = 1e-6) -> torch.Tensor:
    """x: (N, C, H, W); gamma, beta: (N, C). Returns silu(group_norm(x) * gamma + beta) in x.dtype,
    with statistics and arithmetic in float32."""
    n, c = x.shape[:2]
    xf = x.float()
    h = F.group_norm(xf, num_groups, eps=eps)
    y = h * gamma.float().reshape(n, c, 1, 1) + beta.float().reshape(n, c, 1, 1)
    return F.silu(y).to(x.dtype)


def adagn_silu_unfused(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int,
                       eps: float = 1e-6) -> torch.Tensor:
    """The unfused sequence the fused kernel replaces (GroupNorm, scale/shift, SiLU), in x.dtype.
    Used as the 'torch_same_dtype' term of the tolerance rule and as the benchmark baseline."""
    n, c = x.shape[:2]
    h = F.group_norm(x, num_groups, eps=eps)
    return F.silu(h * gamma.to(x.dtype).reshape(n, c, 1, 1) + beta.to(x.dtype).reshape(n, c, 1, 1))


def adagn_silu_f64(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int,
                   eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, scale) in float64: y the exact value of silu(x * a + d) for the given (already rounded) x, gamma
    and beta, two-pass statistics in float64; scale = |x * a| + |mean * a| + |beta| + |x * a + d| + |y| +
    |std * a|, the magnitudes a float32 implementation rounds on the way (the last one: its mean and variance
    are off by a few float32 roundings of the data's spread); its error is a small multiple of scale * 2**-24."""
    n, c = x.shape[:2]
    xd = x.double().reshape(n, num_groups, -1)
    mean = xd.mean(dim=2, keepdim=True)
    var = (xd - mean).square().mean(dim=2, keepdim=True)
    rstd = (var + eps).rsqrt()
    per_channel = lambda v: v.expand(n, num_groups, c // num_groups).reshape(n, c)[:, :, None, None]  # noqa: E731
    a = per_channel(rstd) * gamma.double()[:, :, None, None]
    m, sd, b = per_channel(mean), per_channel(var.sqrt()), beta.double()[:, :, None, None]
    xa = x.double() * a
    t = xa + (b - m * a)
    y = F.silu(t)
    return y, xa.abs() + (m * a).abs() + b.abs() + t.abs() + y.abs() + (sd * a).abs()


def ulp(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spacing of `dtype`'s numbers at |v| (float64): 2**(floor(log2 |v|) - mantissa bits), and the
    subnormal spacing below the smallest normal."""
    info = torch.finfo(dtype)
    mantissa_bits = -round(math.log2(info.eps))  # 23, 10, 7
    e = torch.floor(torch.log2(v.double().abs().clamp_min(info.tiny)))
    return torch.exp2(e - mantissa_bits)


FP32_SLACK = 8  # float32 roundings allowed per unit of `scale` (adagn_silu_f64); measured <= 2.5 on the CPU kernels


def adagn_silu_ulp_error(ours: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                         num_groups: int, eps: float = 1e-6, fp32_slack: float = FP32_SLACK) -> torch.Tensor:
    """Per element, (|ours - y_exact| - float32 slack) / ulp_dtype(y_exact): the error of the output's rounding
    in units in the last place of ours.dtype, after the float32 arithmetic's own error is allowed for.
    A kernel that computes in float32 and rounds to nearest gives <= 0.5 (half an ulp); rounding toward
    zero, a wrong eps, or gamma / beta rounded to a 16-bit dtype give more."""
    y, scale = adagn_silu_f64(x, gamma, beta, num_groups, eps)
    slack = fp32_slack * 2.0 ** -24 * scale
    return ((ours.double() - y).abs() - slack).clamp_min(0.0) / ulp(y, ours.dtype)


def posterior_step_ref(x0: torch.Tensor, xt: torch.Tensor, c1: float, c2: float, sigma: float,
                       noise: torch.Tensor | None) -> torch.Tensor:
    """x_{t-1} = c1 * x0 + c2 * x_t + sigma * noise, computed in float32, returned in x0.dtype."""
    y = c1 * x0.float() + c2 * xt.float()
    if noise is not None and sigma != 0.0:
        y = y + sigma * noise.float()
    return y.to(x0.dtype)


def posterior_step_ulp_error(ours: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, c1: float, c2: float,
                             sigma: float, noise: torch.Tensor | None) -> torch.Tensor:
    """Per element, like `adagn_silu_ulp_error`: (|ours - exact| - float32 slack) / ulp_dtype(exact), exact =
    c1 * x0 + c2 * xt + sigma * noise in float64 for the given inputs; <= 0.5 for float32 arithmetic rounded
    to nearest."""
    terms = [c1 * x0.double(), c2 * xt.double()]
    if noise is not None and sigma != 0.0:
        terms.append(sigma * noise.double())
    exact = sum(terms)
    scale = sum(t.abs() for t in terms) + exact.abs()
    slack = FP32_SLACK * 2.0 ** -24 * scale
    return ((ours.double() - exact).abs() - slack).clamp_min(0.0) / ulp(exact, ours.dtype)


# --- the Philox4x32-10 normal stream (csrc/philox.h), in int64 / float64 torch ops --------------------
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # round multipliers
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # key schedule increments
_M32 = 0xFFFFFFFF


def _mulhilo32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of a * b for a < 2**32 and int64 b < 2**32, without int64 overflow:
    a * b = (b * a_hi) * 2**16 + b * a_lo, each partial product < 2**48."""
    lo_part, hi_part = b * (a & 0xFFFF), b * (a >> 16)
    mid = lo_part + ((hi_part & 0xFFFF) << 16)
    return ((hi_part >> 16) + (mid >> 32)) & _M32, mid & _M32


def philox4x32_10_ref(c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor,
                      k0: torch.Tensor, k1: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 (Salmon et al., SC'11) on int64 tensors holding 32-bit words (broadcast together)."""
    for r in range(10):
        if r:
            k0, k1 = (k0 + PHILOX_W0) & _M32, (k1 + PHILOX_W1) & _M32
        hi0, lo0 = _mulhilo32(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox_normal_rows_ref(seeds: torch.Tensor, count: int, offset: int = 0) -> torch.Tensor:
    """(N, count) float32: row n holds normals offset .. offset + count - 1 of the Philox stream of
    seeds[n] (int64 tensor; the key is the seed's 64 bits): normal p is lane p % 4 of block p // 4,
    counter (lo32(b), hi32(b), 0, 0), u = (r + 0.5) / 2**32, Box-Muller in float64, rounded once."""
    seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1, 1)
    k0, k1 = seeds & _M32, (seeds >> 32) & _M32
    first, last = offset // 4, (offset + count + 3) // 4
    b = torch.arange(first, max(last, first), dtype=torch.int64, device=seeds.device).reshape(1, -1)
    r0, r1, r2, r3 = philox4x32_10_ref(b & _M32, b >> 32, torch.zeros_like(b), torch.zeros_like(b), k0, k1)
    u = [(r.double() + 0.5) * 2.0 ** -32 for r in (r0, r1, r2, r3)]
    radius01, radius23 = torch.sqrt(-2.0 * torch.log(u[0])), torch.sqrt(-2.0 * torch.log(u[2]))
    angle01, angle23 = 2.0 * math.pi * u[1], 2.0 * math.pi * u[3]
    z = torch.stack([radius01 * torch.cos(angle01), radius01 * torch.sin(angle01),
                     radius23 * torch.cos(angle23), radius23 * torch.sin(angle23)], dim=-1)  # (N, blocks, 4)
    z = z.reshape(seeds.shape[0], 4 * b.shape[1])[:, offset - 4 * first:offset - 4 * first + count]
    return z.float().contiguous()
