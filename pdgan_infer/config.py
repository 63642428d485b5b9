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

from .errors import PDGANError
from .schedule import SCHEDULE_LIMITS, ScheduleConfig, schedule_config_problem

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
        """The config of a JSON mapping (a checkpoint's), every field type- and range-checked
        (`LIMITS`): ConfigError (a ValueError, one line naming the field) for wrong types, values out
        of range, unknown keys, an unknown `format_version` or a label naming one preset on another
        preset's config. Keys missing from older files take their defaults."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a mapping, got {type(d).__name__}")
        d = dict(d)
        version = d.pop("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version not in READABLE_FORMAT_VERSIONS:
            raise ConfigError(f"config format_version {version!r} is not one this pdgan reads "
                              f"({sorted(READABLE_FORMAT_VERSIONS)}); it was written by a newer pdgan: upgrade pdgan")
        sub = {"generator": GeneratorConfig, "encoder": EncoderConfig, "latent": LatentConfig,
               "schedule": ScheduleConfig}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(map(str, unknown))}; this file was written by another "
                              "pdgan version?")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in d:
                v = d[f.name]
                kwargs[f.name] = _build(sub[f.name], v, f.name) if f.name in sub else _check(cls, f.name, v, "config")
        cfg = cls(**kwargs)
        _check_consistency(cfg)
        return cfg

    def replace(self, **changes: Any) -> PDGANConfig:
        return dataclasses.replace(self, **changes)


class ConfigError(PDGANError, ValueError):
    """A config mapping (a checkpoint's JSON) is malformed; the message names the field."""


READABLE_FORMAT_VERSIONS = frozenset({FORMAT_VERSION})

# Accepted values of every field of a config read from JSON (`from_dict`): ("int"/"float", low, high)
# for numbers (inclusive, so NaN and infinities fail; "float" accepts integers too, never booleans),
# ("bool",), ("choice", names), ("preset",) (a key of PRESETS) and ("ints", "integer"/"number", min
# length, max length, low, high) for lists (stored as tuples). The bounds are far above every preset
# (cifar10: nf 128, celebahq256: 256 px) and keep building a model from an untrusted file cheap: the
# module count, every non-persistent buffer (the latent DDPM's `alphas_cumprod` has train_steps
# entries) and the schedule's T_hat search stay small. The weights themselves are bounded by the file:
# their shapes are compared with the file before anything is built.
LIMITS: dict[type, dict[str, tuple]] = {}  # filled below the dataclasses


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{where}' must be a mapping, got {type(values).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown keys {sorted(map(str, unknown))} in config section '{where}'")
    return cls(**{k: _check(cls, k, v, f"config.{where}") for k, v in values.items()})


def _check(cls: type, name: str, v: Any, where: str) -> Any:
    """`v` as the field `cls.name` stores it (lists -> tuples), or ConfigError."""
    kind, *limits = LIMITS[cls][name]
    what = f"{where}.{name}"
    if kind == "int":
        lo, hi = limits
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"{what} must be an integer in [{lo}, {hi}], got {_show(v)}")
        return v
    if kind == "float":
        lo, hi = limits
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:  # NaN fails lo <= v
            raise ConfigError(f"{what} must be a finite number in [{lo}, {hi}], got {_show(v)}")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"{what} must be true or false, got {_show(v)}")
        return v
    if kind in ("choice", "preset"):
        choices = tuple(PRESETS) if kind == "preset" else limits[0]  # PRESETS as it is now (tests add some)
        if not isinstance(v, str) or v not in choices:
            raise ConfigError(f"{what} must be one of {list(choices)}, got {_show(v)}")
        return v
    item, min_len, max_len, lo, hi = limits  # a list of numbers
    if not isinstance(v, (list, tuple)) or not min_len <= len(v) <= max_len:
        raise ConfigError(f"{what} must be a list of {min_len} to {max_len} {item}s, got {_show(v)}")
    for x in v:
        ok = not isinstance(x, bool) and isinstance(x, int if item == "integer" else (int, float)) and lo <= x <= hi
        if not ok:
            raise ConfigError(f"{what} must hold {item}s in [{lo}, {hi}], got {_show(v)}")
    return tuple(v)


def _check_consistency(cfg: PDGANConfig) -> None:
    """What single fields cannot say: sizes that only fit together, a schedule whose T_hat search is
    bounded, and a preset label on another preset's exact config."""
    lat, sch = cfg.latent, cfg.schedule
    if cfg.channels not in (1, 3):
        raise ConfigError(f"config.channels must be 1 (grey) or 3 (RGB), got {cfg.channels}")
    if lat.ddim_steps > lat.train_steps:
        raise ConfigError(f"config.latent.ddim_steps ({lat.ddim_steps}) must be <= train_steps ({lat.train_steps})")
    for name, ch_mult in (("generator", cfg.generator.ch_mult), ("encoder", cfg.encoder.ch_mult)):
        if cfg.resolution % (1 << (len(ch_mult) - 1)):
            raise ConfigError(f"config.resolution {cfg.resolution} is not divisible by 2^{len(ch_mult) - 1} "
                              f"(config.{name}.ch_mult has {len(ch_mult)} levels)")
    if sum(cfg.generator.fir_kernel) <= 0:
        raise ConfigError(f"config.generator.fir_kernel must have a positive sum, got {list(cfg.generator.fir_kernel)}")
    problem = schedule_config_problem(sch, "config.schedule")
    if problem:
        raise ConfigError(problem)
    for name, preset in PRESETS.items():
        if name != cfg.preset and dataclasses.replace(preset, preset=cfg.preset) == cfg:
            raise ConfigError(f"config.preset says {cfg.preset!r}, but the config is preset {name!r}'s exactly; "
                              "the label is wrong")


def _show(v: Any) -> str:
    text = repr(v)
    return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(v).__name__})"


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

# DDGAN's released generators (NVlabs/denoising-diffusion-gan; `pdgan-convert ddgan`, `pdgan_infer.convert`): the
# same NCSN++ as the PDGAN presets with DDGAN's own schedule and T (its README's test commands). They have no
# semantic code: latent slot "none", no encoder and no latent denoiser (their encoder/latent sections are unused).
DDGAN_PRESETS = {"cifar10": "ddgan-cifar10", "celebahq256": "ddgan-celebahq256", "lsun256": "ddgan-lsun256"}
for _name, _base, _T in (("ddgan-cifar10", "cifar10", 4), ("ddgan-celebahq256", "celebahq256", 2),
                         ("ddgan-lsun256", "celebahq256", 4)):
    PRESETS[_name] = dataclasses.replace(PRESETS[_base], preset=_name, schedule=ScheduleConfig(kind="ddgan", T=_T))


def has_semantic_code(cfg: PDGANConfig) -> bool:
    """False for the DDGAN presets (no encoder, no latent denoiser, latent slot "none")."""
    return cfg.preset not in DDGAN_PRESETS.values()


LIMITS.update({
    PDGANConfig: {"preset": ("preset",), "resolution": ("int", 1, 1024), "channels": ("int", 1, 3)},
    GeneratorConfig: {
        "nf": ("int", 1, 1024), "ch_mult": ("ints", "integer", 1, 8, 1, 16), "num_res_blocks": ("int", 1, 16),
        "attn_resolutions": ("ints", "integer", 0, 16, 1, 4096), "dropout": ("float", 0.0, 1.0),
        "fir_kernel": ("ints", "number", 4, 4, 0.0, 1e6), "skip_rescale": ("bool",), "nz": ("int", 1, 4096),
        "z_emb_dim": ("int", 1, 4096), "n_mlp": ("int", 0, 16), "use_tanh": ("bool",)},
    EncoderConfig: {
        "nf": ("int", 1, 1024), "ch_mult": ("ints", "integer", 1, 8, 1, 16), "num_res_blocks": ("int", 1, 16),
        "attn_resolutions": ("ints", "integer", 0, 16, 1, 4096), "pool": ("choice", ("mean", "flatten")),
        "code_norm": ("choice", ("none", "batch"))},
    LatentConfig: {
        "hidden": ("int", 1, 16384), "num_layers": ("int", 1, 64), "time_emb_dim": ("int", 2, 4096),
        "train_steps": ("int", 1, 100_000), "beta": ("float", 1e-8, 0.5), "ddim_steps": ("int", 1, 100_000)},
    ScheduleConfig: SCHEDULE_LIMITS,
})


def get_preset(name: str) -> PDGANConfig:
    """The named preset's config. Raises ValueError naming the valid presets."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
