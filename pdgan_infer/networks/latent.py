"""The latent denoiser that samples z_T for unconditional generation (paper Sec. 5.1, following
Diffusion Autoencoders): an MLP with skip connections predicting the noise of a DDPM over the
normalised semantic codes, sampled with DDIM (eta = 0).

Schedule: `train_steps` steps with constant beta (0.008 over 1000 steps, Diffusion Autoencoders'
"const0.008"). Codes are normalised with the dataset mean/std of SE(x0), stored as buffers so they
travel with the checkpoint; `sample` returns de-normalised codes ready for the generator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LatentConfig
from .layers import SinusoidalEmbedding


class MLPLayer(nn.Module):
    """Linear, then (time-conditioned scale (1 + cond), LayerNorm, SiLU) for hidden layers."""

    def __init__(self, in_dim: int, out_dim: int, cond_dim: int, hidden: bool):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.hidden = hidden
        if hidden:
            self.cond = nn.Linear(cond_dim, out_dim)
            self.norm = nn.LayerNorm(out_dim)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.linear(h)
        if not self.hidden:
            return h
        return F.silu(self.norm(h * (1.0 + self.cond(cond))))


class LatentDenoiser(nn.Module):
    """eps_theta(z_t, t): MLP skip-net. Every layer after the first also reads the input z_t."""

    def __init__(self, cfg: LatentConfig, nz: int):
        super().__init__()
        self.cfg, self.nz = cfg, nz
        self.time_embed = SinusoidalEmbedding(cfg.time_emb_dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_emb_dim, nz), nn.SiLU(), nn.Linear(nz, nz))
        layers = []
        for i in range(cfg.num_layers):
            last = i == cfg.num_layers - 1
            in_dim = nz if i == 0 else cfg.hidden + nz
            layers.append(MLPLayer(in_dim, nz if last else cfg.hidden, nz, hidden=not last))
        self.layers = nn.ModuleList(layers)
        ac = torch.cumprod(torch.full((cfg.train_steps,), 1.0 - cfg.beta, dtype=torch.float64), 0)
        self.register_buffer("alphas_cumprod", ac.float(), persistent=False)
        self.register_buffer("z_mean", torch.zeros(nz))  # dataset statistics of SE(x0), set after
        self.register_buffer("z_std", torch.ones(nz))  # encoding the data (training's latent stage)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = self.time_mlp(self.time_embed(t).to(self.time_mlp[0].weight.dtype))
        h = z_t
        for i, layer in enumerate(self.layers):
            h = layer(h if i == 0 else torch.cat([h, z_t], dim=1), cond)
        return h

    # --- diffusion over normalised codes --------------------------------------------------------
    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.z_mean) / self.z_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.z_std + self.z_mean

    def q_sample(self, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Training's forward process on normalised codes; t: (N,) integer steps in 0..train_steps-1."""
        a = self.alphas_cumprod[t][:, None]
        return a.sqrt() * z0 + (1.0 - a).sqrt() * noise

    def ddim_timesteps(self, steps: int | None = None) -> list[int]:
        steps = self.cfg.ddim_steps if steps is None else steps
        if not isinstance(steps, int) or not 1 <= steps <= self.cfg.train_steps:
            raise ValueError(f"DDIM steps must be an integer in 1..{self.cfg.train_steps}, got {steps!r}")
        span = self.cfg.train_steps - 1
        return sorted({round(span * i / max(steps - 1, 1)) for i in range(steps)}, reverse=True) if steps > 1 \
            else [span]

    def sample(self, noise: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from `noise` (N, nz) to de-normalised codes z_T (N, nz); the only DDIM
        loop (the engine's CUDA graph and the served ONNX graph run it too)."""
        ts = self.ddim_timesteps(steps)
        z = noise
        for i, t in enumerate(ts):
            a = self.alphas_cumprod[t]
            a_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.ones_like(a)
            eps = self(z, torch.full_like(z[:, 0], float(t)))  # (N,), follows a traced dynamic batch
            z0 = (z - (1.0 - a).sqrt() * eps) / a.sqrt()
            z = a_prev.sqrt() * z0 + (1.0 - a_prev).sqrt() * eps
        return self.denormalize(z)
