"""Shrunken models shared by the training, editing, latent-slot and CLI tests: the "tiny" training preset
(registered by the `tiny` fixture of tests/conftest.py), a 4-step training config on the digits, and a shrunken
digits model."""
from __future__ import annotations

import dataclasses

from pdgan_infer import PRESETS, get_preset
from pdgan_infer.config import EncoderConfig, GeneratorConfig, LatentConfig, PDGANConfig
from pdgan_train.config import TrainConfig

TINY = PDGANConfig(
    preset="tiny", resolution=32,
    generator=GeneratorConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), nz=8, z_emb_dim=16, n_mlp=1),
    encoder=EncoderConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=()),
    latent=LatentConfig(hidden=16, num_layers=3, train_steps=100, ddim_steps=3),
)


def register_tiny():
    PRESETS["tiny"] = TINY


def tiny_cfg(out, **kw) -> TrainConfig:
    base = dict(preset="tiny", data="digits", out=str(out), max_steps=4, batch_size=4, d_ngf=8, feature_loss=False,
                latent_steps=0, sample_every=1000, ckpt_every=1000, log_every=1, lazy_reg=2, ema_decay=0.9)
    base.update(kw)
    return TrainConfig(**base)


def tiny_config():
    cfg = get_preset("digits")
    return cfg.replace(
        generator=dataclasses.replace(cfg.generator, nf=16, ch_mult=(1, 2), attn_resolutions=(), nz=16,
                                      z_emb_dim=32, n_mlp=1),
        encoder=dataclasses.replace(cfg.encoder, nf=16, ch_mult=(1, 2)),
        latent=dataclasses.replace(cfg.latent, hidden=32, num_layers=2, ddim_steps=3))
