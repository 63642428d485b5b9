"""Setup shared by the Triton kernel tests (tests/kernels/test_{adagn,posterior,triton}.py): Triton's CPU
interpreter without CUDA, the device, the dtypes with their ulp allowance, AdaGN inputs and the half-ulp check."""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

from pdgan_infer.kernels import _triton  # noqa: E402
from pdgan_infer.kernels.reference import FP32_SLACK, adagn_silu_ulp_error  # noqa: E402

INTERPRET = _triton.interpreting()
DEVICE = "cpu" if INTERPRET else "cuda"
_needs_triton = pytest.mark.skipif(not _triton.available(), reason="triton is not installed (pip install "
                                   "'pdgan[triton]'), or it cannot run here: no CUDA device and TRITON_INTERPRET unset")


def triton_test(fn):
    """A Triton test: skipped without Triton; on a GPU every one runs there (`make gpu-check` selects them with
    -m gpu)."""
    fn = _needs_triton(fn)
    return fn if INTERPRET else pytest.mark.gpu(fn)


SLOW_ON_CPU = [pytest.mark.slow] if INTERPRET else []
gpu_only = pytest.mark.skipif(INTERPRET or not torch.cuda.is_available(), reason="needs a CUDA GPU")

# (dtype, max error in ulps of the dtype): round to nearest is <= 0.5; the interpreter truncates to bfloat16
DTYPES = [
    pytest.param(torch.float32, 0.5, id="fp32"),
    pytest.param(torch.float16, 0.5, id="fp16"),
    pytest.param(torch.bfloat16, 1.0 if INTERPRET else 0.5, id="bf16"),
]
LAYOUTS = [pytest.param(False, id="nchw"), pytest.param(True, id="channels_last")]
C1, C2, SIGMA = 0.3, 0.9, 0.25  # posterior step coefficients


def make_adagn_inputs(shape, dtype, channels_last):
    n, c, h, w, _ = shape
    x = (torch.randn(n, c, h, w, device=DEVICE) * 2.0 + 0.5).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    # (gamma, beta) = strided halves of the style Linear's float32 output, as the fused backends pass them
    style = torch.randn(n, 2 * c, device=DEVICE) * 0.5
    gamma, beta = (style + torch.cat([torch.ones(c, device=DEVICE), torch.zeros(c, device=DEVICE)])).chunk(2, dim=1)
    return x, gamma, beta


def assert_adagn_close(y, x, gamma, beta, num_groups, max_ulps, eps=1e-6):
    assert y.shape == x.shape and y.dtype == x.dtype and y.stride() == x.stride()
    slack = FP32_SLACK * (1 if INTERPRET else 2)  # the GPU's tl.exp / tl.rsqrt are approximate
    err = adagn_silu_ulp_error(y.cpu(), x.cpu(), gamma.float().cpu(), beta.float().cpu(), num_groups, eps,
                               fp32_slack=slack)
    worst = err.max().item()
    assert worst <= max_ulps, f"an element is {worst:.3f} ulp of {y.dtype} off (allowed {max_ulps})"
