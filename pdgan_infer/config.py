"""Configuration: frozen dataclasses per concern and the named presets.

A `PDGANConfig` bundles everything needed to rebuild a model for inference: the image format, the
generator, the semantic encoder, the latent denoiser and the noise schedule. It round-trips through
JSON (`to_dict` / `from_dict`) and is stored beside every checkpoint.

Latent slot (paper Eq. 7-8): the generator has ONE latent input of size `nz` and ONE mapping network.
At t = T that slot receives the semantic code z_T = SE(x0) (training) or a sample of the latent
denoiser (generation); at t < T it receives z ~ N(0, I). The semantic encoder therefore outputs `nz`
numbers. Sharing the slot is what the paper's ablation "+ semantic encoder" (inject SE(x0) at every
step instead of random noise) requires, and it keeps the generator identical to DDGAN's.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

FORMAT_VERSION = 1


@dataclass(frozen=True)
class GeneratorConfig:
    nf: int = 128  # base channel count of the NCSN++ UNet
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # channel multiplier per resolution level
    num_res_blocks: int = 2  # residual blocks per level (decoder has one more)
    attn_resolutions: tuple[int, ...] = (16,)  # resolutions that get a self-attention block
    dropout: float = 0.0  # dropout inside residual blocks
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)  # FIR resampling kernel (BigGAN-style up/down blocks)
    skip_rescale: bool = True  # divide residual sums by sqrt(2)
    nz: int = 100  # latent slot size (z and z_T)
    z_emb_dim: int = 256  # mapping-network width (AdaGN style input)
    n_mlp: int = 4  # hidden layers of the mapping network
    use_tanh: bool = True  # tanh on the predicted x0


@dataclass(frozen=True)
class EncoderConfig:
    nf: int = 128  # base channels of the semantic encoder (UNet's downsampling half)
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # channel multiplier per level
    num_res_blocks: int = 2  # residual blocks per level
    attn_resolutions: tuple[int, ...] = (16,)  # self-attention resolutions
    # How the last feature map becomes the code: "mean" = global average pooling then a linear layer
    # (Diffusion Autoencoders); "flatten" = a linear layer over the whole map, which keeps the spatial
    # layout that a shallow encoder's pooled features lose (used by the small digits preset).
    pool: str = "mean"
    # "batch": the code is standardised per dimension (BatchNorm without affine; running statistics at
    # inference). Without it a shallow encoder's codes share one large common direction (cosine
    # similarity 0.96 between digits at step 600) and the mapping's PixelNorm leaves the generator
    # almost nothing that differs between images: the reconstructions collapse to one blob.
    code_norm: str = "none"


@dataclass(frozen=True)
class LatentConfig:
    hidden: int = 1024  # width of the MLP skip-net latent denoiser (Diffusion Autoencoders)
    num_layers: int = 10  # layers of the MLP, every hidden layer re-reads the input (skip)
    time_emb_dim: int = 64  # sinusoidal time-embedding size
    train_steps: int = 1000  # diffusion steps of the latent DDPM (training)
    beta: float = 0.008  # constant beta of the latent DDPM ("const0.008" in Diffusion Autoencoders)
    ddim_steps: int = 10  # DDIM steps at sampling time (eta = 0)


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str = "pdgan"  # "pdgan" (Appendix A) or "ddgan" (DDGAN's var_func_vp baseline)
    T: int = 2  # number of diffusion steps (NFE)
    beta_min: float = 0.1  # VP schedule beta_min
    beta_max: float = 20.0  # VP schedule beta_max
    snr_threshold: float = 0.1  # SNR that marks the step destroying semantics (Appendix A)
    t_hat_rule: str = "largest"  # which T_hat to use when several give t_hat = T: "largest"|"smallest"


@dataclass(frozen=True)
class PDGANConfig:
    preset: str = "cifar10"  # preset this config started from
    resolution: int = 32  # image height = width
    channels: int = 3  # image channels
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    # --- JSON round trip -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["format_version"] = FORMAT_VERSION
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PDGANConfig:
        d = dict(d)
        d.pop("format_version", None)
        sub = {"generator": GeneratorConfig, "encoder": EncoderConfig, "latent": LatentConfig,
               "schedule": ScheduleConfig}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d.pop(f.name)
            kwargs[f.name] = _build(sub[f.name], v, f.name) if f.name in sub else v
        if d:
            raise ValueError(f"unknown config keys {sorted(d)}; this file was written by another pdgan version?")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> PDGANConfig:
        return dataclasses.replace(self, **changes)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"config section '{where}' must be a mapping, got {type(values).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in config section '{where}'")
    out = {}
    for k, v in values.items():
        out[k] = tuple(v) if isinstance(v, list) else v
    return cls(**out)


# --- presets ---------------------------------------------------------------------------------
PRESETS: dict[str, PDGANConfig] = {
    # DDGAN's CIFAR-10 generator (~48.4 M parameters), T = 2 with the PDGAN schedule.
    "cifar10": PDGANConfig(
        preset="cifar10", resolution=32,
        generator=GeneratorConfig(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
                                  nz=100, z_emb_dim=256, n_mlp=4),
        encoder=EncoderConfig(nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,)),
        latent=LatentConfig(hidden=1024, num_layers=10),
    ),
    # DDGAN's CelebA-HQ 256 generator.
    "celebahq256": PDGANConfig(
        preset="celebahq256", resolution=256,
        generator=GeneratorConfig(nf=64, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,),
                                  nz=100, z_emb_dim=256, n_mlp=3),
        encoder=EncoderConfig(nf=64, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,)),
        latent=LatentConfig(hidden=1024, num_layers=10),
    ),
    # Small CPU preset: scikit-learn digits upsampled to 32x32 (the bundled demo and the tests).
    "digits": PDGANConfig(
        preset="digits", resolution=32,
        generator=GeneratorConfig(nf=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
                                  nz=32, z_emb_dim=64, n_mlp=2),
        encoder=EncoderConfig(nf=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(), pool="flatten",
                              code_norm="batch"),
        latent=LatentConfig(hidden=256, num_layers=6, ddim_steps=10),
    ),
}


def get_preset(name: str) -> PDGANConfig:
    """The named preset's config. Raises ValueError naming the valid presets."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
