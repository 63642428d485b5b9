"""Networks: generator G(x_t, z, t), semantic encoder SE(x0), latent denoiser, and their bundle."""
from __future__ import annotations

import torch
from torch import nn

from ..config import PDGANConfig, get_preset, has_semantic_code
from ..schedule import Schedule
from .generator import Generator, SemanticEncoder
from .latent import LatentDenoiser

__all__ = ["Generator", "SemanticEncoder", "LatentDenoiser", "PDGAN", "LATENT_SLOTS", "random_model",
           "redraw_zero_init", "build_generator", "build_encoder", "build_latent", "resolve_config"]

# Where the semantic code z_T enters the chain, as the model was trained (pdgan-train --encoder):
#   "first": z_T at t = T, z ~ N(0, I) at t < T (PDGAN);  "all": z_T at every step (Table 1, "+ encoder");
#   "none": no semantic code, z_T ~ N(0, I) like every other z (DDGAN, Table 1 "baseline").
LATENT_SLOTS = ("first", "all", "none")
NO_LATENT = ("this checkpoint has no latent denoiser, so z_T cannot be drawn; pass z_T "
             "(e.g. engine.encode(images)) to generate(n, z_T=...) or generate_from(z_T), or train the "
             "latent denoiser (pdgan-train --latent-steps N > 0) and use that checkpoint")


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
    """Everything inference needs: `generator`, `encoder` (optional: a model without a semantic code,
    such as an imported DDGAN, has none), `latent` (optional) and the `schedule`. This is what a
    checkpoint stores (the EMA weights of training)."""

    def __init__(self, config: str | PDGANConfig, with_latent: bool = True, with_encoder: bool = True):
        super().__init__()
        self.config = resolve_config(config)
        self.generator = build_generator(self.config)
        self.encoder = build_encoder(self.config) if with_encoder else None
        self.latent = build_latent(self.config) if with_latent else None
        self.schedule = Schedule.from_config(self.config.schedule)
        self.latent_slot = "first"  # see LATENT_SLOTS; checkpoints record it
        self.checkpoint_meta: dict = {}  # the "meta" of the checkpoint it was loaded from (save_pretrained keeps it)

    @property
    def can_draw_z_T(self) -> bool:
        """Whether `draw_z_T` works: a latent denoiser, or no semantic code to draw (latent_slot "none")."""
        return self.latent is not None or self.latent_slot == "none"

    def draw_z_T(self, start: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """z_T for sampling from the (N, nz) standard-normal `start`: the latent denoiser's DDIM
        sample, or `start` itself for a model trained without a semantic code (latent_slot "none")."""
        if self.latent_slot == "none":
            return start
        if self.latent is None:
            raise ValueError(NO_LATENT)
        return self.latent.sample(start, steps)

    @property
    def components(self) -> list[str]:
        return ["generator"] + [name for name in ("encoder", "latent") if getattr(self, name) is not None]


def redraw_zero_init(model: nn.Module, threshold: float = 1e-4) -> None:
    """Re-draw (variance scaling, scale 1) every Conv2d/Linear weight whose entries are all below
    `threshold` in magnitude: the layers training initialises at scale 1e-10 (see `random_model`)."""
    from .layers import variance_scaling_
    for module in model.modules():
        w = getattr(module, "weight", None)
        if isinstance(module, (nn.Conv2d, nn.Linear)) and w is not None and w.abs().max() < threshold:
            variance_scaling_(w, 1.0)


def random_model(preset: str | PDGANConfig, seed: int = 0, with_latent: bool = True, with_encoder: bool = True
                 ) -> PDGAN:
    """A preset's model with random weights drawn from `seed` (benchmarks, tests, exports of a preset). The layers
    that the training initialisation zeroes (last conv of every residual block, attention output, output conv:
    scale 1e-10, which would make G(x) ~ 0 whatever the other weights) are re-drawn at scale 1, so every layer
    shapes the images. A preset without a semantic code (the DDGAN presets, `config.has_semantic_code`) gets no
    encoder and no latent denoiser and latent slot "none", whatever `with_latent` / `with_encoder` say. The
    global RNG is left as it was."""
    cfg = resolve_config(preset)
    code = has_semantic_code(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PDGAN(cfg, with_latent=with_latent and code, with_encoder=with_encoder and code)
        redraw_zero_init(model)
    if not code:
        model.latent_slot = "none"
    return model

