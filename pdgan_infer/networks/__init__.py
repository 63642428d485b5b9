"""Networks: generator G(x_t, z, t), semantic encoder SE(x0), latent denoiser, and their bundle."""
from __future__ import annotations

from torch import nn

from ..config import PDGANConfig, get_preset
from ..schedule import Schedule
from .generator import Generator, SemanticEncoder
from .latent import LatentDenoiser

__all__ = ["Generator", "SemanticEncoder", "LatentDenoiser", "PDGAN", "build_generator", "build_encoder",
           "build_latent", "resolve_config"]


def resolve_config(preset: str | PDGANConfig) -> PDGANConfig:
    """A preset name or a config -> the config (ValueError naming the valid presets otherwise)."""
    if isinstance(preset, PDGANConfig):
        return preset
    return get_preset(preset)


def build_generator(preset: str | PDGANConfig) -> Generator:
    cfg = resolve_config(preset)
    return Generator(cfg.generator, cfg.resolution, cfg.channels)


def build_encoder(preset: str | PDGANConfig) -> SemanticEncoder:
    cfg = resolve_config(preset)
    return SemanticEncoder(cfg.encoder, cfg.resolution, cfg.channels, cfg.generator.nz)


def build_latent(preset: str | PDGANConfig) -> LatentDenoiser:
    cfg = resolve_config(preset)
    return LatentDenoiser(cfg.latent, cfg.generator.nz)


class PDGAN(nn.Module):
    """Everything inference needs: `generator`, `encoder`, `latent` (optional) and the `schedule`.
    This is what a checkpoint stores (the EMA weights of training)."""

    def __init__(self, config: str | PDGANConfig, with_latent: bool = True):
        super().__init__()
        self.config = resolve_config(config)
        self.generator = build_generator(self.config)
        self.encoder = build_encoder(self.config)
        self.latent = build_latent(self.config) if with_latent else None
        self.schedule = Schedule.from_config(self.config.schedule)

    @property
    def components(self) -> list[str]:
        return ["generator", "encoder"] + (["latent"] if self.latent is not None else [])
