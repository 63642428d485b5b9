"""The PDGAN generator G(x_t, z, t) -> x0 (DDGAN's NCSN++ with AdaGN) and the semantic encoder SE.

Generator: BigGAN residual blocks with FIR resampling, self-attention at the configured resolutions,
a sinusoidal embedding of the paper's step t (1..T) through a 2-layer MLP, a mapping network from the
latent slot (z or z_T, see `config.py`) to the AdaGN style, a residual input pyramid, tanh output.

Semantic encoder (Diffusion Autoencoders' encoder): the same UNet's downsampling half and middle
block with plain GroupNorm and no time input, then GroupNorm-SiLU, global average pooling and a
linear projection to the latent size: z_T = SE(x0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import EncoderConfig, GeneratorConfig
from .layers import (
    SQRT_HALF,
    AttnBlock,
    ConvDownsample,
    GroupNormAct,
    MappingNetwork,
    ResnetBlock,
    SinusoidalEmbedding,
    conv,
    dense,
    num_groups,
)


class DownLevel(nn.Module):
    """One resolution of the downsampling path: residual blocks (+ attention), then a downsampling
    residual block whose output is summed with the input pyramid (when `pyramid_ch` is given)."""

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, attn: bool, downsample: bool,
                 pyramid_ch: int | None, **block_kw):
        super().__init__()
        self.blocks = nn.ModuleList([ResnetBlock(in_ch if i == 0 else out_ch, out_ch, **block_kw)
                                     for i in range(n_blocks)])
        self.attns = nn.ModuleList([AttnBlock(out_ch) if attn else nn.Identity() for _ in range(n_blocks)])
        self.downsample = ResnetBlock(out_ch, down=True, **block_kw) if downsample else None
        self.pyramid = (ConvDownsample(pyramid_ch, out_ch, block_kw.get("fir_kernel", (1, 3, 3, 1)))
                        if downsample and pyramid_ch is not None else None)

    def forward(self, h: torch.Tensor, pyramid: torch.Tensor | None, temb: torch.Tensor | None,
                style: torch.Tensor | None, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        for block, attn in zip(self.blocks, self.attns):
            h = attn(block(h, temb, style))
            skips.append(h)
        if self.downsample is not None:
            h = self.downsample(h, temb, style)
            if self.pyramid is not None:
                pyramid = h = (self.pyramid(pyramid) + h) * SQRT_HALF
            skips.append(h)
        return h, pyramid


class UpLevel(nn.Module):
    """One resolution of the upsampling path: n_blocks + 1 residual blocks, each reading one skip,
    then attention (once), then an upsampling residual block."""

    def __init__(self, in_chs: list[int], out_ch: int, attn: bool, upsample: bool, **block_kw):
        super().__init__()
        self.blocks = nn.ModuleList([ResnetBlock(c, out_ch, **block_kw) for c in in_chs])
        self.attn = AttnBlock(out_ch) if attn else nn.Identity()
        self.upsample = ResnetBlock(out_ch, up=True, **block_kw) if upsample else None

    def forward(self, h: torch.Tensor, temb: torch.Tensor, style: torch.Tensor,
                skips: list[torch.Tensor]) -> torch.Tensor:
        for block in self.blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), temb, style)
        h = self.attn(h)
        return self.upsample(h, temb, style) if self.upsample is not None else h


class MidBlock(nn.Module):
    def __init__(self, ch: int, **block_kw):
        super().__init__()
        self.block_0 = ResnetBlock(ch, **block_kw)
        self.attn = AttnBlock(ch)
        self.block_1 = ResnetBlock(ch, **block_kw)

    def forward(self, h: torch.Tensor, temb: torch.Tensor | None, style: torch.Tensor | None) -> torch.Tensor:
        return self.block_1(self.attn(self.block_0(h, temb, style)), temb, style)


class Generator(nn.Module):
    """G(x_t, z, t) -> predicted x0 in [-1, 1]. x_t: (N, C, R, R); z: (N, nz); t: (N,) steps in 1..T."""

    def __init__(self, cfg: GeneratorConfig, resolution: int, channels: int = 3):
        super().__init__()
        _check_resolution(resolution, cfg.ch_mult, "generator")
        self.cfg, self.resolution, self.channels = cfg, resolution, channels
        nf, temb_dim = cfg.nf, 4 * cfg.nf
        self.time_embed = SinusoidalEmbedding(nf, offset=-1.0)
        self.time_mlp = nn.Sequential(dense(nf, temb_dim), nn.SiLU(), dense(temb_dim, temb_dim))
        self.mapping = MappingNetwork(cfg.nz, cfg.z_emb_dim, cfg.n_mlp)
        kw = dict(temb_dim=temb_dim, style_dim=cfg.z_emb_dim, dropout=cfg.dropout,
                  fir_kernel=tuple(cfg.fir_kernel), skip_rescale=cfg.skip_rescale)
        self.conv_in = conv(channels, nf)
        skip_chs, ch, pyramid_ch = [nf], nf, channels
        self.down = nn.ModuleList()
        last = len(cfg.ch_mult) - 1
        for i, mult in enumerate(cfg.ch_mult):
            out = nf * mult
            self.down.append(DownLevel(ch, out, cfg.num_res_blocks, (resolution >> i) in cfg.attn_resolutions,
                                       i != last, pyramid_ch, **kw))
            skip_chs += [out] * cfg.num_res_blocks + ([out] if i != last else [])
            ch = pyramid_ch = out
        self.mid = MidBlock(ch, **kw)
        self.up = nn.ModuleList()
        for i in reversed(range(len(cfg.ch_mult))):
            out = nf * cfg.ch_mult[i]
            in_chs = [(ch if j == 0 else out) + skip_chs.pop() for j in range(cfg.num_res_blocks + 1)]
            self.up.append(UpLevel(in_chs, out, (resolution >> i) in cfg.attn_resolutions, i != 0, **kw))
            ch = out
        self.norm_out = nn.GroupNorm(num_groups(ch), ch, eps=1e-6)
        self.conv_out = conv(ch, channels, init_scale=0.0)

    def forward(self, x_t: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        style = self.mapping(z)
        emb = self.time_embed(t).to(self.time_mlp[0].weight.dtype)  # fp32 sinusoids into a maybe-half MLP
        temb = F.silu(self.time_mlp(emb))  # every block applies SiLU first: do it once
        h = self.conv_in(x_t)
        skips, pyramid = [h], x_t
        for level in self.down:
            h, pyramid = level(h, pyramid, temb, style, skips)
        h = self.mid(h, temb, style)
        for level in self.up:
            h = level(h, temb, style, skips)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return torch.tanh(h) if self.cfg.use_tanh else h


class SemanticEncoder(nn.Module):
    """SE(x0) -> z_T: (N, C, R, R) in [-1, 1] -> (N, nz)."""

    def __init__(self, cfg: EncoderConfig, resolution: int, channels: int, nz: int):
        super().__init__()
        _check_resolution(resolution, cfg.ch_mult, "encoder")
        self.cfg = cfg
        self.conv_in = conv(channels, cfg.nf)
        self.down = nn.ModuleList()
        ch, last = cfg.nf, len(cfg.ch_mult) - 1
        for i, mult in enumerate(cfg.ch_mult):
            out = cfg.nf * mult
            self.down.append(DownLevel(ch, out, cfg.num_res_blocks, (resolution >> i) in cfg.attn_resolutions,
                                       i != last, None))
            ch = out
        self.mid = MidBlock(ch)
        self.norm_out = GroupNormAct(ch)
        if cfg.pool not in ("mean", "flatten"):
            raise ValueError(f"encoder pool must be 'mean' or 'flatten', got {cfg.pool!r}")
        side = resolution >> last
        self.proj = dense(ch if cfg.pool == "mean" else ch * side * side, nz)
        if cfg.code_norm not in ("none", "batch"):
            raise ValueError(f"encoder code_norm must be 'none' or 'batch', got {cfg.code_norm!r}")
        self.code_norm = nn.BatchNorm1d(nz, affine=False) if cfg.code_norm == "batch" else nn.Identity()

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        h, skips = self.conv_in(x0), []
        for level in self.down:
            h, _ = level(h, None, None, None, skips)
            skips.clear()
        h = self.norm_out(self.mid(h, None, None))
        return self.code_norm(self.proj(h.mean(dim=(2, 3)) if self.cfg.pool == "mean" else h.flatten(1)))


def _check_resolution(resolution: int, ch_mult: tuple[int, ...], what: str) -> None:
    if resolution % (1 << (len(ch_mult) - 1)) or resolution < (1 << (len(ch_mult) - 1)):
        raise ValueError(f"{what}: resolution {resolution} is not divisible by 2^{len(ch_mult) - 1} "
                         f"(ch_mult has {len(ch_mult)} levels)")
