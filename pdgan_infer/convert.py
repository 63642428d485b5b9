"""Import Denoising Diffusion GAN's released generators (NVlabs/denoising-diffusion-gan) into pdgan.

    model = from_ddgan("netG_1200.pth", "cifar10")          # -> PDGAN, latent slot "none", DDGAN's schedule
    convert_ddgan("netG_1200.pth", "cifar10", "ddgan-cifar10")   # a model folder: Engine.from_pretrained(DIR)
    pdgan-convert ddgan netG_1200.pth --config cifar10 --out ddgan-cifar10

pdgan's generator is DDGAN's `NCSNpp` (ncsnpp_generator_adagn.py, BigGAN blocks with AdaGN, FIR resampling,
residual input pyramid, no output pyramid, positional time embedding, tanh) with named modules instead of
DDGAN's flat `all_modules` list. The import walks DDGAN's list in its construction order and maps every tensor:

    all_modules.0, .1        time MLP           -> time_mlp.0, time_mlp.2
    all_modules.2            input conv         -> conv_in
    per level, per block     ResnetBlockBigGANpp_Adagn -> down.i.blocks.j   (GroupNorm_k.style -> norm_k.style,
                             Conv_0/1 -> conv_0/1, Dense_0 -> temb_proj, Conv_2 -> skip)
                             AttnBlockpp        -> down.i.attns.j (NIN_0, NIN_1, NIN_2 (W is (in, out)) -> the one
                                                   1x1 qkv conv, transposed and stacked; NIN_3 -> proj)
                             down block, pyramid Downsample's Conv2d_0 -> down.i.downsample, down.i.pyramid.conv
    middle                   block, attention, block -> mid.block_0, mid.attn, mid.block_1
    per level (reversed)     num_res_blocks + 1 blocks, attention, up block -> up.k.*
    last two                 GroupNorm, conv    -> norm_out, conv_out
    z_transform.N            mapping network    -> mapping.net.N

DDGAN's step index i = 0..T-1 is pdgan's step t = i + 1 (the generator embeds t - 1, the schedule's index 0 is
t = 1), and `Schedule.ddgan(T)` is its `get_sigma_schedule` (var_func_vp, eps_small = 1e-3). The configs are its
README's test commands (`DDGAN_PRESETS`); every other option is test_ddgan.py's default (attention at 16x16,
2 blocks per level, nz 100, z_emb_dim 256, FIR (1, 3, 3, 1), skip rescale, residual input pyramid, centered
input, tanh, no dropout). tests/infer/test_convert.py compares with outputs recorded from DDGAN's own code
(tools/ddgan_reference.py).

DDGAN's code and weights are under the NVIDIA Source Code License (non-commercial); the converted model's card
says so. Nothing is unpickled: `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .checkpoint import _expected_tensors, sha256_file
from .config import DDGAN_PRESETS, PDGANConfig, get_preset
from .errors import PDGANError
from .networks import PDGAN
from .networks.layers import AttnBlock
from .sampler import SamplerNoise

DDGAN_SOURCE = "https://github.com/NVlabs/denoising-diffusion-gan"
DDGAN_LICENSE = "NVIDIA Source Code License for Denoising Diffusion GAN (non-commercial use only)"
DDGAN_LICENSE_URL = "https://github.com/NVlabs/denoising-diffusion-gan/blob/main/LICENSE"
DDGAN_CHECKPOINTS = "https://drive.google.com/drive/folders/1UkzsI0SwBRstMYysRdR76C1XdSv5rQNz?usp=sharing"
DDP_PREFIX = "module."
# pdgan's residual-block parameter names -> DDGAN's (ResnetBlockBigGANpp_Adagn)
RESNET_NAMES = {"norm_0": "GroupNorm_0", "conv_0": "Conv_0", "temb_proj": "Dense_0", "norm_1": "GroupNorm_1",
                "conv_1": "Conv_1", "skip": "Conv_2"}


class ConvertError(PDGANError, ValueError):
    """A file cannot be converted; the message names the file and the problem."""


def ddgan_layout(model: PDGAN) -> list[tuple[str, str, str]]:
    """(DDGAN module path, pdgan generator module path, kind) for every module of DDGAN's `NCSNpp`, in DDGAN's
    construction order; kind: "copy" (same parameter names), "resnet", "attn" or "pyramid"."""
    gen = model.generator
    mods = [("time_mlp.0", "copy"), ("time_mlp.2", "copy"), ("conv_in", "copy")]
    for i, level in enumerate(gen.down):
        for j, attn in enumerate(level.attns):
            mods.append((f"down.{i}.blocks.{j}", "resnet"))
            if isinstance(attn, AttnBlock):
                mods.append((f"down.{i}.attns.{j}", "attn"))
        if level.downsample is not None:
            mods.append((f"down.{i}.downsample", "resnet"))
            mods.append((f"down.{i}.pyramid.conv", "pyramid"))
    mods += [("mid.block_0", "resnet"), ("mid.attn", "attn"), ("mid.block_1", "resnet")]
    for k, level in enumerate(gen.up):
        mods += [(f"up.{k}.blocks.{j}", "resnet") for j in range(len(level.blocks))]
        if isinstance(level.attn, AttnBlock):
            mods.append((f"up.{k}.attn", "attn"))
        if level.upsample is not None:
            mods.append((f"up.{k}.upsample", "resnet"))
    mods += [("norm_out", "copy"), ("conv_out", "copy")]
    layout = [(f"all_modules.{n}", path, kind) for n, (path, kind) in enumerate(mods)]
    n_mapping = len(gen.mapping.net)
    layout += [(f"z_transform.{n}", f"mapping.net.{n}", "copy") for n in range(n_mapping)
               if isinstance(gen.mapping.net[n], torch.nn.Linear)]
    return layout


def ddgan_shapes(config: PDGANConfig) -> dict[str, tuple[int, ...]]:
    """DDGAN's state-dict keys (without `module.`) and shapes for a config, without building the model."""
    shapes = {k.removeprefix("generator."): s for k, (_, s) in _expected_tensors(config, ["generator"]).items()}
    out = {}
    for ddgan, ours, kind in _layout_of(config):
        if kind == "attn":
            c = shapes[f"{ours}.proj.weight"][0]
            out.update({f"{ddgan}.GroupNorm_0.weight": (c,), f"{ddgan}.GroupNorm_0.bias": (c,)})
            for n in range(4):
                out.update({f"{ddgan}.NIN_{n}.W": (c, c), f"{ddgan}.NIN_{n}.b": (c,)})
            continue
        for key, shape in shapes.items():
            if key.startswith(ours + "."):
                out[_ddgan_name(ddgan, key[len(ours) + 1:], kind)] = shape
    return out


def _layout_of(config: PDGANConfig) -> list[tuple[str, str, str]]:
    from .checkpoint import _ParametersOnMeta
    with _ParametersOnMeta():  # module structure only: parameters on the meta device
        return ddgan_layout(PDGAN(config, with_latent=False, with_encoder=False))


def _ddgan_name(ddgan: str, rest: str, kind: str) -> str:
    if kind == "resnet":
        head, _, tail = rest.partition(".")
        return f"{ddgan}.{RESNET_NAMES[head]}.{tail}"
    if kind == "pyramid":
        return f"{ddgan}.Conv2d_0.{rest}"
    return f"{ddgan}.{rest}"


# DDGAN options pdgan's generator implements, with the one value it supports (test_ddgan.py's defaults)
DDGAN_FIXED = {"centered": True, "use_geometric": False, "resamp_with_conv": True, "conditional": True,
               "fir": True, "skip_rescale": True, "resblock_type": "biggan", "progressive": "none",
               "progressive_input": "residual", "progressive_combine": "sum", "embedding_type": "positional"}


def config_from_ddgan_args(args: Mapping[str, Any], preset: str) -> PDGANConfig:
    """The pdgan config of a DDGAN model trained with the options `args` (test_ddgan.py's argparse names, e.g.
    `vars(args)`; missing ones take DDGAN's defaults), labelled `preset`. ConvertError naming an option pdgan's
    generator does not implement."""
    import dataclasses

    from .config import EncoderConfig, GeneratorConfig
    from .schedule import ScheduleConfig
    for key, value in DDGAN_FIXED.items():
        if key in args and args[key] != value:
            raise ConvertError(f"DDGAN option {key}={args[key]!r} is not implemented by pdgan's generator "
                               f"(it implements {key}={value!r})")
    base = get_preset(DDGAN_PRESETS["cifar10"])
    g = dict(nf=args.get("num_channels_dae", 128), ch_mult=tuple(args.get("ch_mult", (1, 2, 2, 2))),
             num_res_blocks=args.get("num_res_blocks", 2), attn_resolutions=tuple(args.get("attn_resolutions", (16,))),
             dropout=float(args.get("dropout", 0.0)), fir_kernel=tuple(args.get("fir_kernel", (1, 3, 3, 1))),
             nz=args.get("nz", 100), z_emb_dim=args.get("z_emb_dim", 256), n_mlp=args.get("n_mlp", 3),
             use_tanh=not args.get("not_use_tanh", False))
    return dataclasses.replace(
        base, preset=preset, resolution=args.get("image_size", 32), channels=args.get("num_channels", 3),
        generator=GeneratorConfig(**g),  # the encoder section (unused) mirrors the generator, as in the presets
        encoder=EncoderConfig(nf=g["nf"], ch_mult=g["ch_mult"], num_res_blocks=g["num_res_blocks"],
                              attn_resolutions=g["attn_resolutions"]),
        schedule=ScheduleConfig(kind="ddgan", T=args.get("num_timesteps", 4), beta_min=float(args.get("beta_min", 0.1)),
                                beta_max=float(args.get("beta_max", 20.0))))


def ddgan_config(config: str | PDGANConfig) -> PDGANConfig:
    """A DDGAN config name ("cifar10", "celebahq256", "lsun256") or a PDGANConfig -> the config."""
    if isinstance(config, PDGANConfig):
        return config
    if config not in DDGAN_PRESETS:
        raise ConvertError(f"unknown DDGAN config {config!r}; choose one of {sorted(DDGAN_PRESETS)}")
    return get_preset(DDGAN_PRESETS[config])


def read_ddgan_state_dict(src: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict without the DDP `module.` prefix, a name for messages) of a netG_EPOCH.pth file or a mapping."""
    name = "the state dict"
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        name = str(path)
        if not path.is_file():
            raise ConvertError(f"{path} not found (or not a file): give DDGAN's netG_EPOCH.pth")
        try:
            src = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ConvertError(f"{path} is not a weights-only state dict (torch.load(weights_only=True) refuses it: "
                               f"{first}); give DDGAN's netG_EPOCH.pth") from None
    if isinstance(src, Mapping) and "netG_dict" in src:
        raise ConvertError(f"{name} is DDGAN's training state (content.pth, non-EMA weights); convert "
                           "netG_EPOCH.pth, the EMA generator it saves beside it")
    if not isinstance(src, Mapping) or not src:
        raise ConvertError(f"{name} is not a state dict (a mapping of names to tensors), got "
                           f"{'an empty mapping' if isinstance(src, Mapping) else type(src).__name__}; give DDGAN's "
                           "netG_EPOCH.pth")
    bad = next((k for k, v in src.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise ConvertError(f"{name} is not a state dict: its entry {bad!r} is a {type(src[bad]).__name__}, not a "
                           "tensor; give DDGAN's netG_EPOCH.pth")
    prefixed = [k.startswith(DDP_PREFIX) for k in src]
    if any(prefixed) and not all(prefixed):
        k = next(k for k, p in zip(src, prefixed) if not p)
        raise ConvertError(f"{name} mixes keys with and without DDP's '{DDP_PREFIX}' prefix (e.g. {k!r})")
    return {k.removeprefix(DDP_PREFIX) if all(prefixed) else k: v for k, v in src.items()}, name


def _check_keys(sd: Mapping[str, torch.Tensor], config: PDGANConfig, name: str, label: str) -> None:
    want = ddgan_shapes(config)
    have = {k: tuple(v.shape) for k, v in sd.items()}
    if have == want:
        return
    for other, preset in DDGAN_PRESETS.items():  # another config's checkpoint: say which
        if preset != config.preset and have == ddgan_shapes(get_preset(preset)):
            raise ConvertError(f"{name} is DDGAN's {other} generator, not {label}'s: use --config {other}")
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing:
        raise ConvertError(f"{name} lacks {len(missing)} of DDGAN's {label} generator tensors, e.g. {missing[0]!r}: "
                           "not a DDGAN netG of this config")
    if extra:
        raise ConvertError(f"{name} has {len(extra)} tensors DDGAN's {label} generator does not, e.g. {extra[0]!r}: "
                           "not a DDGAN netG of this config")
    key = next(k for k in sorted(want) if want[k] != have[k])
    raise ConvertError(f"{name}: {key} has shape {list(have[key])}, DDGAN's {label} generator has {list(want[key])}")


def ddgan_to_pdgan_state_dict(sd: Mapping[str, torch.Tensor], model: PDGAN) -> dict[str, torch.Tensor]:
    """DDGAN generator tensors (checked keys, no prefix) -> pdgan generator state dict (float32)."""
    ours = model.generator.state_dict()
    out = {}
    for ddgan, path, kind in ddgan_layout(model):
        if kind == "attn":
            w = [sd[f"{ddgan}.NIN_{n}.W"].float() for n in range(4)]
            out[f"{path}.norm.weight"] = sd[f"{ddgan}.GroupNorm_0.weight"]
            out[f"{path}.norm.bias"] = sd[f"{ddgan}.GroupNorm_0.bias"]
            out[f"{path}.qkv.weight"] = torch.cat([x.t() for x in w[:3]])[:, :, None, None]
            out[f"{path}.qkv.bias"] = torch.cat([sd[f"{ddgan}.NIN_{n}.b"] for n in range(3)])
            out[f"{path}.proj.weight"] = w[3].t()[:, :, None, None]
            out[f"{path}.proj.bias"] = sd[f"{ddgan}.NIN_3.b"]
            continue
        for key in ours:
            if key.startswith(path + "."):
                out[key] = sd[_ddgan_name(ddgan, key[len(path) + 1:], kind)]
    return {k: v.detach().float().contiguous().clone() for k, v in out.items()}


def from_ddgan(src: str | os.PathLike | Mapping[str, Any], config: str | PDGANConfig) -> PDGAN:
    """DDGAN's generator (a netG_EPOCH.pth path or its state dict, keys with or without `module.`) as a pdgan
    model: latent slot "none" (z_T ~ N(0, I), no encoder, no latent denoiser), DDGAN's schedule and T. `config`:
    "cifar10", "celebahq256", "lsun256" (DDGAN's README settings) or a PDGANConfig. ConvertError (one line,
    naming the file and the tensor) for anything that is not that config's DDGAN generator."""
    cfg = ddgan_config(config)
    if cfg.schedule.kind != "ddgan":
        raise ConvertError(f"config {cfg.preset!r} has the {cfg.schedule.kind!r} schedule; a DDGAN model needs "
                           "kind 'ddgan'")
    label = config if isinstance(config, str) else cfg.preset
    sd, name = read_ddgan_state_dict(src)
    _check_keys(sd, cfg, name, label)
    model = PDGAN(cfg, with_latent=False, with_encoder=False)
    model.latent_slot = "none"
    model.generator.load_state_dict(ddgan_to_pdgan_state_dict(sd, model))
    source = {"project": DDGAN_SOURCE, "license": DDGAN_LICENSE, "license_url": DDGAN_LICENSE_URL,
              "config": label, "file": Path(name).name if isinstance(src, (str, os.PathLike)) else None}
    if isinstance(src, (str, os.PathLike)):
        source["sha256"] = sha256_file(src)
    model.checkpoint_meta = {"converted_from": source}
    return model.eval()


def convert_ddgan(src: str | os.PathLike, config: str | PDGANConfig, out: str | os.PathLike) -> Path:
    """`from_ddgan`, written as a model folder (config.json, model.safetensors, README.md with DDGAN's licence and
    source) that `Engine.from_pretrained(out)` loads. Returns the folder."""
    from .hub import save_pretrained
    model = from_ddgan(src, config)
    return save_pretrained(model, out, meta=model.checkpoint_meta, license="other")


def ddgan_noise(x_T: torch.Tensor, draws: list[torch.Tensor]) -> tuple[SamplerNoise, torch.Tensor]:
    """(pdgan's SamplerNoise, z_T) of DDGAN's `sample_from_model` chain from x_T whose random draws were `draws`,
    in its call order: for DDGAN step i = T-1 .. 0, the generator's z (torch.randn(N, nz)) and then the
    posterior noise (torch.randn_like(x), unused at i = 0). With them `sampler.sample(model.generator,
    model.schedule, z_T, noise, "none")` is DDGAN's chain (DDGAN step i is pdgan step t = i + 1)."""
    if len(draws) % 2 or not draws:
        raise ValueError(f"DDGAN's chain draws (z, noise) per step: expected an even, non-zero count, got {len(draws)}")
    T = len(draws) // 2
    z_by_t = {T - k: draws[2 * k] for k in range(T)}  # k-th step of the loop is DDGAN i = T-1-k, pdgan t = T-k
    eps_by_t = {T - k: draws[2 * k + 1] for k in range(T)}
    z = torch.stack([z_by_t[t] for t in range(1, T)]) if T > 1 else draws[0].new_zeros(0, *draws[0].shape)
    eps = torch.stack([eps_by_t[t] for t in range(2, T + 1)]) if T > 1 else x_T.new_zeros(0, *x_T.shape)
    return SamplerNoise(x_T, z_by_t[T], z, eps), z_by_t[T]
