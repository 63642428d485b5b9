"""Pure-torch references for the fused kernels. Every implementation (Triton, C++, CUDA) is tested
against these, computed in float32.

adagn_silu:      y[n, c] = silu(GroupNorm(x)[n, c] * gamma[n, c] + beta[n, c])
                 GroupNorm has no affine parameters; statistics over (C / G, H, W) per (n, g).
                 Written in the fused kernels' form  y = silu(x * a + d),  a = rstd * gamma,
                 d = beta - mean * a.
posterior_step:  x_{t-1} = c1 * x0 + c2 * x_t + sigma * noise        (q(x_{t-1} | x_t, x0) sample)
"""
from __future__ import annotations

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


def posterior_step_ref(x0: torch.Tensor, xt: torch.Tensor, c1: float, c2: float, sigma: float,
                       noise: torch.Tensor | None) -> torch.Tensor:
    """x_{t-1} = c1 * x0 + c2 * x_t + sigma * noise, computed in float32, returned in x0.dtype."""
    y = c1 * x0.float() + c2 * xt.float()
    if noise is not None and sigma != 0.0:
        y = y + sigma * noise.float()
    return y.to(x0.dtype)
