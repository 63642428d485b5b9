"""Building blocks of the NCSN++ generator (DDGAN's `ncsnpp_generator_adagn`) and the semantic
encoder, in plain torch.

Everything a CUDA graph or an exporter must not see in `forward` is done once here at construction:
FIR kernels and embedding frequencies are registered buffers; no tensor is built from Python data
inside `forward`.

FIR resampling (k = (1, 3, 3, 1), BigGAN-style blocks) as depthwise convolutions over the real
channels, never as single-channel convolutions over a folded batch:
    upsample x2   = conv_transpose2d(x, outer(k, k) * 4 / sum^2, stride 2, padding 1, groups=C)
    downsample x2 = conv2d(x, outer(k, k) / sum^2, stride 2, padding 1, groups=C)
    conv-downsample (pyramid path) = blur with padding 2, then a 3x3 convolution with stride 2
These equal `upfirdn2d` with DDGAN's paddings (checked against a direct upfirdn in the tests).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT_HALF = 1.0 / math.sqrt(2.0)


# --- initialisation (DDGAN / score_sde `default_init`: variance scaling, fan_avg, uniform) ----
def variance_scaling_(w: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    scale = 1e-10 if scale == 0 else scale
    receptive = w[0, 0].numel() if w.ndim > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    with torch.no_grad():
        return w.uniform_(-bound, bound)


def conv(in_ch: int, out_ch: int, kernel: int = 3, init_scale: float = 1.0, stride: int = 1,
         padding: int | None = None) -> nn.Conv2d:
    c = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2 if padding is None else padding)
    variance_scaling_(c.weight, init_scale)
    nn.init.zeros_(c.bias)
    return c


def dense(in_dim: int, out_dim: int, init_scale: float = 1.0) -> nn.Linear:
    lin = nn.Linear(in_dim, out_dim)
    variance_scaling_(lin.weight, init_scale)
    nn.init.zeros_(lin.bias)
    return lin


def num_groups(channels: int) -> int:
    """DDGAN's group count: min(C // 4, 32)."""
    return max(1, min(channels // 4, 32))


# --- embeddings -------------------------------------------------------------------------------
class SinusoidalEmbedding(nn.Module):
    """DDPM's sinusoidal embedding [sin(s w), cos(s w)], s = t + offset, w_i = 10000^(-i / (half - 1)).
    The generator uses offset -1: paper step t (1..T) gets DDGAN's 0-based index embedding."""

    def __init__(self, dim: int, max_positions: float = 10000.0, offset: float = 0.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_positions) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim, self.offset = dim, offset

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = (t.float()[:, None] + self.offset) * self.freqs[None, :]
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
        return F.pad(emb, (0, 1)) if self.dim % 2 else emb


class PixelNorm(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """z (nz) -> style embedding (z_emb_dim): PixelNorm, Linear+SiLU, n_mlp x (Linear+SiLU)."""

    def __init__(self, nz: int, z_emb_dim: int, n_mlp: int):
        super().__init__()
        layers: list[nn.Module] = [PixelNorm(), dense(nz, z_emb_dim), nn.SiLU()]
        for _ in range(n_mlp):
            layers += [dense(z_emb_dim, z_emb_dim), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# --- FIR resampling -----------------------------------------------------------------------------
def _fir_2d(k: tuple[int, ...], gain: float) -> torch.Tensor:
    k1 = torch.tensor(k, dtype=torch.float32)
    k2 = torch.outer(k1, k1)
    return k2 / k2.sum() * gain


class FIRUpsample(nn.Module):
    """x2 FIR upsampling (upfirdn2d with up=2, DDGAN padding) as a depthwise transposed conv."""

    def __init__(self, channels: int, k: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        if len(k) != 4:
            raise ValueError(f"FIR upsampling supports 4-tap kernels (got {k})")
        self.register_buffer("weight", _fir_2d(k, 4.0).expand(channels, 1, 4, 4).contiguous(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight.to(x.dtype), stride=2, padding=1, groups=self.channels)


class FIRDownsample(nn.Module):
    """x2 FIR downsampling (upfirdn2d with down=2, pad (1, 1)) as a depthwise strided conv."""

    def __init__(self, channels: int, k: tuple[int, ...] = (1, 3, 3, 1), pad: int = 1, stride: int = 2):
        super().__init__()
        if len(k) != 4:
            raise ValueError(f"FIR downsampling supports 4-tap kernels (got {k})")
        self.register_buffer("weight", _fir_2d(k, 1.0).expand(channels, 1, 4, 4).contiguous(), persistent=False)
        self.channels, self.pad, self.stride = channels, pad, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=self.pad, groups=self.channels)


class ConvDownsample(nn.Module):
    """DDGAN's FIR `Conv2d(down=True)`: FIR blur (pad 2, stride 1) then a 3x3 conv with stride 2."""

    def __init__(self, in_ch: int, out_ch: int, k: tuple[int, ...] = (1, 3, 3, 1)):
        super().__init__()
        self.blur = FIRDownsample(in_ch, k, pad=2, stride=1)
        self.conv = conv(in_ch, out_ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.blur(x))


# --- normalisation ----------------------------------------------------------------------------
class AdaGNAct(nn.Module):
    """AdaGN followed by SiLU: silu(GroupNorm(x) * gamma(s) + beta(s)), GroupNorm without affine,
    (gamma, beta) = Linear(style). The fused kernels compute exactly this; `kernel` may be set to
    one of them (signature of `kernels.reference.adagn_silu_ref`)."""

    def __init__(self, channels: int, style_dim: int, eps: float = 1e-6):
        super().__init__()
        self.channels, self.groups, self.eps = channels, num_groups(channels), eps
        self.style = dense(style_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias[:channels] = 1.0
        self.kernel = None

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style).chunk(2, dim=1)
        return self.apply_style(x, gamma, beta)

    def apply_style(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            return self.kernel(x, gamma, beta, self.groups, self.eps)
        h = F.group_norm(x, self.groups, eps=self.eps)
        return F.silu(torch.addcmul(beta[:, :, None, None], h, gamma[:, :, None, None]))


class GroupNormAct(nn.Module):
    """Plain GroupNorm (with affine) followed by SiLU: the encoder's normalisation."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, eps=eps)

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        return F.silu(self.norm(x))


# --- blocks -------------------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """BigGAN-style residual block (DDGAN `ResnetBlockBigGANpp_Adagn`): norm-act, optional FIR
    up/down, conv, + time bias, norm-act, dropout, conv (near-zero init), 1x1 skip when the shape
    changes, (x + h) / sqrt(2). With `style_dim=None` the norms are plain GroupNorm (the encoder)."""

    def __init__(self, in_ch: int, out_ch: int | None = None, temb_dim: int | None = None,
                 style_dim: int | None = None, up: bool = False, down: bool = False, dropout: float = 0.0,
                 fir_kernel: tuple[int, ...] = (1, 3, 3, 1), skip_rescale: bool = True):
        super().__init__()
        out_ch = out_ch or in_ch
        norm = (lambda c: AdaGNAct(c, style_dim)) if style_dim is not None else GroupNormAct
        self.norm_0 = norm(in_ch)
        self.resample = FIRUpsample(in_ch, fir_kernel) if up else FIRDownsample(in_ch, fir_kernel) if down else None
        self.conv_0 = conv(in_ch, out_ch)
        self.temb_proj = dense(temb_dim, out_ch) if temb_dim is not None else None
        self.norm_1 = norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv_1 = conv(out_ch, out_ch, init_scale=0.0)
        self.skip = conv(in_ch, out_ch, 1) if (in_ch != out_ch or up or down) else None
        self.scale = SQRT_HALF if skip_rescale else 1.0

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, style: torch.Tensor | None = None
                ) -> torch.Tensor:
        """temb: the time embedding already passed through SiLU (computed once per forward)."""
        h = self.norm_0(x, style)
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.conv_0(h)
        if self.temb_proj is not None:
            h = h + self.temb_proj(temb)[:, :, None, None]
        h = self.conv_1(self.dropout(self.norm_1(h, style)))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * self.scale


class AttnBlock(nn.Module):
    """Single-head self-attention over pixels (score_sde `AttnBlockpp`): GroupNorm, q/k/v 1x1,
    softmax(q k^T / sqrt(C)) v, output 1x1 (near-zero init), (x + h) / sqrt(2)."""

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, eps=1e-6)
        self.qkv = conv(channels, 3 * channels, 1, init_scale=0.1)
        self.proj = conv(channels, channels, 1, init_scale=0.0)
        self.scale = SQRT_HALF if skip_rescale else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, hgt * wid).transpose(2, 3).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # (b, hw, c), scale 1 / sqrt(c)
        h = self.proj(h.transpose(1, 2).reshape(b, c, hgt, wid))
        return (x + h) * self.scale
