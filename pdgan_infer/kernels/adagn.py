"""Fused adaptive GroupNorm + SiLU (Triton).

    y[n, c, p] = silu(x[n, c, p] * a[n, c] + d[n, c])
    a[n, c]    = rstd[n, g] * gamma[n, c],      d[n, c] = beta[n, c] - mean[n, g] * a[n, c]
    mean, var  = float32 statistics of x[n, g*Cg:(g+1)*Cg, :, :] (var biased, as F.group_norm),
    rstd       = 1 / sqrt(var + eps),  Cg = C / G,  p = h * W + w.

Reference: `reference.adagn_silu_ref`. x is NCHW or channels_last; every kernel addresses element
(n, c, p) as n*stride_n + c*stride_c + p*stride_p, so one kernel serves both layouts, and Triton's
specialisation of unit strides makes the accesses contiguous and vectorised along whichever axis is
dense in memory. Two paths, chosen by group size:

* single (padded group Cg x HW <= SINGLE_MAX): one program per (n, g) holds the whole group in
  registers: exact two-pass mean and variance, then the output. x is read once. In channels_last a
  group narrower than a 32-byte sector (Cg = 4: C = 128 / G = 32, C = 64 / G = 16) is widened: one
  program (`_adagn_silu_wide_kernel`) holds G_BLOCK whole groups, i.e. a run of G_BLOCK * Cg contiguous
  channels per pixel (up to a 128-byte line), with per-group sums; same arithmetic.
* split (bigger groups, e.g. celebahq256's 4 x 65536): three launches so the whole GPU works on
  every group. `_stats_kernel` writes (count, mean, M2) per tile of about `tile` elements; a tile is
  a contiguous channel range x a pixel range: one group's channels in NCHW, G_BLOCK whole groups in
  channels_last (so the tile is one dense block of memory, not a group's strided channel runs).
  `_finalize_kernel` merges the tiles of each (n, g) with Chan's parallel formula (no
  E[x^2] - E[x]^2 cancellation) into a, d. `_apply_kernel` writes y, walking the tiles in reverse
  memory order so that it starts on the tiles the stats pass read last (still in L2).

Both paths sum x - x[n, g*Cg, 0] (a pivot), so a large |mean| / std costs the statistics no precision
beyond the float32 rounding of the mean itself. The apply step `x * a + d` with d = beta - mean * a
still cancels: its error is about |mean| * rstd * |gamma| * 2**-24, the order of x's own float32
quantisation at that offset (the C++ and CUDA kernels share the form and the bound).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ._triton import check_device, import_triton, on_device

triton, tl = import_triton()

SINGLE_MAX = 8192  # largest padded group (Cg x HW, each rounded up to a power of two) in registers
TILE = 4096  # elements per program of the split path's stats and apply kernels
MERGE_BLOCK = 1024  # partials merged / channels written per step of the split path's finalize
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
WIDE_MIN_BYTES = 32  # channels_last groups whose pixel run is narrower than a sector are widened ...
WIDE_MAX_BYTES = 128  # ... to G_BLOCK groups, a run of at most a cache line


@triton.jit
def _silu(y):
    return y / (1.0 + tl.exp(-y))


@triton.jit
def _adagn_silu_single_kernel(
    X,  # (N, C, H, W) input, NCHW or channels_last: element (n, c, p) at n*sn + c*sc + p*sp
    Y,  # (N, C, H, W) output, dtype and strides of X
    GAMMA,  # (N, C) float, unit column stride (e.g. a chunk of the style Linear's output)
    BETA,  # (N, C) float, unit column stride
    stride_n, stride_c, stride_p,  # strides of X and Y, in elements
    stride_gamma, stride_beta,  # row strides of GAMMA and BETA
    G, HW,  # groups, pixels
    eps,  # float
    Cg: tl.constexpr,  # channels per group (constexpr: aligned vector loads in channels_last)
    CG_BLOCK: tl.constexpr,  # next_power_of_2(Cg)
    P_BLOCK: tl.constexpr,  # next_power_of_2(HW)
):
    pid = tl.program_id(0)  # one program per (n, g)
    n = pid // G
    g = pid % G
    c = tl.arange(0, CG_BLOCK)
    p = tl.arange(0, P_BLOCK)
    cmask = c < Cg
    mask = cmask[:, None] & (p[None, :] < HW)
    offs = n.to(tl.int64) * stride_n + (g * Cg + c[:, None]) * stride_c + p[None, :] * stride_p
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)  # (CG_BLOCK, P_BLOCK)
    pivot = tl.load(X + n.to(tl.int64) * stride_n + g * Cg * stride_c).to(tl.float32)  # x[n, g*Cg, 0]
    count = HW * Cg * 1.0
    shifted = tl.where(mask, x - pivot, 0.0)  # sums of x - pivot: no rounding of a large |mean|
    mean_s = tl.sum(tl.sum(shifted, axis=1), axis=0) / count
    diff = tl.where(mask, shifted - mean_s, 0.0)
    var = tl.sum(tl.sum(diff * diff, axis=1), axis=0) / count
    mean = pivot + mean_s
    rstd = tl.rsqrt(var + eps)
    gamma = tl.load(GAMMA + n * stride_gamma + g * Cg + c, mask=cmask, other=0.0).to(tl.float32)
    beta = tl.load(BETA + n * stride_beta + g * Cg + c, mask=cmask, other=0.0).to(tl.float32)
    a = rstd * gamma
    d = beta - mean * a
    y = _silu(x * a[:, None] + d[:, None])
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _adagn_silu_wide_kernel(
    X,  # (N, C, H, W) input, channels_last: element (n, c, p) at n*sn + c*sc + p*sp
    Y,  # (N, C, H, W) output, dtype and strides of X
    GAMMA,  # (N, C) float, unit column stride
    BETA,  # (N, C) float, unit column stride
    stride_n, stride_c, stride_p,  # strides of X and Y, in elements
    stride_gamma, stride_beta,  # row strides of GAMMA and BETA
    C, G, HW, n_gb,  # channels, groups, pixels, group blocks per image (cdiv(G, G_BLOCK))
    eps,  # float
    Cg: tl.constexpr,  # channels per group
    G_BLOCK: tl.constexpr,  # whole groups per program, power of two
    CT: tl.constexpr,  # next_power_of_2(G_BLOCK * Cg): the channel run of one pixel
    P_BLOCK: tl.constexpr,  # next_power_of_2(HW)
):
    pid = tl.program_id(0)  # one program per (n, run of G_BLOCK groups)
    n = pid // n_gb
    g_first = (pid % n_gb) * G_BLOCK
    lo = g_first * Cg
    ch = lo + tl.arange(0, CT)  # (CT,) contiguous channels: G_BLOCK groups (fewer in the last block)
    p = tl.arange(0, P_BLOCK)
    chmask = ch < tl.minimum(lo + G_BLOCK * Cg, C)
    mask = chmask[:, None] & (p[None, :] < HW)
    offs = n.to(tl.int64) * stride_n + ch[:, None] * stride_c + p[None, :] * stride_p
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)  # (CT, P_BLOCK)
    lg = tl.arange(0, G_BLOCK)
    gmask = g_first + lg < G
    # channel -> group of the run, as a (G_BLOCK, CT) one-hot matrix (tiny next to the tile)
    onehot = ((ch // Cg - g_first)[None, :] == lg[:, None]) & chmask[None, :]
    pivot = tl.load(X + n.to(tl.int64) * stride_n + (g_first + lg) * Cg * stride_c, mask=gmask,
                    other=0.0).to(tl.float32)  # x[n, g*Cg, 0] per group
    pivot_ch = tl.sum(tl.where(onehot, pivot[:, None], 0.0), axis=0)  # (CT,)
    count = HW * Cg * 1.0
    shifted = tl.where(mask, x - pivot_ch[:, None], 0.0)  # sums of x - pivot: no rounding of a large |mean|
    mean_s = tl.sum(tl.where(onehot, tl.sum(shifted, axis=1)[None, :], 0.0), axis=1) / count  # (G_BLOCK,)
    mean_s_ch = tl.sum(tl.where(onehot, mean_s[:, None], 0.0), axis=0)
    diff = tl.where(mask, shifted - mean_s_ch[:, None], 0.0)
    var = tl.sum(tl.where(onehot, tl.sum(diff * diff, axis=1)[None, :], 0.0), axis=1) / count
    rstd = tl.rsqrt(var + eps)
    rstd_ch = tl.sum(tl.where(onehot, rstd[:, None], 0.0), axis=0)
    gamma = tl.load(GAMMA + n * stride_gamma + ch, mask=chmask, other=0.0).to(tl.float32)
    beta = tl.load(BETA + n * stride_beta + ch, mask=chmask, other=0.0).to(tl.float32)
    a = rstd_ch * gamma
    d = beta - (pivot_ch + mean_s_ch) * a
    y = _silu(x * a[:, None] + d[:, None])
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _stats_kernel(
    X,  # (N, C, H, W) input: element (n, c, p) at n*sn + c*sc + p*sp
    PART,  # (3, N*G, K) float32 out: (count, mean - pivot, M2) per group and tile, K = n_cb * S
    stride_n, stride_c, stride_p,  # strides of X, in elements
    C, G, Cg, HW,  # channels, groups, channels per group, pixels
    n_gb, n_cb, S, plane,  # group blocks, channel blocks per group, pixel blocks, N*G*K
    G_BLOCK: tl.constexpr,  # whole groups per tile (1 when n_cb > 1)
    CT: tl.constexpr,  # channels per tile, power of two, >= G_BLOCK * Cg when n_cb == 1
    P_BLOCK: tl.constexpr,  # pixels per tile, power of two
    CHANNELS_LAST: tl.constexpr,  # program order follows memory order
):
    pid = tl.program_id(0)
    if CHANNELS_LAST:  # tiles in memory order (n, s, gb, cb)
        cb = pid % n_cb
        gb = (pid // n_cb) % n_gb
        s = (pid // (n_cb * n_gb)) % S
        n = pid // (n_cb * n_gb * S)
    else:  # tiles in memory order (n, gb, cb, s)
        s = pid % S
        cb = (pid // S) % n_cb
        gb = (pid // (S * n_cb)) % n_gb
        n = pid // (S * n_cb * n_gb)
    g_first = gb * G_BLOCK
    lo = g_first * Cg + cb * CT
    hi = tl.minimum(tl.minimum(lo + CT, (g_first + G_BLOCK) * Cg), C)
    ch = lo + tl.arange(0, CT)  # (CT,) channels of this tile
    p = s * P_BLOCK + tl.arange(0, P_BLOCK)  # (P_BLOCK,)
    chmask = ch < hi
    mask = chmask[:, None] & (p[None, :] < HW)
    offs = n.to(tl.int64) * stride_n + ch[:, None] * stride_c + p[None, :] * stride_p
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)  # (CT, P_BLOCK)
    lg = tl.arange(0, G_BLOCK)
    g = g_first + lg
    gmask = g < G
    # channel -> group of the tile, as a (G_BLOCK, CT) one-hot matrix (tiny next to the tile)
    onehot = ((ch // Cg - g_first)[None, :] == lg[:, None]) & chmask[None, :]
    pivot = tl.load(X + n.to(tl.int64) * stride_n + g * Cg * stride_c, mask=gmask, other=0.0)
    pivot_ch = tl.sum(tl.where(onehot, pivot.to(tl.float32)[:, None], 0.0), axis=0)  # (CT,)
    shifted = tl.where(mask, x - pivot_ch[:, None], 0.0)  # x[n, g*Cg, 0] as the group's pivot
    n_pix = tl.minimum(HW - s * P_BLOCK, P_BLOCK).to(tl.float32)
    count = tl.sum(onehot.to(tl.float32), axis=1) * n_pix  # (G_BLOCK,)
    gsum = tl.sum(tl.where(onehot, tl.sum(shifted, axis=1)[None, :], 0.0), axis=1)
    mean = gsum / tl.maximum(count, 1.0)
    mean_ch = tl.sum(tl.where(onehot, mean[:, None], 0.0), axis=0)  # (CT,)
    diff = tl.where(mask, shifted - mean_ch[:, None], 0.0)
    m2 = tl.sum(tl.where(onehot, tl.sum(diff * diff, axis=1)[None, :], 0.0), axis=1)
    K = n_cb * S
    dst = PART + (n * G + g) * K + cb * S + s
    tl.store(dst, count, mask=gmask)
    tl.store(dst + plane, mean, mask=gmask)
    tl.store(dst + 2 * plane, m2, mask=gmask)


@triton.jit
def _finalize_kernel(
    X,  # (N, C, H, W) input, for the pivots x[n, g*Cg, 0]
    PART,  # (3, N*G, K) float32: (count, mean - pivot, M2) per group and tile
    GAMMA,  # (N, C) float, unit column stride
    BETA,  # (N, C) float, unit column stride
    AD,  # (2, N, C) float32 out: a, d
    stride_n, stride_c,  # strides of X, in elements
    stride_gamma, stride_beta,  # row strides of GAMMA and BETA
    C, G, Cg, K, plane, NC,  # plane = N*G*K, NC = N*C
    eps,  # float
    R_BLOCK: tl.constexpr,  # partials merged per step, power of two
    C_BLOCK: tl.constexpr,  # channels written per step, power of two
):
    pid = tl.program_id(0)  # one program per (n, g)
    n = pid // G
    g = pid % G
    count = 0.0
    mean = 0.0
    m2 = 0.0
    for k0 in range(0, K, R_BLOCK):  # Chan et al.: merge a block of partials, then into the total
        k = k0 + tl.arange(0, R_BLOCK)
        kmask = k < K
        src = PART + pid * K + k
        cnt_k = tl.load(src, mask=kmask, other=0.0)
        mean_k = tl.load(src + plane, mask=kmask, other=0.0)
        m2_k = tl.load(src + 2 * plane, mask=kmask, other=0.0)
        cnt_b = tl.sum(cnt_k, axis=0)
        mean_b = tl.sum(cnt_k * mean_k, axis=0) / cnt_b
        dev = mean_k - mean_b
        m2_b = tl.sum(m2_k, axis=0) + tl.sum(cnt_k * dev * dev, axis=0)
        total = count + cnt_b
        delta = mean_b - mean
        mean = mean + delta * (cnt_b / total)
        m2 = m2 + m2_b + delta * delta * (count * cnt_b / total)
        count = total
    rstd = tl.rsqrt(m2 / count + eps)
    mean += tl.load(X + n.to(tl.int64) * stride_n + g * Cg * stride_c).to(tl.float32)
    for c0 in range(0, Cg, C_BLOCK):
        c = c0 + tl.arange(0, C_BLOCK)
        cmask = c < Cg
        idx = n * C + g * Cg + c
        gamma = tl.load(GAMMA + n * stride_gamma + g * Cg + c, mask=cmask, other=0.0).to(tl.float32)
        beta = tl.load(BETA + n * stride_beta + g * Cg + c, mask=cmask, other=0.0).to(tl.float32)
        a = rstd * gamma
        tl.store(AD + idx, a, mask=cmask)
        tl.store(AD + NC + idx, beta - mean * a, mask=cmask)


@triton.jit
def _apply_kernel(
    X,  # (N, C, H, W) input: element (n, c, p) at n*sn + c*sc + p*sp
    Y,  # (N, C, H, W) output, dtype and strides of X
    AD,  # (2, N, C) float32: a, d
    stride_n, stride_c, stride_p,  # strides of X and Y, in elements
    C, HW, NC,  # channels, pixels, N*C
    n_cb, n_pb,  # channel blocks, pixel blocks
    C_BLOCK: tl.constexpr,  # channels per tile, power of two
    P_BLOCK: tl.constexpr,  # pixels per tile, power of two
    CHANNELS_LAST: tl.constexpr,  # program order follows memory order
):
    pid = tl.num_programs(0) - 1 - tl.program_id(0)  # reversed: the last tiles read are in L2
    if CHANNELS_LAST:  # tiles in memory order (n, pb, cb)
        cb = pid % n_cb
        pb = (pid // n_cb) % n_pb
        n = pid // (n_cb * n_pb)
    else:  # tiles in memory order (n, cb, pb)
        pb = pid % n_pb
        cb = (pid // n_pb) % n_cb
        n = pid // (n_pb * n_cb)
    c = cb * C_BLOCK + tl.arange(0, C_BLOCK)
    p = pb * P_BLOCK + tl.arange(0, P_BLOCK)
    cmask = c < C
    mask = cmask[:, None] & (p[None, :] < HW)
    a = tl.load(AD + n * C + c, mask=cmask, other=0.0)
    d = tl.load(AD + NC + n * C + c, mask=cmask, other=0.0)
    offs = n.to(tl.int64) * stride_n + c[:, None] * stride_c + p[None, :] * stride_p
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)  # (C_BLOCK, P_BLOCK)
    y = _silu(x * a[:, None] + d[:, None])
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------
# host side
# ------------------------------------------------------------------------------------------------
def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _warps(elements: int) -> int:
    return 1 if elements <= 256 else 2 if elements <= 512 else 4 if elements <= 2048 else 8 if elements <= 4096 else 16


def _dense(x: torch.Tensor) -> bool:
    return x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)


def _check(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int, eps: float):
    if x.dim() != 4:
        raise ValueError(f"adagn_silu: x must be (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise ValueError(f"adagn_silu: x dtype must be one of {DTYPES}, got {x.dtype}")
    n, c = x.shape[:2]
    for name, t in (("gamma", gamma), ("beta", beta)):
        if tuple(t.shape) != (n, c):
            raise ValueError(f"adagn_silu: {name} must have shape (N, C) = {(n, c)}, got {tuple(t.shape)}")
        if not t.dtype.is_floating_point:
            raise ValueError(f"adagn_silu: {name} must be a float tensor, got {t.dtype}")
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"adagn_silu: C = {c} is not divisible by num_groups = {num_groups}")
    if c * x.shape[2] * x.shape[3] >= 2**31:
        raise ValueError(f"adagn_silu: one image of {tuple(x.shape[1:])} exceeds int32 indexing")
    if not eps >= 0.0:
        raise ValueError(f"adagn_silu: eps must be >= 0, got {eps}")


class AdaGNPlan(NamedTuple):
    """How `adagn_silu` runs one call: path "single" (one launch, the group in registers) or "split"
    (stats / finalize / apply); g_block: whole groups per program (single path: > 1 only for the wide
    channels_last kernel; split path: groups per stats tile)."""
    path: str
    g_block: int


def adagn_plan(shape, dtype: torch.dtype, num_groups: int, channels_last: bool, *, split: bool | None = None,
               tile: int = TILE, g_block: int | None = None) -> AdaGNPlan:
    """The launch plan for x of `shape` (N, C, H, W) and `dtype`, laid out channels_last (channels the
    dense axis) or NCHW. split / tile as in `adagn_silu`; g_block forces the single path's groups per
    program (benchmarks, tests; a power of two, channels_last only)."""
    _, c, h, w = shape
    g, hw = num_groups, h * w
    cg = c // g
    single_elems = _pow2(cg) * _pow2(hw)
    if split is None:
        split = single_elems > SINGLE_MAX
    if not split:
        if single_elems > SINGLE_MAX:
            raise ValueError(f"adagn_silu: a group of {cg} x {hw} is too big for the single path")
        if g_block is not None:
            if g_block < 1 or g_block & (g_block - 1) or (g_block > 1 and not channels_last):
                raise ValueError(f"adagn_silu: g_block must be a power of two (1 in NCHW), got {g_block}")
            if _pow2(g_block * cg) * _pow2(hw) > SINGLE_MAX:
                raise ValueError(f"adagn_silu: {g_block} groups of {cg} x {hw} are too big for the single path")
            return AdaGNPlan("single", g_block)
        # channels_last runs of one group narrower than a sector: widen to gb groups while the run stays
        # within a cache line and the padded tile within SINGLE_MAX
        esize, gb = dtype.itemsize, 1
        if channels_last and cg * esize < WIDE_MIN_BYTES:
            while (2 * gb <= g and 2 * gb * cg * esize <= WIDE_MAX_BYTES
                   and _pow2(2 * gb * cg) * _pow2(hw) <= SINGLE_MAX):
                gb *= 2
        return AdaGNPlan("single", gb)
    if tile < 1 or tile & (tile - 1):
        raise ValueError(f"adagn_silu: tile must be a power of two, got {tile}")
    # stats tiles: a contiguous channel range (G_BLOCK whole groups, or 1/n_cb of a big group)
    if cg > tile:
        return AdaGNPlan("split", 1)
    gb = _pow2(g) if channels_last else 1
    while gb > 1 and gb * _pow2(gb * cg) > tile:  # the (G_BLOCK, CT) one-hot too
        gb //= 2
    return AdaGNPlan("split", gb)


def adagn_silu(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int,
               eps: float = 1e-6, *, split: bool | None = None, tile: int = TILE,
               g_block: int | None = None) -> torch.Tensor:
    """silu(group_norm(x) * gamma + beta) (see `_adagn_silu`), launched on x's device."""
    with on_device(x.device):  # Triton launches on the current device
        return _adagn_silu(x, gamma, beta, num_groups, eps, split=split, tile=tile, g_block=g_block)


def _layout(x: torch.Tensor) -> tuple[tuple[int, int, int], bool]:
    """((stride_n, stride_c, stride_p), channels_last) of a dense x: channels_last when channels are the
    dense axis (also for a single pixel)."""
    h, w = x.shape[2:]
    stride_p = x.stride(3) if w > 1 else x.stride(2)
    return (x.stride(0), x.stride(1), stride_p), not (h * w > 1 and stride_p == 1)


def _adagn_silu(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int,
                eps: float = 1e-6, *, split: bool | None = None, tile: int = TILE,
                g_block: int | None = None) -> torch.Tensor:
    """silu(group_norm(x) * gamma + beta), reading x once (twice for groups over SINGLE_MAX).

    x: (N, C, H, W) float32/float16/bfloat16, NCHW or channels_last (other layouts are copied to
    NCHW), C * H * W < 2**31; gamma, beta: (N, C) float, rows may be strided (e.g. the two halves
    of the style Linear's output). Returns y with x's dtype and memory format.
    split: None picks the path by group size; True/False force the split/single path (tests,
    benchmarks). tile: elements per program of the split path (a power of two). g_block: groups per
    program of the single path (None: `adagn_plan`'s choice). The plan: `adagn_plan`."""
    _check(x, gamma, beta, num_groups, eps)
    check_device("adagn_silu", _adagn_silu_single_kernel, x, gamma, beta)
    if not _dense(x):
        x = x.contiguous()
    gamma, beta = (t if t.stride(1) == 1 or t.shape[1] == 1 else t.contiguous() for t in (gamma, beta))
    strides, channels_last = _layout(x)
    plan = adagn_plan(x.shape, x.dtype, num_groups, channels_last, split=split, tile=tile, g_block=g_block)
    y = torch.empty_like(x)  # dense x: the same strides
    if y.numel() == 0:
        return y
    n, c, h, w = x.shape
    g, cg, hw = num_groups, c // num_groups, h * w
    if plan.path == "single" and plan.g_block == 1:
        single_elems = _pow2(cg) * _pow2(hw)
        _adagn_silu_single_kernel[(n * g,)](
            x, y, gamma, beta, *strides, gamma.stride(0), beta.stride(0), g, hw, eps,
            Cg=cg, CG_BLOCK=_pow2(cg), P_BLOCK=_pow2(hw), num_warps=_warps(single_elems))
        return y
    if plan.path == "single":
        ct, n_gb = _pow2(plan.g_block * cg), _cdiv(g, plan.g_block)
        _adagn_silu_wide_kernel[(n * n_gb,)](
            x, y, gamma, beta, *strides, gamma.stride(0), beta.stride(0), c, g, hw, n_gb, eps,
            Cg=cg, G_BLOCK=plan.g_block, CT=ct, P_BLOCK=_pow2(hw), num_warps=_warps(ct * _pow2(hw)))
        return y
    # stats tiles: a contiguous channel range (G_BLOCK whole groups, or 1/n_cb of a big group)
    g_block = plan.g_block
    if cg > tile:
        ct, n_cb = tile, _cdiv(cg, tile)
    else:
        ct, n_cb = _pow2(g_block * cg), 1
    p_block = max(1, min(_pow2(hw), tile // ct))
    n_gb, s = _cdiv(g, g_block), _cdiv(hw, p_block)
    k = n_cb * s
    plane = n * g * k
    part = torch.empty((3, plane), device=x.device, dtype=torch.float32)
    _stats_kernel[(n * n_gb * n_cb * s,)](
        x, part, *strides, c, g, cg, hw, n_gb, n_cb, s, plane,
        G_BLOCK=g_block, CT=ct, P_BLOCK=p_block, CHANNELS_LAST=channels_last,
        num_warps=_warps(ct * p_block))
    ad = torch.empty((2, n, c), device=x.device, dtype=torch.float32)
    r_block, c_block = min(_pow2(k), MERGE_BLOCK), min(_pow2(cg), MERGE_BLOCK)
    _finalize_kernel[(n * g,)](
        x, part, gamma, beta, ad, *strides[:2], gamma.stride(0), beta.stride(0), c, g, cg, k, plane,
        n * c, eps,
        R_BLOCK=r_block, C_BLOCK=c_block, num_warps=_warps(max(r_block, c_block)))
    # apply tiles: dense in memory (a pixel run of every channel block, or a channel's pixel run)
    if channels_last:
        c_block = min(_pow2(c), tile)
        p_block = max(1, min(_pow2(hw), tile // c_block))
    else:
        p_block = min(_pow2(hw), tile)
        c_block = max(1, min(_pow2(c), tile // p_block))
    n_cb, n_pb = _cdiv(c, c_block), _cdiv(hw, p_block)
    _apply_kernel[(n * n_cb * n_pb,)](
        x, y, ad, *strides, c, hw, n * c, n_cb, n_pb,
        C_BLOCK=c_block, P_BLOCK=p_block, CHANNELS_LAST=channels_last,
        num_warps=_warps(c_block * p_block))
    return y


# torch.compile / export see one opaque op with a shape-only fake implementation.
@torch.library.custom_op("pdgan_triton::adagn_silu", mutates_args=())
def adagn_silu_op(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int,
                  eps: float = 1e-6) -> torch.Tensor:
    return adagn_silu(x, gamma, beta, num_groups, eps)


@adagn_silu_op.register_fake
def _(x, gamma, beta, num_groups, eps=1e-6):
    return torch.empty_like(x if _dense(x) else x.contiguous())
