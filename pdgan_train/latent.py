"""The latent-denoiser stage (paper Sec. 5.1, following Diffusion Autoencoders): encode the dataset
with the EMA semantic encoder, normalise the codes (their mean/std are stored in the denoiser's
buffers), and train the MLP skip-net to predict the noise of a DDPM over the codes (L1 loss, as
Diffusion Autoencoders' latent DDPM). Sampling is DDIM (`LatentDenoiser.sample`).

The trainer passes its EMA model, whose latent denoiser is trained in place, so the exported checkpoint
carries it. It runs on rank 0 after the GAN stage; an interrupted latent stage restarts from its
beginning on resume.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from pdgan_infer.progress import Progress, track

from .config import TrainConfig, TrainingError


@torch.no_grad()
def encode_dataset(encoder: torch.nn.Module, dataset, device: torch.device, batch_size: int = 256,
                   progress: bool | None = None) -> torch.Tensor:
    """SE(x0) for every image of the dataset (no augmentation), (N, nz) on the CPU."""
    codes = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for x, _ in track(loader, "encode dataset", "batch", progress, leave=False):
        codes.append(encoder(x.to(device)).float().cpu())
    return torch.cat(codes)


def latent_loss(net: torch.nn.Module, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """L1 between the predicted and the true noise of z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) noise."""
    return (net(net.q_sample(z0, t, noise), t.float()) - noise).abs().mean()


def train_latent(model: torch.nn.Module, dataset, device: torch.device, cfg: TrainConfig,
                 should_stop: Callable[[], bool], log: Callable[[dict], None], quiet: bool = False) -> bool:
    """Train `model.latent` (a PDGAN's latent denoiser, in place) on the codes `model.encoder` gives the dataset;
    False when should_stop() turned true before the end (the denoiser is then half-trained and must not be
    saved). log(record) receives the loss every 50 steps. TrainingError when it diverges. Progress: a bar on
    a terminal, log lines elsewhere (`pdgan_infer.progress`), nothing when `quiet`."""
    net = model.latent
    codes = encode_dataset(model.encoder, dataset, device, progress=not quiet)
    with torch.no_grad():
        net.z_mean.copy_(codes.mean(0).to(device))
        net.z_std.copy_(codes.std(0).clamp_min(1e-6).to(device))
    z_all = net.normalize(codes.to(device))
    net.train().requires_grad_(True)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.latent_lr)
    g = torch.Generator(device).manual_seed(cfg.seed * 1000 + 900)
    with Progress(cfg.latent_steps, "latent denoiser", "step", not quiet) as bar:
        for step in range(cfg.latent_steps):
            if should_stop():
                bar.close(failed=True)
                return False
            idx = torch.randint(0, len(z_all), (min(cfg.latent_batch, len(z_all)),), generator=g, device=device)
            z0 = z_all[idx]
            t = torch.randint(0, net.cfg.train_steps, (len(idx),), generator=g, device=device)
            loss = latent_loss(net, z0, t, torch.randn(z0.shape, generator=g, device=device))
            if not torch.isfinite(loss):
                raise TrainingError(f"latent denoiser loss is not finite at latent step {step}; lower the latent "
                                    f"learning rate (latent_lr)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            shown = {}
            if step % 50 == 0:
                shown = {"loss": f"{loss.item():.4f}"}
                log({"latent_step": step, "latent_loss": loss.item()})
            bar.update(1, **shown)
    net.eval().requires_grad_(False)
    worst = max((p.detach().abs().max().item() for p in net.parameters()), default=0.0)
    if not math.isfinite(worst):  # the last step's update is checked by no later loss
        raise TrainingError("the latent denoiser's weights are not finite after training; lower the latent "
                            "learning rate (latent_lr)")
    return True
