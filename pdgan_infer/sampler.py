"""The reference 2-NFE (T-step) sampler in pure torch. Every backend is checked against it.

    x_T ~ N(0, I);  x0^T = G(x_T, z_T, T);  x_{T-1} ~ q(x_{T-1} | x_T, x0^T);
    x0^t = G(x_t, z_t, t) with z_t ~ N(0, I) for t < T; ...;  image = x0^1 (sigma_1 = 0).

All randomness is an explicit input (`SamplerNoise`), so backends can be compared bit for bit.
`draw_noise` makes it from one seed per image: image i's noises come from its own generator, so
they do not depend on the batch size or on the image's position in the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .schedule import Schedule


@dataclass
class SamplerNoise:
    x_T: torch.Tensor  # (N, C, R, R) the starting noise
    latent: torch.Tensor  # (N, nz) the latent denoiser's DDIM start (unused when z_T is given)
    z: torch.Tensor  # (T-1, N, nz): z[t-1] is the generator's latent at step t < T
    eps: torch.Tensor  # (T-1, N, C, R, R): eps[t-2] is the posterior noise of step t >= 2

    def to(self, device=None, dtype=None) -> SamplerNoise:
        return SamplerNoise(*(v.to(device=device, dtype=dtype) for v in (self.x_T, self.latent, self.z, self.eps)))


def draw_noise(seeds: list[int], T: int, channels: int, resolution: int, nz: int) -> SamplerNoise:
    """One CPU generator per image, seeded with seeds[i]; draws in the fixed order x_T, latent, z, eps."""
    parts = []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        parts.append((torch.randn(channels, resolution, resolution, generator=g),
                      torch.randn(nz, generator=g),
                      torch.randn(T - 1, nz, generator=g),
                      torch.randn(T - 1, channels, resolution, resolution, generator=g)))
    if not parts:
        return SamplerNoise(torch.zeros(0, channels, resolution, resolution), torch.zeros(0, nz),
                            torch.zeros(T - 1, 0, nz), torch.zeros(T - 1, 0, channels, resolution, resolution))
    x_T, lat, z, eps = zip(*parts)
    return SamplerNoise(torch.stack(x_T), torch.stack(lat), torch.stack(z, 1), torch.stack(eps, 1))


@torch.no_grad()
def with_latent_slot(noise: SamplerNoise, z_T: torch.Tensor, latent_slot: str = "first") -> SamplerNoise:
    """The noise a model trained with `latent_slot` samples with: "all" (z_T fed at every step, the
    Table-1 "+ encoder" row) replaces every z_t by z_T; "first" and "none" leave it unchanged."""
    if latent_slot != "all":
        return noise
    z = z_T.to(noise.z.dtype).unsqueeze(0).expand_as(noise.z).contiguous()
    return SamplerNoise(noise.x_T, noise.latent, z, noise.eps)


def sample(generator: torch.nn.Module, schedule: Schedule, z_T: torch.Tensor, noise: SamplerNoise,
           latent_slot: str = "first") -> torch.Tensor:
    """Run the T-step chain from noise.x_T with semantic code z_T; returns x0 in [-1, 1].
    latent_slot: how the model was trained (`pdgan_infer.networks.LATENT_SLOTS`)."""
    noise = with_latent_slot(noise, z_T, latent_slot)
    x = noise.x_T
    for t in range(schedule.T, 0, -1):
        steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)
        x0 = generator(x, z_T if t == schedule.T else noise.z[t - 1], steps)
        x = schedule.step(x0, x, t, noise.eps[t - 2] if t > 1 else None)
    return x


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, 3) uint8 (grey images are repeated to RGB)."""
    x = ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return x.expand(-1, -1, -1, 3).contiguous() if x.shape[-1] == 1 else x.contiguous()
