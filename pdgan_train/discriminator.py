"""Time-conditioned discriminator D(x_{t-1}, x_t, t) of paper Eq. 6, following DDGAN (Xiao et al., 2022).

Architecture (DDGAN's `Discriminator_small` / `Discriminator_large`, same widths and parameter count):

    emb   = leaky(MLP(sinusoid(t)))                      MLP: dense -> leaky -> dense, width t_emb_dim
    h     = conv1x1(cat[x_{t-1}, x_t])                   2C -> 2 ngf
    h     = DownConvBlock(h, emb) x 4 (small) or x 6 (large)
    h     = cat[h, minibatch_stddev(h)]                  +1 channel
    logit = linear(sum_hw(leaky(conv3x3(h))))            one logit per sample, shape (N,)

    DownConvBlock(x, emb):
        h = conv3x3(leaky(x)) + dense(emb)[:, :, None, None]
        h = leaky(h)
        if down: h, x = blur_down(h), blur_down(x)       FIR (1, 3, 3, 1), stride 2, pad 1
        return (conv3x3(h) + conv1x1_nobias(x)) / sqrt(2)

Time convention: `t` holds paper steps 1..T (t = 1 is the last sampling step). DDGAN indexes the same
steps 0..T-1 and embeds that index, so we embed `t - 1`: the embedding for paper step t equals
DDGAN's for its index t - 1, and DDGAN weights/statistics carry over unchanged.

Differences from DDGAN's code (numerics unchanged unless said):
- the FIR blur is a depthwise conv2d whose kernel is a non-persistent buffer built at init (DDGAN
  builds a host tensor and copies it to the device on every call, via a compiled CUDA upfirdn2d);
- sinusoid frequencies are a non-persistent buffer, so `forward` creates no tensors from Python;
- the minibatch-stddev group is the largest divisor of N that is <= 4 (DDGAN uses min(N, 4) and
  crashes when N is not divisible by it; for every N it accepts the result is identical);
- `forward` returns shape (N,) instead of (N, 1); the input channel count is the image's C, not 2C.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.2  # LeakyReLU slope used everywhere in DDGAN's discriminator
STDDEV_GROUP = 4  # minibatch-stddev group size (StyleGAN2 / DDGAN)
FIR_KERNEL = (1, 3, 3, 1)  # DDGAN's resampling filter
SMALL_RESOLUTIONS = (32, 64)
LARGE_RESOLUTIONS = (128, 256)


# --- initialisation ------------------------------------------------------------------------------
def _variance_scaling_(layer: nn.Conv2d | nn.Linear, scale: float = 1.0) -> None:
    """DDGAN's `dense`/`conv2d` init: U(-b, b), b = sqrt(3 * scale / fan), zero bias.

    DDGAN requests fan_avg, but its fan helper returns fan_out for any mode other than fan_in; we keep
    that (fan = out_features * kernel area) so initial activations match DDGAN. scale 0 means 1e-10.
    """
    scale = 1e-10 if scale == 0 else scale
    w = layer.weight
    fan_out = w.shape[0] * (w[0, 0].numel() if w.dim() > 2 else 1)
    bound = math.sqrt(3.0 * scale / max(1.0, fan_out))
    with torch.no_grad():
        w.uniform_(-bound, bound)
        if layer.bias is not None:
            layer.bias.zero_()


def _conv(cin: int, cout: int, k: int, bias: bool = True, scale: float = 1.0) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)
    _variance_scaling_(conv, scale)
    return conv


def _dense(cin: int, cout: int) -> nn.Linear:
    lin = nn.Linear(cin, cout)
    _variance_scaling_(lin)
    return lin


# --- building blocks -----------------------------------------------------------------------------
class FirDownsample(nn.Module):
    """2x FIR downsampling (StyleGAN2 `downsample_2d`, as DDGAN calls it with factor 2, gain 1).

    The 2-D kernel outer(k, k) / sum is padded by ((K-2+1)//2, (K-2)//2) = (1, 1) for K = 4, then applied
    with stride 2: (N, C, H, W) -> (N, C, H // 2, W // 2). Depthwise conv2d with a per-channel buffer.
    The kernel is symmetric, so correlation (conv2d) equals upfirdn2d's true convolution.
    """

    def __init__(self, channels: int, kernel: tuple[int, ...] = FIR_KERNEL):
        super().__init__()
        k1 = torch.tensor(kernel, dtype=torch.float64)
        k2 = torch.outer(k1, k1)
        k2 = (k2 / k2.sum()).to(torch.float32)
        self.register_buffer("weight", k2.expand(channels, 1, *k2.shape).clone(), persistent=False)
        self.channels = channels
        p = len(kernel) - 2
        self.pad = ((p + 1) // 2, p // 2)  # (before, after) on both spatial axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        return F.conv2d(x, self.weight.to(x.dtype), stride=2, groups=self.channels)


class TimeEmbedding(nn.Module):
    """Sinusoidal embedding of the DDGAN step index (t - 1) followed by dense -> leaky -> dense.

    Frequencies exp(-log(10000) * i / (half - 1)), i < half; features [sin, cos] (zero-padded if odd).
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim < 4:
            raise ValueError(f"t_emb_dim must be >= 4, got {dim}")
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
        self.register_buffer("freqs", freqs, persistent=False)
        self.dim = dim
        self.fc1 = _dense(dim, dim)
        self.fc2 = _dense(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = (t.to(self.freqs.dtype) - 1.0)[:, None] * self.freqs[None, :]  # paper t -> DDGAN index
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
        if self.dim % 2:
            emb = F.pad(emb, (0, 1))
        return self.fc2(F.leaky_relu(self.fc1(emb.to(self.fc1.weight.dtype)), LEAK))


class DownConvBlock(nn.Module):
    """Residual block with an additive time projection and optional 2x FIR downsampling."""

    def __init__(self, cin: int, cout: int, t_emb_dim: int, downsample: bool):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3)
        self.time_proj = _dense(t_emb_dim, cout)
        self.conv2 = _conv(cout, cout, 3, scale=0.0)
        self.skip = _conv(cin, cout, 1, bias=False)
        self.blur_main = FirDownsample(cout) if downsample else nn.Identity()
        self.blur_skip = FirDownsample(cin) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(x, LEAK)) + self.time_proj(emb)[:, :, None, None]
        h = self.blur_main(F.leaky_relu(h, LEAK))
        h = self.conv2(h)
        return (h + self.skip(self.blur_skip(x))) * (1.0 / math.sqrt(2.0))


def minibatch_stddev(x: torch.Tensor, group_size: int = STDDEV_GROUP) -> torch.Tensor:
    """Append one channel: the std over a group of samples, averaged over C, H, W (StyleGAN2 layout).

    Sample n is grouped with the samples n' = n (mod N // G); G = largest divisor of N that is
    <= group_size (DDGAN: min(N, group_size), which must divide N).
    """
    n, c, h, w = x.shape
    g = next(d for d in range(min(n, group_size), 0, -1) if n % d == 0)
    y = x.reshape(g, n // g, c, h, w)
    y = torch.sqrt(y.var(dim=0, correction=0) + 1e-8)  # (N/G, C, H, W)
    y = y.mean(dim=(1, 2, 3), keepdim=True)  # (N/G, 1, 1, 1)
    y = y.repeat(g, 1, h, w)  # (N, 1, H, W)
    return torch.cat([x, y], dim=1)


# --- discriminators ------------------------------------------------------------------------------
class TimeConditionedDiscriminator(nn.Module):
    """Shared trunk; subclasses only choose the block widths and where to downsample."""

    def __init__(self, channels: int, ngf: int, t_emb_dim: int,
                 widths: list[tuple[int, int, bool]], final_scale: float):
        super().__init__()
        if channels < 1 or ngf < 1:
            raise ValueError(f"channels and ngf must be >= 1, got channels={channels}, ngf={ngf}")
        self.channels = channels
        self.time_embed = TimeEmbedding(t_emb_dim)
        self.stem = _conv(2 * channels, widths[0][0], 1)
        self.blocks = nn.ModuleList(DownConvBlock(ci, co, t_emb_dim, down) for ci, co, down in widths)
        top = widths[-1][1]
        self.final_conv = _conv(top + 1, top, 3, scale=final_scale)
        self.head = _dense(top, 1)

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_prev = x_{t-1}, x_t: (N, C, H, W); t: (N,) paper steps in 1..T. Returns logits (N,)."""
        if x_prev.shape != x_t.shape or x_prev.dim() != 4 or x_prev.shape[1] != self.channels:
            raise ValueError(f"expected x_prev and x_t of shape (N, {self.channels}, H, W), got "
                             f"{tuple(x_prev.shape)} and {tuple(x_t.shape)}")
        if t.shape != (x_prev.shape[0],):
            raise ValueError(f"expected t of shape ({x_prev.shape[0]},), got {tuple(t.shape)}")
        emb = F.leaky_relu(self.time_embed(t), LEAK)
        h = self.stem(torch.cat([x_prev, x_t], dim=1))
        for block in self.blocks:
            h = block(h, emb)
        h = F.leaky_relu(self.final_conv(minibatch_stddev(h)), LEAK)
        return self.head(h.sum(dim=(2, 3))).squeeze(1)


class DiscriminatorSmall(TimeConditionedDiscriminator):
    """DDGAN `Discriminator_small` (CIFAR-10): 4 blocks, 3 downsamplings, 32x32 -> 4x4."""

    def __init__(self, channels: int = 3, ngf: int = 64, t_emb_dim: int = 128):
        widths = [(2 * ngf, 2 * ngf, False), (2 * ngf, 4 * ngf, True),
                  (4 * ngf, 8 * ngf, True), (8 * ngf, 8 * ngf, True)]
        super().__init__(channels, ngf, t_emb_dim, widths, final_scale=0.0)


class DiscriminatorLarge(TimeConditionedDiscriminator):
    """DDGAN `Discriminator_large` (CelebA-HQ / LSUN 256): 6 downsampling blocks, 256x256 -> 4x4."""

    def __init__(self, channels: int = 3, ngf: int = 64, t_emb_dim: int = 128):
        widths = [(2 * ngf, 4 * ngf, True), (4 * ngf, 8 * ngf, True)] + [(8 * ngf, 8 * ngf, True)] * 4
        super().__init__(channels, ngf, t_emb_dim, widths, final_scale=1.0)


def build_discriminator(resolution: int, channels: int = 3, ngf: int = 64,
                        t_emb_dim: int = 128) -> TimeConditionedDiscriminator:
    """Small discriminator for 32/64 px images (DDGAN's CIFAR-10 choice), large one for 128/256 px."""
    if resolution in SMALL_RESOLUTIONS:
        return DiscriminatorSmall(channels, ngf, t_emb_dim)
    if resolution in LARGE_RESOLUTIONS:
        return DiscriminatorLarge(channels, ngf, t_emb_dim)
    raise ValueError(f"unsupported resolution {resolution}: the discriminator supports "
                     f"{SMALL_RESOLUTIONS} (small) and {LARGE_RESOLUTIONS} (large)")
