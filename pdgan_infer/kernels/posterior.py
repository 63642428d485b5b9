"""Fused posterior sampling step (Triton).

    x_{t-1} = c1 * x0 + c2 * x_t + sigma * z,     z ~ N(0, I)

a sample of q(x_{t-1} | x_t, x0), with c1, c2, sigma the schedule's posterior coefficients at t.
z is either passed in (`noise`) or drawn in the kernel from the project's Philox4x32-10 stream
(normal offset + i of the stream keyed by `seed`, i = the element's index in memory order; the same
numbers as `native.posterior_step(..., seed=, offset=)` and `native.philox_normal`), which saves
writing and reading a noise tensor. In seed mode a program covers whole Philox blocks
(`philox.philox_normal_quads`: each block's 4 normals computed once) and its elements are shifted by
offset % 4 to meet them. sigma == 0 (the last step)
drops the noise term. Arithmetic in float32. Reference: `reference.posterior_step_ref`.
Seed mode is refused during CUDA graph capture: the seed would be baked into the graph and every
replay would add the same noise (pass `noise` instead, as the engine does).
"""
from __future__ import annotations

import torch

from ._triton import check_device, import_triton, on_device
from .philox import philox_normal_quads

triton, tl = import_triton()

BLOCK = 4096  # elements per program
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
NO_NOISE, NOISE_TENSOR, NOISE_PHILOX = 0, 1, 2


@triton.jit(do_not_specialize=["seed", "first_block"])  # an int argument equal to 1 would become a constexpr
def _posterior_step_kernel(
    X0,  # (numel,) predicted x0, memory order of the inputs
    XT,  # (numel,) x_t, dtype and strides of X0
    NOISE,  # (numel,) z when NOISE_MODE == 1 (any float dtype); unused otherwise
    Y,  # (numel,) output, dtype and strides of X0
    numel,  # int
    c1, c2, sigma,  # float
    seed,  # int64, Philox key when NOISE_MODE == 2
    first_block,  # int64, offset // 4: the Philox block of element 0's normal when NOISE_MODE == 2
    LEAD: tl.constexpr,  # offset % 4 when NOISE_MODE == 2 (element i = program position - LEAD), else 0
    NOISE_MODE: tl.constexpr,  # 0: none, 1: NOISE tensor, 2: the Philox stream of seed
    BLOCK: tl.constexpr,  # elements per program, power of two (a multiple of 4)
):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK) - LEAD
    mask = (offs >= 0) & (offs < numel)
    x0 = tl.load(X0 + offs, mask=mask, other=0.0).to(tl.float32)
    xt = tl.load(XT + offs, mask=mask, other=0.0).to(tl.float32)
    y = c1 * x0 + c2 * xt
    if NOISE_MODE == 1:
        y += sigma * tl.load(NOISE + offs, mask=mask, other=0.0).to(tl.float32)
    if NOISE_MODE == 2:  # stream positions 4 * first_block + pid * BLOCK + k, k < BLOCK
        blocks = first_block.to(tl.int64) + (pid * (BLOCK // 4) + tl.arange(0, BLOCK // 4)).to(tl.int64)
        y += sigma * philox_normal_quads(seed, blocks, BLOCK // 4)
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


def _shared_layout(tensors: list[torch.Tensor]) -> bool:
    """All dense (NCHW-contiguous or channels_last) with the same strides: one flat memory order."""
    dense = all(t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last) for t in tensors)
    return dense and all(t.stride() == tensors[0].stride() for t in tensors)


def posterior_step(x0: torch.Tensor, xt: torch.Tensor, c1: float, c2: float, sigma: float,
                   noise: torch.Tensor | None = None, seed: int | None = None, offset: int = 0) -> torch.Tensor:
    """c1 * x0 + c2 * xt + sigma * noise, with x0's dtype and memory format.

    x0, xt: same shape, dtype (float32/float16/bfloat16) and layout. Give `noise` (same shape, any
    float dtype) or `seed` (0 <= seed < 2**63: normals offset .. offset + numel - 1 of its Philox
    stream, in memory order) when sigma != 0; with sigma == 0 both are ignored."""
    if x0.dtype not in DTYPES:
        raise ValueError(f"posterior_step: dtype must be one of {DTYPES}, got {x0.dtype}")
    if xt.shape != x0.shape or xt.dtype != x0.dtype:
        raise ValueError(f"posterior_step: xt {tuple(xt.shape)} {xt.dtype} must match "
                         f"x0 {tuple(x0.shape)} {x0.dtype}")
    if noise is not None and seed is not None:
        raise ValueError("posterior_step: pass noise or seed, not both")
    if noise is not None and (noise.shape != x0.shape or not noise.dtype.is_floating_point):
        raise ValueError(f"posterior_step: noise must be a float tensor of shape {tuple(x0.shape)}, "
                         f"got {tuple(noise.shape)} {noise.dtype}")
    if seed is not None and not 0 <= seed < 2**63:
        raise ValueError(f"posterior_step: seed must be in [0, 2**63), got {seed}")
    if not 0 <= offset < 2**62:
        raise ValueError(f"posterior_step: offset must be in [0, 2**62), got {offset}")
    if x0.numel() >= 2**31:
        raise ValueError(f"posterior_step: {x0.numel()} elements; the kernel indexes with int32")
    mode = NO_NOISE if sigma == 0.0 else NOISE_TENSOR if noise is not None else NOISE_PHILOX
    if mode == NOISE_PHILOX and seed is None:
        raise ValueError("posterior_step: sigma != 0 needs noise or a seed")
    if mode == NOISE_PHILOX and x0.is_cuda and torch.cuda.is_current_stream_capturing():
        raise RuntimeError("posterior_step: seed mode cannot be captured in a CUDA graph (every replay would "
                           "reuse the captured seed's noise); pass noise=... instead")
    check_device("posterior_step", _posterior_step_kernel, x0, xt,
                 *([noise] if mode == NOISE_TENSOR else []))
    tensors = [x0, xt] + ([noise] if mode == NOISE_TENSOR else [])
    if not _shared_layout(tensors):
        tensors = [t.contiguous() for t in tensors]  # one memory order for all
    x0, xt = tensors[:2]
    noise_arg = tensors[2] if mode == NOISE_TENSOR else x0  # placeholder pointer, never read
    y = torch.empty_like(x0)
    numel = y.numel()
    if numel == 0:
        return y
    lead = offset & 3 if mode == NOISE_PHILOX else 0
    with on_device(x0.device):  # Triton launches on the current device
        _posterior_step_kernel[(-(-(numel + lead) // BLOCK),)](
            x0, xt, noise_arg, y, numel, float(c1), float(c2), float(sigma),
            int(seed) if seed is not None else 0, offset >> 2,
            LEAD=lead, NOISE_MODE=mode, BLOCK=BLOCK, num_warps=8)
    return y


# torch.compile / export see one opaque op with a shape-only fake implementation.
@torch.library.custom_op("pdgan_triton::posterior_step", mutates_args=())
def posterior_step_op(x0: torch.Tensor, xt: torch.Tensor, c1: float, c2: float, sigma: float,
                      noise: torch.Tensor | None = None, seed: int | None = None, offset: int = 0) -> torch.Tensor:
    return posterior_step(x0, xt, c1, c2, sigma, noise, seed, offset)


@posterior_step_op.register_fake
def _(x0, xt, c1, c2, sigma, noise=None, seed=None, offset=0):
    tensors = [x0, xt] + ([noise] if noise is not None and sigma != 0.0 else [])
    return torch.empty_like(x0 if _shared_layout(tensors) else x0.contiguous())
