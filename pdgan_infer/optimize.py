"""Model-level inference optimisations of the generator, applied by the engine's backends.

`prepare_generator(generator, Optimizations(...))` returns a `FastGenerator`: a prepared inference
COPY of the generator (the original, and the checkpoint format, are untouched) that computes
exactly the same function with:

* merged GEMMs: every AdaGN style Linear (`AdaGNAct.style`, (2C_i, style_dim) each) is stacked
  into ONE (sum 2C_i, style_dim) Linear applied once to the mapping output; every time projection
  (`ResnetBlock.temb_proj`) likewise into one Linear on the time embedding. Each AdaGN /
  time projection then reads its columns through a `ColumnSlice` module put in place of its Linear,
  so the blocks' own `forward`s (and the `AdaGNAct.kernel` hooks) are unchanged. cifar10: 56 + 28
  small GEMMs per generator call become 2.
* channels-last (NHWC) activations and convolution weights: oneDNN's fast convolution layout.
* fast FIR upsampling: for the (1, 3, 3, 1) kernel, upfirdn2d(up=2) equals bilinear x2
  interpolation (align_corners=False) with the first/last rows and columns scaled by 3/4 (bilinear
  clamps at the border where upfirdn pads with zeros: out[0] = 3/4 x[0] instead of x[0]). The
  depthwise transposed convolution it replaces runs far below its FLOP rate on the CPU: on
  (100, 256, 16, 16) it took 130-220 ms in fp32 and 1.2-1.6 s in bf16, against 120-370 ms for a
  dense 256-channel 3x3 convolution of the same input, which has 256 * 9 / 16 = 144 times its
  FLOPs; the bilinear form is one memory-bound pass (~1.8% of the bf16 cifar10 generator time).
* fast attention: `AttnBlock` calls SDPA with 3-D (b, hw, c) tensors, which the CPU runs on its
  unfused math path (bmm, softmax, masking, copies); `FastAttnBlock` (same parameters) passes
  4-D (b, 1, hw, c) views so SDPA takes its fused flash kernel (2-3.5x faster on the cifar10 16x16
  attention), and in channels-last the q/k/v split and the output are views, not copies.
* folded scales: a residual block returns (x + h) / sqrt(2); the 1/sqrt(2) is folded into the
  weights of its last convolution (and of its 1x1 skip convolution), and the sum is one in-place
  `add_(x, alpha)` (the time-embedding bias likewise in place): two full passes over the
  activations and two allocations fewer per block. Same for the attention block's output.
* Winograd 3x3 convolutions (CPU; the `native` backend installs them with `FastGenerator.set_conv3x3_kernel`):
  every 3x3 stride-1 padding-1 convolution of the trunk that `is_winograd_conv` admits becomes a
  `WinogradConv2d` holding its filters transformed once. float32: F(4x4, 3x3), a quarter of the direct
  convolution's multiply-adds, for layers with at least 128 channels in and out. bfloat16 on a CPU whose oneDNN
  has no AMX (AVX512-BF16 only, e.g. AMD Zen 4): F(2x2, 3x3), 4/9 of them, in bfloat16 with float32
  accumulation (csrc/winograd), for layers with at least 64 input channels. A residual block's last
  convolution then also adds the block's identity/skip path in its output pass (no separate `add_`). Thinner
  layers keep oneDNN's direct convolution, which is faster there.
* reduced precision: convolutions, attention and norms in `dtype` (bf16 / fp16); the tiny
  precision-sensitive parts (time embedding and MLP, mapping network, the merged GEMMs, the output
  GroupNorm and convolution) stay in float32; inputs are cast at the model boundary and the output
  is returned in float32 NCHW.

`CUDAGraphSampler` captures a whole T-step sampler function once per batch size (GPU only);
`default_batch_size` is the engine's batch size per device when none is given; `cpu_micro_batch` the
images per pass into which the CPU runners split a batch.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .networks.generator import Generator
from .networks.layers import AdaGNAct, AttnBlock, FIRUpsample, ResnetBlock

REDUCED_DTYPES = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Optimizations:
    """Which model-level optimisations `prepare_generator` applies."""

    merge_linears: bool = True  # one GEMM for all AdaGN styles, one for all time projections
    channels_last: bool = True  # NHWC activations and conv weights
    fast_fir: bool = True  # bilinear-based exact FIR x2 upsampling (kernel (1, 3, 3, 1) only)
    fast_attention: bool = True  # attention through SDPA's fused (flash) kernel, no layout copies
    fold_scales: bool = True  # residual 1/sqrt(2) folded into the last conv; in-place epilogues
    winograd: bool = True  # native backend, CPU: Winograd 3x3 convolutions (float32; bfloat16 without AMX)
    dtype: torch.dtype = torch.float32  # compute dtype of the convolutional trunk

    def __post_init__(self):
        if self.dtype not in (torch.float32, *REDUCED_DTYPES):
            raise ValueError(f"Optimizations.dtype must be float32, bfloat16 or float16, got {self.dtype}")


NONE = Optimizations(merge_linears=False, channels_last=False, fast_fir=False, fast_attention=False,
                     fold_scales=False, winograd=False)


class ColumnSlice(nn.Module):
    """Stands in for a Linear whose output is a column block of a merged GEMM's output."""

    def __init__(self, start: int, width: int):
        super().__init__()
        self.start, self.width = start, width

    def forward(self, merged: torch.Tensor) -> torch.Tensor:
        return merged[:, self.start:self.start + self.width]

    def extra_repr(self) -> str:
        return f"columns [{self.start}, {self.start + self.width})"


def merge_linears(owners: list[tuple[nn.Module, str]]) -> nn.Linear:
    """Stack the Linears `getattr(owner, attr)` (same input size) into one Linear and put a
    `ColumnSlice` in place of each. Returns the merged Linear (float32, on the weights' device)."""
    linears = [getattr(owner, attr) for owner, attr in owners]
    if not linears:
        raise ValueError("merge_linears: nothing to merge")
    in_features = {lin.in_features for lin in linears}
    if len(in_features) != 1:
        raise ValueError(f"merge_linears: the Linears have different input sizes {sorted(in_features)}")
    weight = torch.cat([lin.weight.detach().float() for lin in linears])
    bias = torch.cat([lin.bias.detach().float() if lin.bias is not None
                      else torch.zeros(lin.out_features, device=weight.device) for lin in linears])
    merged = nn.Linear(in_features.pop(), weight.shape[0], device=weight.device)
    with torch.no_grad():
        merged.weight.copy_(weight)
        merged.bias.copy_(bias)
    start = 0
    for (owner, attr), lin in zip(owners, linears):
        setattr(owner, attr, ColumnSlice(start, lin.out_features))
        start += lin.out_features
    return merged


class FastFIRUpsample(nn.Module):
    """Exact x2 FIR upsampling for the kernel (1, 3, 3, 1): bilinear x2 with border rows and columns
    scaled by 3/4 (see the module docstring). Keeps the input's dtype and memory format."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        h, w = y.shape[-2:]
        y[:, :, 0::h - 1, :] *= 0.75  # rows 0 and h-1
        y[:, :, :, 0::w - 1] *= 0.75  # columns 0 and w-1
        return y


class FastAttnBlock(nn.Module):
    """`AttnBlock` with the same modules, attention through SDPA's fused kernel (see above)."""

    def __init__(self, block: AttnBlock, fold_scale: bool = False):
        super().__init__()
        self.norm, self.qkv, self.proj, self.scale = block.norm, block.qkv, block.proj, block.scale
        self.fold = fold_scale
        if fold_scale:  # (x + proj(a)) * s = s * x + (s * proj)(a)
            with torch.no_grad():
                self.proj.weight.mul_(self.scale)
                self.proj.bias.mul_(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        qkv = self.qkv(self.norm(x)).permute(0, 2, 3, 1).reshape(b, 1, hgt * wid, 3, c)  # channel = j*c + i
        q, k, v = qkv.unbind(3)  # (b, 1, hw, c) each
        h = F.scaled_dot_product_attention(q, k, v)  # scale 1 / sqrt(c), as AttnBlock
        h = self.proj(h.reshape(b, hgt, wid, c).permute(0, 3, 1, 2))
        return h.add_(x, alpha=self.scale) if self.fold else (x + h) * self.scale


class WinogradConv2d(nn.Module):
    """A 3x3 stride-1 padding-1 `Conv2d` computed by `kernel(x, u, bias, residual, alpha)` from its filters
    transformed once by `transform` (the native Winograd kernels: float32 F(4x4, 3x3), bfloat16 F(2x2, 3x3));
    the bias is kept in float32."""

    def __init__(self, conv: nn.Conv2d, kernel, transform):
        super().__init__()
        if not is_winograd_conv(conv):
            raise ValueError(f"WinogradConv2d needs a 3x3 stride-1 padding-1 ungrouped Conv2d that is_winograd_conv "
                             f"admits (float32: at least {WINOGRAD_MIN_CHANNELS} channels in and out; bfloat16: at "
                             f"least {WINOGRAD_BF16_MIN_CHANNELS} in, a multiple of 16, and out a multiple of 32), "
                             f"got {conv}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.tile = "F(4x4, 3x3)" if conv.weight.dtype == torch.float32 else "F(2x2, 3x3) bfloat16"
        self.kernel = kernel
        self.register_buffer("u", transform(conv.weight.detach()))
        bias = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        self.register_buffer("bias", bias.float().contiguous())

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, alpha: float = 1.0) -> torch.Tensor:
        return self.kernel(x, self.u, self.bias, residual, alpha)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=(3, 3), Winograd {self.tile}"


# Winograd pays when both channel counts are at least this: its transforms cost ~(C + K) per tile, its GEMMs
# C * K. Measured per layer (2-core Xeon, fp32, 100 images, benchmarks/winograd_layers.py): C = K = 128 1.2-1.4x
# faster than oneDNN's direct convolution, 256 1.7-3.0x; 64 x 64 0.8-1.05x and 128 x 64 0.8-1.0x, the digits
# model's widest layers; 32 channels 0.55x.
WINOGRAD_MIN_CHANNELS = 128
# bfloat16 F(2x2, 3x3) against oneDNN's direct bfloat16 convolution (AVX512-BF16, no AMX; 2-core AMD EPYC Zen 4,
# benchmarks/winograd_layers.py --dtype bfloat16 at the native backend's pass sizes): every layer with at least
# 64 input channels 1.2-2.1x faster (cifar10 1.36-2.12x, celebahq256 1.23-1.89x, digits 64 -> 32 1.24x), 32 input
# channels 0.91-1.06x. The GEMM depth is the input channels, so only they count here.
WINOGRAD_BF16_MIN_CHANNELS = 64


def is_winograd_conv(conv: nn.Module) -> bool:
    """A Conv2d that `WinogradConv2d` stands in for: 3x3, stride 1, padding 1 (zeros), dilation 1, groups 1, and
    float32 with at least WINOGRAD_MIN_CHANNELS input and output channels, or bfloat16 with at least
    WINOGRAD_BF16_MIN_CHANNELS input channels, a multiple of 16, and output channels a multiple of 32 (the
    kernel's blocks)."""
    if not (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding_mode == "zeros"):
        return False
    c, k = conv.in_channels, conv.out_channels
    if conv.weight.dtype == torch.float32:
        return min(c, k) >= WINOGRAD_MIN_CHANNELS
    if conv.weight.dtype == torch.bfloat16:
        return c >= WINOGRAD_BF16_MIN_CHANNELS and c % 16 == 0 and k % 32 == 0
    return False


class FastResnetBlock(nn.Module):
    """`ResnetBlock` (same modules) with the output scale folded into conv_1 and the skip conv."""

    def __init__(self, block: ResnetBlock):
        super().__init__()
        for name in ("norm_0", "resample", "conv_0", "temb_proj", "norm_1", "dropout", "conv_1", "skip"):
            setattr(self, name, getattr(block, name))
        with torch.no_grad():
            for conv in (self.conv_1, self.skip):
                if conv is not None:
                    conv.weight.mul_(block.scale)
                    conv.bias.mul_(block.scale)
        self.alpha = 1.0 if self.skip is not None else block.scale  # weight of the identity path

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None, style: torch.Tensor | None = None
                ) -> torch.Tensor:
        h = self.norm_0(x, style)
        if self.resample is not None:
            h, x = self.resample(h), self.resample(x)
        h = self.conv_0(h)
        if self.temb_proj is not None:
            h.add_(self.temb_proj(temb)[:, :, None, None])  # h is the conv's fresh output
        h = self.dropout(self.norm_1(h, style))
        if self.skip is not None:
            x = self.skip(x)
        if isinstance(self.conv_1, WinogradConv2d):  # the residual add in the convolution's output pass
            return self.conv_1(h, x, self.alpha)
        return self.conv_1(h).add_(x, alpha=self.alpha)


class FastGenerator(nn.Module):
    """Inference-only copy of a `Generator` with `Optimizations` applied; same call signature
    G(x_t, z, t) and the same function (within `dtype` rounding). Returns float32 NCHW."""

    def __init__(self, generator: Generator, opts: Optimizations = Optimizations()):
        super().__init__()
        g = copy.deepcopy(generator).eval().requires_grad_(False)
        self.g, self.opts = g, opts
        self.dtype = opts.dtype
        self.style_dtype = opts.dtype  # float32 while fused AdaGN kernels are set (set_adagn_kernel)
        self.memory_format = torch.channels_last if opts.channels_last else torch.contiguous_format
        self.style_gemm = self.temb_gemm = None
        if opts.merge_linears:
            norms = [m for m in g.modules() if isinstance(m, AdaGNAct)]
            blocks = [m for m in g.modules() if isinstance(m, ResnetBlock) and m.temb_proj is not None]
            self.style_gemm = merge_linears([(m, "style") for m in norms])
            self.temb_gemm = merge_linears([(m, "temb_proj") for m in blocks]) if blocks else None
        if opts.fast_fir and tuple(g.cfg.fir_kernel) == (1, 3, 3, 1):
            _replace_modules(g, FIRUpsample, lambda _: FastFIRUpsample())
        if opts.fast_attention:
            _replace_modules(g, AttnBlock, lambda block: FastAttnBlock(block, opts.fold_scales))
        if opts.fold_scales:
            _replace_modules(g, ResnetBlock, FastResnetBlock)
        g.to(memory_format=self.memory_format)
        # the trunk in `dtype`; the rest (t and z embeddings, output layer: tiny and
        # precision-sensitive) stays float32
        for part in (g.conv_in, g.down, g.mid, g.up):
            part.to(dtype=opts.dtype)

    def forward(self, x_t: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g, dt = self.g, self.dtype
        style = g.mapping(z.float())
        temb = F.silu(g.time_mlp(g.time_embed(t)))
        if self.style_gemm is not None:
            style = self.style_gemm(style)
        if self.temb_gemm is not None:
            temb = self.temb_gemm(temb)
        style, temb = style.to(self.style_dtype), temb.to(dt)
        x = x_t.to(dtype=dt, memory_format=self.memory_format)
        h = g.conv_in(x)
        skips, pyramid = [h], x
        for level in g.down:
            h, pyramid = level(h, pyramid, temb, style, skips)
        h = g.mid(h, temb, style)
        for level in g.up:
            h = level(h, temb, style, skips)
        h = g.conv_out(F.silu(g.norm_out(h.float())))
        h = torch.tanh(h) if g.cfg.use_tanh else h
        return h.contiguous()

    def set_adagn_kernel(self, kernel) -> None:
        """Route every AdaGN of the copy through `kernel(x, gamma, beta, num_groups, eps)` (None:
        the torch ops). gamma/beta are passed as they are: with merged style GEMMs, column views of the
        GEMM's output (rows strided, columns dense), which the CUDA and Triton kernels read in place. The
        style then stays float32 for the kernels (they compute in float32): no rounding of gamma/beta to
        the trunk dtype and no conversion back inside every AdaGN call."""
        self.style_dtype = torch.float32 if kernel is not None and self.style_gemm is not None else self.dtype
        for m in self.g.modules():
            if isinstance(m, AdaGNAct):
                m.kernel = kernel

    def set_conv3x3_kernel(self, kernel, transform) -> int:
        """Replace every eligible 3x3 convolution of the trunk's blocks (`is_winograd_conv`, in the trunk's dtype)
        by a `WinogradConv2d` computed by `kernel` with filters `transform(weight)` (a bfloat16 trunk's filters
        are transformed from their bfloat16 values: the weights oneDNN's direct convolution would use). Returns
        how many trunk convolutions are Winograd afterwards."""
        def make(conv: nn.Conv2d) -> nn.Module:
            return WinogradConv2d(conv, kernel, transform) if is_winograd_conv(conv) else conv

        trunk = (self.g.down, self.g.mid, self.g.up)
        for part in trunk:
            _replace_modules(part, nn.Conv2d, make)
        return sum(isinstance(m, WinogradConv2d) for part in trunk for m in part.modules())


def _replace_modules(root: nn.Module, cls: type, make) -> None:
    """Replace every submodule of type `cls` by `make(module)`."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is cls:
                setattr(parent, name, make(child))


def prepare_generator(generator: Generator, opts: Optimizations = Optimizations()) -> FastGenerator:
    """A prepared inference copy of `generator` (see the module docstring)."""
    if not isinstance(generator, Generator):
        raise TypeError(f"prepare_generator needs a pdgan Generator, got {type(generator).__name__}")
    return FastGenerator(generator, opts)


def reduced_dtype_supported(dtype: torch.dtype, device: torch.device) -> str | None:
    """None when `dtype` convolutions run natively on `device`; otherwise why not (and what to use)."""
    if dtype == torch.float32:
        return None
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            return "this GPU has no bfloat16 support; use dtype=torch.float16"
        return None
    if device.type == "cpu":
        if dtype == torch.float16:
            return "float16 is not a fast CPU dtype; use dtype=torch.bfloat16 (or float32) on the CPU"
        if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return "this CPU has no native bfloat16 (AVX512-BF16/AMX); use dtype=torch.float32"
        return None
    return f"reduced precision is not supported on device {device}"


def fastest_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype `dtype="auto"` picks: bfloat16 where `device` runs it natively, else float32.

        device                                          auto      (timings: docs/benchmarks.md)
        CPU with AMX (Intel Sapphire Rapids and later)  bfloat16  oneDNN's AMX convolutions
        CPU with AVX512-BF16, no AMX (AMD Zen 4)        bfloat16  the native bfloat16 Winograd convolutions
        any other CPU                                   float32   no native bfloat16
        CUDA GPU with bfloat16 (compute capability 8+)  bfloat16  tensor cores; not yet timed (make gpu-check)
        other CUDA GPUs                                 float32

    bfloat16 images differ from float32 ones by up to ~25 uint8 levels on random weights (a few on trained
    ones): the default stays float32, and "auto" is asked for."""
    device = torch.device(device)
    return torch.bfloat16 if reduced_dtype_supported(torch.bfloat16, device) is None else torch.float32


CPU_PIXELS_PER_BATCH = 64 * 32 * 32  # 64 cifar10-size images: the CPU gains nothing from bigger batches
CUDA_PIXELS_PER_16GIB = 256 * 32 * 32  # per 16 GiB of GPU memory (256 cifar10 images, 4 celebahq256 ones)
MAX_DEFAULT_BATCH = 256  # bigger batches add latency and CUDA-graph memory, not throughput


# CPU micro-batch: the optimized/native runners split a sampler batch into passes of about this many pixels.
# Each pass's activations then stay small enough for glibc to reuse freed heap memory (blocks over its mmap
# threshold, at most 32 MiB, are mapped fresh and page-faulted in by every op) and closer to the caches.
# Measured (cifar10, 100 images, 2-core Xeon, native): fp32 8.5 s in one pass against 7.7-8.1 s in passes of
# 25-50 images; bf16 3.35-3.5 s against 3.05-3.1 s at 25-34.
CPU_PIXELS_PER_MICRO_BATCH = 25 * 32 * 32


def cpu_micro_batch(resolution: int) -> int:
    """Images per CPU sampler pass for `resolution` (at least 1); see CPU_PIXELS_PER_MICRO_BATCH."""
    return max(1, CPU_PIXELS_PER_MICRO_BATCH // (resolution * resolution))


def default_batch_size(resolution: int, device: torch.device | str) -> int:
    """The engine's batch size when none is given: a pixel budget divided by resolution**2, at least 1 and at
    most MAX_DEFAULT_BATCH images. CPU: CPU_PIXELS_PER_BATCH. CUDA: CUDA_PIXELS_PER_16GIB scaled by the GPU's
    memory (a fixed 256 * 32 * 32 gave celebahq256 a batch of 4 on a 141 GB H200; now 35, and 256 cifar10
    images), so small GPUs get proportionally smaller batches."""
    device = torch.device(device)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        pixels = int(CUDA_PIXELS_PER_16GIB * total / 2**34)
    else:
        pixels = CPU_PIXELS_PER_BATCH
    return max(1, min(MAX_DEFAULT_BATCH, pixels // (resolution * resolution)))


class CUDAGraphSampler:
    """Replays `fn(x_T, z_T, z, eps) -> x0` from a CUDA graph captured once per input shape.

    Everything `fn` does must be capturable: no host synchronisation, no CPU tensors created from
    device data (the engine's chain only builds device tensors with `torch.full` and uses Python
    float coefficients). Inputs are copied into static buffers; the output is cloned out of the
    graph's pool. Capture and replay run with the inputs' device current (cuda:1 works while device 0
    is current). All graphs share one memory pool: they replay one at a time on one stream and every
    output is cloned before the next replay, so the pool holds one chain's activations, not one per
    batch size. cuDNN benchmarks its algorithms in the warm-up (benchmark mode during warm-up and
    capture). A capture that fails (an op that synchronises, a kernel that is not capturable) is
    reported once and the sampler then runs `fn` eagerly. Exercised on GPUs only (`make gpu-check`)."""

    def __init__(self, fn, warmup: int = 2, max_graphs: int = 4):
        # a bound method (a runner's chain) is held weakly: owner -> sampler -> owner would be a reference
        # cycle, and the owner, its graphs and their memory pool would wait for the cyclic garbage collector
        self._fn = weakref.WeakMethod(fn) if inspect.ismethod(fn) else (lambda: fn)
        self.warmup, self.max_graphs = warmup, max_graphs
        self.graphs: dict[tuple, tuple] = {}
        self.pool = None  # torch.cuda.graph_pool_handle(), made at the first capture
        self.eager_reason: str | None = None  # why captures failed; `fn` then runs eagerly

    @property
    def fn(self):
        fn = self._fn()
        if fn is None:
            raise ReferenceError("CUDAGraphSampler: the object whose method it replays no longer exists")
        return fn

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.eager_reason is not None:
            return self.fn(*inputs)
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        device = inputs[0].device
        with _on_device(device):
            if key not in self.graphs:
                if len(self.graphs) >= self.max_graphs:
                    self.graphs.pop(next(iter(self.graphs)))
                try:
                    self.graphs[key] = self._capture(inputs)
                except Exception as e:  # noqa: BLE001 - any capture failure: fall back to eager, once
                    self.eager_reason = f"{type(e).__name__}: {e}".strip()
                    warnings.warn(f"CUDA graph capture failed ({self.eager_reason}); running the sampler eagerly",
                                  RuntimeWarning, stacklevel=2)
                    return self.fn(*inputs)
            graph, static_in, static_out = self.graphs[key]
            for buf, t in zip(static_in, inputs):
                buf.copy_(t, non_blocking=True)
            graph.replay()
            return static_out.clone()

    @torch.no_grad()
    def _capture(self, inputs):
        static_in = [t.detach().clone() for t in inputs]
        cudnn = torch.backends.cudnn
        benchmark, cudnn.benchmark = cudnn.benchmark, True  # only this flag: TF32 and the rest stay as the caller set
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: allocator, cuDNN algorithm choice, lazy inits
                for _ in range(self.warmup):
                    self.fn(*static_in)
            torch.cuda.current_stream().wait_stream(side)
            if self.pool is None:
                self.pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                static_out = self.fn(*static_in)
        finally:
            cudnn.benchmark = benchmark
        return graph, static_in, static_out


def _on_device(device: torch.device):
    """`torch.cuda.device(device)` for a CUDA device (streams, graphs and launches use the current one)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
