"""Setup shared by the native kernel tests (tests/kernels/test_{adagn,posterior,philox,native}.py): the skip
mark (only with PDGAN_SKIP_EXT=1: conftest.py fails the run when the extension is missing otherwise), devices,
dtypes, the half-ulp AdaGN check and the posterior step coefficients."""
from __future__ import annotations

import pytest
import torch

from pdgan_infer.kernels import native
from pdgan_infer.kernels.reference import FP32_SLACK, adagn_silu_ulp_error

needs_native = pytest.mark.skipif(not native.available(), reason=f"PDGAN_SKIP_EXT=1, native extension unavailable: "
                                  f"{native.unavailable_reason()}")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def assert_adagn_within_half_ulp(ours, x, gamma, beta, groups, eps=1e-6, what=""):
    """max over elements of the rounding error in ulps of ours.dtype <= 0.5 (round to nearest). The GPU's
    approximate __expf / __fdividef / rsqrtf get twice the float32 allowance."""
    slack = FP32_SLACK * (2 if ours.is_cuda else 1)
    err = adagn_silu_ulp_error(ours.cpu(), x.cpu(), gamma.cpu(), beta.cpu(), groups, eps, fp32_slack=slack)
    worst = err.max().item()
    assert worst <= 0.5, f"{what}: an element is {worst:.3f} ulp of {ours.dtype} off (round to nearest: <= 0.5)"
C1, C2, SIGMA = 0.7, 0.25, 0.3  # posterior step coefficients
