"""The Triton kernels' packaging (pdgan_infer.kernels._triton): launches enter their tensors' device, the
torch.library ops trace under torch.compile, and the kernel modules import without Triton."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from triton_impl import C1, C2, DEVICE, SIGMA, make_adagn_inputs, triton_test

from pdgan_infer.kernels import _triton
from pdgan_infer.kernels import adagn as adagn_module
from pdgan_infer.kernels.adagn import adagn_silu
from pdgan_infer.kernels.posterior import posterior_step


@triton_test
def test_launches_enter_the_tensors_device(monkeypatch):
    """Review 2.1: Triton launches on the *current* CUDA device, so tensors on cuda:1 with device 0 current
    faulted. Every launcher enters its tensors' device (on_device: torch.cuda.device for CUDA tensors)."""
    import contextlib

    from pdgan_infer.kernels import philox as philox_module
    from pdgan_infer.kernels import posterior as posterior_module
    entered = []

    def spy(device):
        entered.append(torch.device(device))
        return contextlib.nullcontext()
    for module in (adagn_module, posterior_module, philox_module):
        monkeypatch.setattr(module, "on_device", spy)
    x, gamma, beta = make_adagn_inputs((1, 4, 2, 2, 2), torch.float32, False)
    adagn_silu(x, gamma, beta, 2)
    posterior_step(x, x, C1, C2, SIGMA, noise=x)
    philox_module.philox_normal_rows(torch.tensor([1, 2], device=DEVICE), 8)
    assert entered == [x.device] * 3
    assert isinstance(_triton.on_device(torch.device("cuda:1")), torch.cuda.device)
    assert isinstance(_triton.on_device(torch.device("cpu")), contextlib.nullcontext)


@triton_test
def test_custom_ops_trace_under_torch_compile():
    x, gamma, beta = make_adagn_inputs((2, 8, 3, 5, 4), torch.float32, True)
    torch.library.opcheck(torch.ops.pdgan_triton.adagn_silu.default, (x, gamma, beta, 4, 1e-6))
    torch.library.opcheck(torch.ops.pdgan_triton.posterior_step.default, (x, x, C1, C2, SIGMA),
                          {"seed": 3})

    def step(x, gamma, beta):
        h = torch.ops.pdgan_triton.adagn_silu(x * 2.0, gamma, beta, 4, 1e-6)
        return torch.ops.pdgan_triton.posterior_step(h, x, C1, C2, SIGMA, None, 5)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, gamma, beta), step(x, gamma, beta))


@triton_test
def test_kernel_modules_import_without_triton():
    code = """
import sys
sys.modules["triton"] = None  # import triton fails, find_spec returns None
import torch
from pdgan_infer.kernels import _triton, adagn, posterior
assert not _triton.HAS_TRITON and not _triton.available()
x = torch.randn(1, 4, 2, 2)
for call in (lambda: adagn.adagn_silu(x, x[:, :, 0, 0], x[:, :, 0, 0], 2),
             lambda: posterior.posterior_step(x, x, 0.5, 0.5, 0.1, seed=0)):
    try:
        call()
    except ImportError as e:
        assert "pip install 'pdgan[triton]'" in str(e), e
    else:
        raise AssertionError("no ImportError")
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, check=False,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
