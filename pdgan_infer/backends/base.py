"""What every backend adapter is: a `Runner`, called as `runner(x_T, z_T, z, eps) -> x0`.

Inputs are `pdgan_infer.sampler.SamplerNoise`'s tensors on the runner's device, float32:
x_T (N, C, R, R), z_T (N, nz), z (T-1, N, nz), eps (T-1, N, C, R, R); the result is the final
image x0 (N, C, R, R), float32 in [-1, 1], on the same device. Every backend runs the same chain as
`pdgan_infer.sampler.sample` with these explicit noises, so backends can be compared directly.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import PDGANError
from ..sampler import SamplerNoise, StepFn, sample
from ..schedule import Schedule


class BackendUnavailable(PDGANError, RuntimeError):
    """A backend cannot run here; the message names what to install or which backend to use."""


class Runner:
    """Base adapter. Subclasses set `name` and implement `__call__`."""

    name = "?"
    static_shapes = False  # True: every new batch size costs a compilation / capture (pad batches)
    cuda_graph = False  # True: the sampler replays CUDA graphs (the Engine then graphs the latent DDIM too)

    def __init__(self, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype = device, dtype

    def __call__(self, x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device}, dtype={self.dtype})"


def chain(generator: Callable[..., torch.Tensor], schedule: Schedule, step: StepFn, x_T: torch.Tensor,
          z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """`sampler.sample` on the runners' inputs with a pluggable posterior step; x stays float32 between
    steps. Capturable in a CUDA graph: the only tensors it makes are device tensors."""
    def float_generator(x, z_t, t):
        return generator(x, z_t, t).float()
    return sample(float_generator, schedule, z_T, SamplerNoise(x_T, z_T[:, :0], z, eps), step=step)


def torch_step(schedule: Schedule) -> StepFn:
    """The schedule's own posterior step (the reference)."""
    def step(x0, x_t, t, noise):
        return schedule.step(x0, x_t, t, noise)
    return step


def kernel_step(schedule: Schedule, posterior_step: Callable[..., torch.Tensor]) -> StepFn:
    """A fused kernel `posterior_step(x0, xt, c1, c2, sigma, noise=...)` with the schedule's
    coefficients (Python floats, computed once)."""
    coefs = {t: schedule.coefficients(t) for t in range(1, schedule.T + 1)}

    def step(x0, x_t, t, noise):
        c = coefs[t]
        return posterior_step(x0.contiguous(), x_t.contiguous(), c.c1, c.c2, c.sigma,
                              noise=None if c.sigma == 0.0 else noise.contiguous())
    return step
