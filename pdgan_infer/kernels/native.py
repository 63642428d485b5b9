"""Loader and Python API of the ahead-of-time C++ / CUDA extension `pdgan_infer._C` (sources in csrc/).

Build (once, ahead of time; nothing is compiled at import):

    pip install --no-build-isolation -e .        # PDGAN_SKIP_EXT=1 skips it, PDGAN_CUDA_ARCH="8.0;9.0"

The extension registers three ops with the torch dispatcher (CPU kernels always, CUDA kernels when it
was built against a CUDA torch with nvcc): `torch.ops.pdgan.adagn_silu`, `torch.ops.pdgan.posterior_step`
and `torch.ops.pdgan.philox_normal_`. Fake (meta) kernels are registered here, so the ops trace under
torch.compile and torch.export. Importing this module never fails: without the extension (not built, built
against another torch, or stale: built from other csrc/ sources than the checkout's), `available()` is False,
`unavailable_reason()` says how to rebuild it, the ops raise RuntimeError, and the import warns once
(RuntimeWarning) unless PDGAN_SKIP_EXT=1 says that running without it is intended.

Ops (references in `pdgan_infer.kernels.reference`):

    adagn_silu(x, gamma, beta, G, eps)   y = silu(x * a + d), a = rstd * gamma[n, c], d = beta[n, c] - mean * a
        x (N, C, H, W) fp32/fp16/bf16, NCHW-contiguous or channels_last; y has x's dtype and memory format.
        gamma, beta (N, C), any float dtype (read as float32). mean / rstd per (n, group), float32
        accumulation in numerically sound chunked two-pass form (Chan merge of the chunks).
    posterior_step(x0, xt, c1, c2, sigma, noise=None, seed=None, offset=0)
        out = c1 * x0 + c2 * xt + sigma * z in float32, returned in x0's dtype; x0, xt (and noise) share
        shape, dtype and device and are contiguous. z = noise, or the Philox stream (seed, offset) when
        noise is None and seed is given, or 0 when sigma == 0.
    philox_normal(shape, seed, offset=0)  the stream's normals themselves (same numbers the kernels use).
    philox_normal_rows(seeds, count, offset=0)  (N, count): row n is philox_normal(count, seeds[n], offset),
        one launch for a batch; seeds is an int64 tensor on the output's device (read by the kernel).
    winograd_conv3x3(x, u, bias, residual=None, alpha=1.0)   (CPU, float32)
        conv2d(x, w, bias, padding=1) (+ alpha * residual) by Winograd F(4x4, 3x3) (csrc/winograd), with
        u = winograd_weight(w) (36, C, K), transformed once. x and residual channels_last, y channels_last.
        A quarter of the direct convolution's multiply-adds; float32 error a few times the direct one's.
    winograd_conv3x3_bf16(x, u, bias, residual=None, alpha=1.0)   (CPU with AVX512-BF16, bfloat16)
        the same by Winograd F(2x2, 3x3) (csrc/winograd/winograd_bf16_cpu.cpp) with u =
        winograd_weight_bf16(w): bfloat16 x, residual and y, float32 bias and accumulation; 4/9 of the direct
        convolution's multiply-adds. `winograd_bf16_supported()` says whether this CPU and build run it,
        `winograd_bf16_preferred()` whether it beats oneDNN's direct convolution here (no AMX).

In-kernel noise: the Philox4x32-10 stream (csrc/philox.h), identical on CPU and CUDA
--------------------------------------------------------------------------------------
    key            = (seed mod 2^64) as two 32-bit words (lo, hi)
    element i of the output (flat, row-major over the contiguous tensor) takes normal number p = offset + i:
    block b        = p // 4,  lane = p % 4
    counter        = (b mod 2^32, b // 2^32, 0, 0)
    (r0, r1, r2, r3) = Philox4x32-10(counter, key)        M0=0xD2511F53, M1=0xCD9E8D57, W0=0x9E3779B9, W1=0xBB67AE85
    u_k            = (r_k + 0.5) / 2^32
    lane 0, 1      = sqrt(-2 ln u0) * (cos, sin)(2 pi u1)
    lane 2, 3      = sqrt(-2 ln u2) * (cos, sin)(2 pi u3)
computed in float64 and rounded once to float32. So `philox_normal(n, seed, offset=k)` equals
`philox_normal(n + k, seed)[k:]`, and consecutive calls that advance `offset` by the element count never
reuse a number. CPU and CUDA compute the same Philox bits; their float64 libm results may differ in the
last bits, which after rounding to float32 changes a normal by at most one float32 ulp, rarely.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import torch

__all__ = ["available", "unavailable_reason", "cuda_available", "skip_requested", "adagn_silu", "posterior_step",
           "philox_normal", "philox_normal_rows", "winograd_weight", "winograd_conv3x3", "winograd_weight_bf16",
           "winograd_conv3x3_bf16", "winograd_bf16_supported", "winograd_bf16_preferred", "onednn_uses_amx"]

_BUILD_CMD = "pip install --no-build-isolation -e ."
# registered by csrc/bindings.cpp
OPS = ("adagn_silu", "posterior_step", "philox_normal_", "philox_normal_rows_", "winograd_conv3x3",
       "winograd_conv3x3_bf16", "winograd_bf16_supported")


def _load():
    """(module, None) when pdgan_infer._C imports, else (None, why)."""
    try:
        from pdgan_infer import _C
    except ModuleNotFoundError as e:
        if e.name not in ("pdgan_infer._C", "pdgan_infer"):
            return None, f"pdgan_infer._C failed to import ({e}); rebuild with `{_BUILD_CMD}`"
        return None, (f"extension not built: reinstall with `{_BUILD_CMD}` from the repository root "
                      "(without PDGAN_SKIP_EXT=1)")
    except (ImportError, OSError) as e:  # e.g. undefined symbol: built against another torch
        return None, (f"pdgan_infer._C failed to load ({e}); it was probably built against another torch "
                      f"(this is {torch.__version__}): rebuild with `{_BUILD_CMD}`")
    except RuntimeError as e:  # e.g. a second copy registering the `pdgan` op namespace again
        return None, f"pdgan_infer._C failed to register its ops ({e}); rebuild with `{_BUILD_CMD}`"
    if not hasattr(torch.ops.pdgan, "adagn_silu"):
        return None, f"pdgan_infer._C loaded but registered no torch.ops.pdgan ops; rebuild with `{_BUILD_CMD}`"
    missing = [op for op in OPS if not hasattr(torch.ops.pdgan, op)]
    if missing:
        return None, (f"pdgan_infer._C was built from older sources (no torch.ops.pdgan.{missing[0]}); "
                      f"rebuild with `{_BUILD_CMD}`")
    stale = _stale(_C)
    if stale:
        return None, stale
    return _C, None


def _stale(module) -> str | None:
    """Why the loaded extension does not match the checkout's csrc/ (None when it does, or when there is no
    csrc/ beside the package: an installed wheel)."""
    from pathlib import Path

    from ._sources import source_digest
    csrc = Path(__file__).resolve().parents[2] / "csrc"
    if not (csrc / "bindings.cpp").is_file():
        return None
    built = getattr(module, "SOURCE_DIGEST", "")
    try:
        current = source_digest(csrc, bool(getattr(module, "WITH_CUDA", 0)))
    except OSError:  # an unreadable checkout: nothing to compare with
        return None
    if built != current:
        return (f"pdgan_infer._C is stale: it was built from other csrc/ sources (digest {built or 'none'}, "
                f"the checkout's is {current}); rebuild with `{_BUILD_CMD}`")
    return None


def skip_requested() -> bool:
    """PDGAN_SKIP_EXT=1 (or true/yes/on): running without the extension is intended (setup.py did not build it);
    the test suite then skips the native tests instead of failing."""
    return os.environ.get("PDGAN_SKIP_EXT", "0").strip().lower() in ("1", "true", "yes", "on")


_C, _REASON = _load()
if _C is None and not skip_requested():
    # backend="auto" falls back to another backend; say why once, unless running without it is intended
    warnings.warn(f"pdgan native kernels unavailable: {_REASON} (set PDGAN_SKIP_EXT=1 if this is intended)",
                  RuntimeWarning, stacklevel=2)


def _register_fakes() -> None:
    """Meta / fake kernels: output metadata only, for torch.compile, torch.export and FakeTensor."""
    def adagn_fake(x, gamma, beta, num_groups, eps=1e-6):
        fmt = torch.contiguous_format
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            fmt = torch.channels_last
        return torch.empty_like(x, memory_format=fmt)

    def posterior_fake(x0, xt, c1, c2, sigma, noise=None, seed=None, offset=0):
        return torch.empty_like(x0, memory_format=torch.contiguous_format)

    def philox_fake(out, seed, offset=0):
        return None

    def philox_rows_fake(out, seeds, offset=0):
        return None

    def winograd_fake(x, u, bias, residual=None, alpha=1.0, tile_block=0):
        return x.new_empty((x.shape[0], u.shape[2], x.shape[2], x.shape[3])).contiguous(
            memory_format=torch.channels_last)

    def winograd_bf16_fake(x, u, bias, residual=None, alpha=1.0, tile_block=0):
        return x.new_empty((x.shape[0], u.shape[1] * 32, x.shape[2], x.shape[3])).contiguous(
            memory_format=torch.channels_last)

    for name, fn in (("adagn_silu", adagn_fake), ("posterior_step", posterior_fake), ("philox_normal_", philox_fake),
                     ("philox_normal_rows_", philox_rows_fake), ("winograd_conv3x3", winograd_fake),
                     ("winograd_conv3x3_bf16", winograd_bf16_fake)):
        try:
            torch.library.register_fake(f"pdgan::{name}", fn)
        except RuntimeError as e:  # already registered (module reloaded)
            if "already" not in str(e):
                raise


if _C is not None:
    _register_fakes()


def available(device: torch.device | str | None = None) -> bool:
    """True when the extension is loaded (and, for a CUDA `device`, was built with CUDA kernels)."""
    return unavailable_reason(device) == ""


def cuda_available() -> bool:
    """True when the extension is loaded and has CUDA kernels (says nothing about a GPU being present)."""
    return _C is not None and bool(getattr(_C, "WITH_CUDA", 0))


def unavailable_reason(device: torch.device | str | None = None) -> str:
    """'' when the ops can run (on `device`, if given); otherwise why not and how to fix it."""
    if _C is None:
        return _REASON
    if device is not None and torch.device(device).type == "cuda" and not cuda_available():
        return (f"pdgan_infer._C was built without CUDA kernels (torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}); rebuild with `{_BUILD_CMD}` where torch has CUDA and nvcc "
                "(CUDA_HOME) is available")
    if device is not None and torch.device(device).type not in ("cpu", "cuda", "meta"):
        return f"pdgan native kernels run on cpu and cuda only, not {torch.device(device).type}"
    return ""


def _require(device: torch.device) -> None:
    reason = unavailable_reason(device)
    if reason:
        raise RuntimeError(f"pdgan native kernels unavailable: {reason}")


def _same_device(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise RuntimeError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; move both to the same "
                           "device")


def _key(seed: int) -> int:
    """A Python int seed in [-2^63, 2^64) -> the op's int64 whose bits are seed mod 2^64."""
    seed = int(seed)
    if not -(1 << 63) <= seed < (1 << 64):
        raise ValueError(f"seed must be in [-2**63, 2**64), got {seed}")
    seed &= (1 << 64) - 1
    return seed - (1 << 64) if seed >= (1 << 63) else seed


def _offset(offset: int) -> int:
    offset = int(offset)
    if not 0 <= offset < (1 << 62):
        raise ValueError(f"offset must be in [0, 2**62), got {offset}")
    return offset


def adagn_silu(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, num_groups: int,
               eps: float = 1e-6) -> torch.Tensor:
    """silu(group_norm(x, num_groups, eps) * gamma[:, :, None, None] + beta[:, :, None, None]), fused.
    x: (N, C, H, W) fp32/fp16/bf16, NCHW or channels_last; gamma, beta: (N, C). Same dtype / format out."""
    _require(x.device)
    _same_device("gamma", gamma, "x", x)
    _same_device("beta", beta, "x", x)
    return torch.ops.pdgan.adagn_silu(x, gamma, beta, int(num_groups), float(eps))


def posterior_step(x0: torch.Tensor, xt: torch.Tensor, c1: float, c2: float, sigma: float,
                   noise: torch.Tensor | None = None, seed: int | None = None, offset: int = 0) -> torch.Tensor:
    """c1 * x0 + c2 * xt + sigma * z, fused, in x0's dtype. z = `noise`; or, when noise is None and `seed`
    is given, normals offset .. offset + numel - 1 of the Philox stream of `seed` (module docstring);
    or nothing when sigma == 0. x0, xt, noise: same shape, dtype, device; contiguous."""
    _require(x0.device)
    _same_device("xt", xt, "x0", x0)
    if noise is not None:
        _same_device("noise", noise, "x0", x0)
        if seed is not None:
            raise ValueError("posterior_step: pass either noise or seed, not both")
    elif seed is None and float(sigma) != 0.0:
        raise ValueError(f"posterior_step: sigma={sigma} != 0 needs noise or a seed")
    elif seed is not None and float(sigma) != 0.0 and x0.is_cuda and torch.cuda.is_current_stream_capturing():
        raise RuntimeError("posterior_step: seed mode cannot be captured in a CUDA graph (the seed and offset "
                           "are kernel arguments: every replay would add the same noise); pass noise=... instead")
    return torch.ops.pdgan.posterior_step(x0, xt, float(c1), float(c2), float(sigma), noise,
                                          None if seed is None else _key(seed), _offset(offset))


def philox_normal(shape: int | Sequence[int], seed: int, offset: int = 0, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normals offset .. offset + numel - 1 of the Philox stream of `seed`, as a contiguous tensor
    of `shape` (row-major): exactly the noise `posterior_step(..., seed=seed, offset=offset)` adds."""
    device = torch.device(device)
    _require(device)
    out = torch.empty(shape if isinstance(shape, Sequence) else (int(shape),), dtype=dtype, device=device)
    torch.ops.pdgan.philox_normal_(out, _key(seed), _offset(offset))
    return out


def seed_keys(seeds: Sequence[int] | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-row Philox keys as the int64 tensor the kernels read: each seed's 64 bits (seed mod 2**64)."""
    if isinstance(seeds, torch.Tensor):
        if seeds.dtype != torch.int64 or seeds.dim() != 1:
            raise ValueError(f"seeds must be a 1-D int64 tensor, got {seeds.dtype} of shape {tuple(seeds.shape)}")
        return seeds.to(device).contiguous()
    return torch.tensor([_key(s) for s in seeds], dtype=torch.int64).to(device)


def philox_normal_rows(seeds: Sequence[int] | torch.Tensor, count: int, offset: int = 0,
                       dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """(len(seeds), count): row n is `philox_normal(count, seeds[n], offset)`, all rows in one launch."""
    device = torch.device(device)
    _require(device)
    keys = seed_keys(seeds, device)
    out = torch.empty((keys.shape[0], int(count)), dtype=dtype, device=device)
    torch.ops.pdgan.philox_normal_rows_(out, keys, _offset(offset))
    return out


# Winograd F(4x4, 3x3) filter transform (Lavin & Gray 2016, points 0, +-1, +-2); B^T and A^T are in
# csrc/winograd/winograd_cpu.cpp.
WINOGRAD_G = ((1 / 4, 0.0, 0.0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
              (1 / 24, -1 / 12, 1 / 6), (0.0, 0.0, 1.0))


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """The (36, C, K) float32 transformed filters G g G^T of a (K, C, 3, 3) convolution weight, computed in
    float64 (component i * 6 + j is entry (i, j) of the 6x6 transformed filter)."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"winograd_weight: needs a (K, C, 3, 3) weight, got {tuple(weight.shape)}")
    g = torch.tensor(WINOGRAD_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ij,kcjl,ml->imck", g, weight.detach().double(), g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()


def winograd_conv3x3(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None,
                     residual: torch.Tensor | None = None, alpha: float = 1.0, tile_block: int = 0) -> torch.Tensor:
    """F.conv2d(x, w, bias, padding=1) (+ alpha * residual), stride 1, by Winograd F(4x4, 3x3) on the CPU,
    float32, with u = winograd_weight(w). x (N, C, H, W) in any memory format (made channels_last); residual
    (N, K, H, W); the result is channels_last. tile_block: 4x4 tiles per GEMM block (0: automatic)."""
    _require(x.device)
    if x.device.type != "cpu":
        raise RuntimeError(f"winograd_conv3x3 runs on the CPU only (x is on {x.device}); use F.conv2d there")
    if bias is None:
        bias = x.new_zeros(u.shape[2])
    x = x.contiguous(memory_format=torch.channels_last)
    if residual is not None:
        residual = residual.contiguous(memory_format=torch.channels_last)
    return torch.ops.pdgan.winograd_conv3x3(x, u, bias, residual, float(alpha), int(tile_block))


# Winograd F(2x2, 3x3) filter transform of the bfloat16 kernel (B^T and A^T: csrc/winograd/winograd_bf16_cpu.cpp).
WINOGRAD2_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def winograd_weight_bf16(weight: torch.Tensor) -> torch.Tensor:
    """The packed bfloat16 filters of `winograd_conv3x3_bf16`: U = G g G^T of a (K, C, 3, 3) weight, computed
    in float64 and rounded once to bfloat16, laid out (16, K/32, C/2, 32, 2): per component (4 * row + column)
    and block of 32 output channels, the input-channel pairs side by side (the layout AVX512-BF16's pairwise
    dot products read). Needs C a multiple of 16 and K a multiple of 32."""
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"winograd_weight_bf16: needs a (K, C, 3, 3) weight, got {tuple(weight.shape)}")
    k, c = weight.shape[:2]
    if c % 16 or k % 32:
        raise ValueError(f"winograd_weight_bf16: needs C a multiple of 16 and K of 32, got C={c}, K={k}")
    g = torch.tensor(WINOGRAD2_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ij,kcjl,ml->imck", g, weight.detach().double(), g).reshape(16, c // 2, 2, k // 32, 32)
    return u.to(torch.bfloat16).permute(0, 3, 1, 4, 2).contiguous()


def winograd_conv3x3_bf16(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None,
                          residual: torch.Tensor | None = None, alpha: float = 1.0, tile_block: int = 0
                          ) -> torch.Tensor:
    """F.conv2d(x, w, bias, padding=1) (+ alpha * residual), stride 1, by Winograd F(2x2, 3x3) on a CPU with
    AVX512-BF16, with u = winograd_weight_bf16(w): x and residual bfloat16 (N, C, H, W) in any memory format
    (made channels_last), bias float32; the result is bfloat16 channels_last. tile_block: 2x2 tiles per thread
    block, a multiple of 12 (0: automatic)."""
    _require(x.device)
    if x.device.type != "cpu":
        raise RuntimeError(f"winograd_conv3x3_bf16 runs on the CPU only (x is on {x.device}); use F.conv2d there")
    if bias is None:
        bias = torch.zeros(u.shape[1] * 32, dtype=torch.float32)
    x = x.contiguous(memory_format=torch.channels_last)
    if residual is not None:
        residual = residual.contiguous(memory_format=torch.channels_last)
    return torch.ops.pdgan.winograd_conv3x3_bf16(x, u, bias, residual, float(alpha), int(tile_block))


def winograd_bf16_supported() -> bool:
    """Whether `winograd_conv3x3_bf16` runs here: the extension is loaded and the CPU has AVX512-BF16."""
    return available("cpu") and bool(torch.ops.pdgan.winograd_bf16_supported())


# oneDNN's names for its instruction-set caps (ONEDNN_MAX_CPU_ISA) that allow AMX.
_AMX_ISAS = ("AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "ALL",
             "DEFAULT")


def onednn_uses_amx() -> bool:
    """Whether oneDNN's bfloat16 convolutions run on AMX here: the CPU has AMX-BF16 and ONEDNN_MAX_CPU_ISA (read
    once by oneDNN; `ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16` makes a Xeon behave as a CPU without AMX) allows it."""
    if not torch.cpu.get_capabilities().get("amx_bf16", False):
        return False
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
    return cap in _AMX_ISAS


def winograd_bf16_preferred() -> bool:
    """Whether the native backend's bfloat16 3x3 convolutions should be `winograd_conv3x3_bf16`: it runs here and
    oneDNN has no AMX. With AMX, oneDNN's direct bfloat16 convolution has several times the multiply-add rate of
    AVX512-BF16 and stays faster; without it the F(2x2, 3x3) kernel's 4/9 of the multiply-adds win
    (docs/benchmarks.md, "CPU without AMX")."""
    return winograd_bf16_supported() and not onednn_uses_amx()
