"""Winograd convolutions (csrc/winograd; `native.winograd_conv3x3` float32 F(4x4, 3x3),
`native.winograd_conv3x3_bf16` bfloat16 F(2x2, 3x3); `optimize.WinogradConv2d`) against float64 `F.conv2d`,
an independent reference.

Bound: the result may differ from the exact convolution by WINOGRAD_REL (float32) or WINOGRAD_BF16_REL
(bfloat16) times the scale sum |x| * |w| (the convolution of |x| with |w|, where rounding errors live). A
direct float32 convolution reaches ~2e-7 of that scale; Winograd's transforms (factors up to 5 in B, 8 in A)
about 6 times more. In bfloat16 the kernel rounds the transformed input V and filters U once each and the
output once, each to a bfloat16 unit roundoff u = 2^-9 of its value. A wrong transform coefficient, a lost
border row or tile, a misplaced bias or residual is off by O(1) of the scale and fails.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pdgan_infer.kernels import native

pytestmark = pytest.mark.skipif(not native.available(), reason=f"PDGAN_SKIP_EXT=1, native extension unavailable: "
                                f"{native.unavailable_reason()}")

WINOGRAD_REL = 5e-6  # of the |x| * |w| scale; measured worst 1.5e-6 here (direct float32: 2.5e-7); a 1e-3 error
# in one of the 36 transformed filter components gives 7e-5 or more


WINOGRAD_BF16_REL = 2 * 2.0 ** -9  # two bfloat16 unit roundoffs of the scale; measured worst 1.5e-3 (32 input
# channels; oneDNN's direct bfloat16 convolution 1e-3), 3.5-9e-4 on the cifar10 layers (direct 2-6e-4)

needs_bf16 = pytest.mark.skipif(not native.winograd_bf16_supported(),
                                reason="this CPU (or a non-x86 build) has no AVX512-BF16, which the bfloat16 Winograd "
                                "kernel runs on")


def reference(x, w, b, residual=None, alpha=1.0):
    """(exact conv + bias + alpha * residual in float64, scale |x| * |w| + |b| + |alpha * residual|)."""
    xd, wd = x.double(), w.double()
    out = F.conv2d(xd, wd, b.double(), padding=1)
    scale = F.conv2d(xd.abs(), wd.abs(), b.double().abs(), padding=1)
    if residual is not None:
        out = out + alpha * residual.double()
        scale = scale + abs(alpha) * residual.double().abs()
    return out, scale


def assert_close(ours, x, w, b, residual=None, alpha=1.0, what="", bound=WINOGRAD_REL):
    ref, scale = reference(x, w, b, residual, alpha)
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    rel = ((ours.double() - ref).abs() / scale.amax()).amax().item()
    assert rel <= bound, f"{what}: off by {rel:.2e} of the |x|*|w| scale (bound {bound:.1e})"


def make(n, c, h, w, k, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(k, c, 3, 3, generator=gen) / (9 * c) ** 0.5
    b = torch.randn(k, generator=gen)
    return x, wt, b


# (N, C, H, W, K): one pixel, ragged tiles (H, W not multiples of 4), channel counts below, at and past the
# kernel's 64-channel blocks, the cifar10 shapes
SHAPES = [(1, 16, 1, 1, 16), (2, 20, 5, 7, 24), (3, 64, 8, 8, 64), (1, 130, 9, 6, 67), (2, 256, 4, 4, 256),
          (2, 128, 32, 32, 128), (1, 512, 16, 16, 256)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_float64_convolution(shape):
    n, c, h, w, k = shape
    x, wt, b = make(n, c, h, w, k)
    y = native.winograd_conv3x3(x, native.winograd_weight(wt), b)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, x, wt, b, what=str(shape))


@pytest.mark.parametrize("alpha", [1.0, 0.7071067811865476, -2.0])
def test_residual_is_added_in_the_output_pass(alpha):
    x, wt, b = make(2, 24, 6, 10, 40, seed=1)
    res = torch.randn(2, 40, 6, 10).contiguous(memory_format=torch.channels_last)
    y = native.winograd_conv3x3(x, native.winograd_weight(wt), b, res, alpha)
    assert_close(y, x, wt, b, res, alpha, what=f"alpha={alpha}")


@pytest.mark.parametrize("tile_block", [1, 3, 7, 10_000])
def test_tile_blocks(tile_block):
    """Every block size (ragged last block included) gives the same convolution: 2 x 3 x 4 = 24 tiles."""
    x, wt, b = make(2, 32, 11, 13, 48, seed=2)
    y = native.winograd_conv3x3(x, native.winograd_weight(wt), b, tile_block=tile_block)
    assert_close(y, x, wt, b, what=f"tile_block={tile_block}")


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, wt, b = make(3, 48, 12, 12, 32, seed=3)
        y = native.winograd_conv3x3(x, native.winograd_weight(wt), b, tile_block=5)
    finally:
        torch.set_num_threads(before)
    assert_close(y, x, wt, b, what=f"{threads} threads")


def test_nchw_input_and_no_bias():
    x, wt, _ = make(2, 16, 7, 7, 8, seed=4)
    y = native.winograd_conv3x3(x.contiguous(), native.winograd_weight(wt))
    assert_close(y, x, wt, torch.zeros(8), what="NCHW input, no bias")


def test_weight_transform_is_the_published_one():
    """U = G g G^T with Lavin & Gray's G: a delta filter at the centre transforms to G[:, 1] G[:, 1]^T."""
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 1.0
    u = native.winograd_weight(w).reshape(6, 6)
    g1 = torch.tensor([0.0, -1 / 6, 1 / 6, 1 / 12, -1 / 12, 0.0])
    torch.testing.assert_close(u, torch.outer(g1, g1), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match=r"\(K, C, 3, 3\)"):
        native.winograd_weight(torch.zeros(2, 2, 5, 5))


def test_rejects_bad_inputs():
    x, wt, b = make(1, 16, 4, 4, 8)
    u = native.winograd_weight(wt)
    op = torch.ops.pdgan.winograd_conv3x3
    with pytest.raises(RuntimeError, match="float32 only"):
        op(x.bfloat16(), u, b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match="channels_last"):
        op(x.contiguous(), u, b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match=r"\(36, C, K\)"):
        op(x, u[:, :8], b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match="bias"):
        op(x, u, b[:4], None, 1.0, 0)
    with pytest.raises(RuntimeError, match="residual"):
        op(x, u, b, torch.zeros(1, 8, 4, 5).contiguous(memory_format=torch.channels_last), 1.0, 0)
    with pytest.raises(RuntimeError, match="tile_block"):
        op(x, u, b, None, 1.0, -1)


def test_fake_kernel_gives_the_output_metadata():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x = torch.empty(2, 16, 5, 7).contiguous(memory_format=torch.channels_last)
        y = torch.ops.pdgan.winograd_conv3x3(x, torch.empty(36, 16, 24), torch.empty(24), None, 1.0, 0)
    assert y.shape == (2, 24, 5, 7) and y.is_contiguous(memory_format=torch.channels_last)


def test_module_swap_keeps_ineligible_convolutions():
    """set_conv3x3_kernel replaces exactly the float32 3x3 stride-1 padding-1 ungrouped convolutions with
    >= WINOGRAD_MIN_CHANNELS channels in and out, and the prepared generator computes the same function."""
    from pdgan_infer.networks import PDGAN
    from pdgan_infer.optimize import WINOGRAD_MIN_CHANNELS, WinogradConv2d, prepare_generator
    torch.manual_seed(0)
    model = PDGAN("cifar10", with_latent=False)
    fast = prepare_generator(model.generator)
    trunk = [m for part in (fast.g.down, fast.g.mid, fast.g.up) for m in part.modules()]
    convs = [m for m in trunk if type(m) is nn.Conv2d]
    eligible = sum(m.kernel_size == (3, 3) and m.stride == (1, 1) and m.groups == 1
                   and min(m.in_channels, m.out_channels) >= WINOGRAD_MIN_CHANNELS for m in convs)
    assert 0 < eligible < len(convs)  # 1x1 skips and stride-2 convolutions stay
    n, c, r = 2, model.config.channels, model.config.resolution
    x, z, t = torch.randn(n, c, r, r), torch.randn(n, model.config.generator.nz), torch.full((n,), 2.0)
    with torch.no_grad():
        before = fast(x, z, t)
        assert fast.set_conv3x3_kernel(native.winograd_conv3x3, native.winograd_weight) == eligible
        after = fast(x, z, t)
    trunk = [m for part in (fast.g.down, fast.g.mid, fast.g.up) for m in part.modules()]
    assert sum(isinstance(m, WinogradConv2d) for m in trunk) == eligible
    assert sum(type(m) is nn.Conv2d for m in trunk) == len(convs) - eligible
    torch.testing.assert_close(after, before, rtol=0, atol=1e-4)


def test_thin_convolutions_keep_the_direct_path():
    """64 x 64 and 128 x 64 layers are faster direct (see optimize.WINOGRAD_MIN_CHANNELS): not replaced."""
    from pdgan_infer.optimize import is_winograd_conv
    assert is_winograd_conv(nn.Conv2d(128, 128, 3, padding=1))
    assert not is_winograd_conv(nn.Conv2d(128, 64, 3, padding=1))
    assert not is_winograd_conv(nn.Conv2d(64, 256, 3, padding=1))
    assert not is_winograd_conv(nn.Conv2d(256, 256, 3, padding=1, stride=2))
    assert not is_winograd_conv(nn.Conv2d(256, 256, 3, padding=1).half())
    # bfloat16 (F(2x2, 3x3)): at least 64 input channels, a multiple of 16; output channels a multiple of 32
    assert is_winograd_conv(nn.Conv2d(64, 32, 3, padding=1).bfloat16())
    assert not is_winograd_conv(nn.Conv2d(32, 64, 3, padding=1).bfloat16())
    assert not is_winograd_conv(nn.Conv2d(72, 64, 3, padding=1).bfloat16())
    assert not is_winograd_conv(nn.Conv2d(128, 3, 3, padding=1).bfloat16())


def winograd_count(preset, dtype, **kw):
    from pdgan_infer import Engine
    from pdgan_infer.optimize import WinogradConv2d
    engine = Engine.from_preset(preset, backend="native", device="cpu", dtype=dtype, with_latent=False, **kw)
    return sum(isinstance(m, WinogradConv2d) for m in engine.runner.generator.modules())


def test_native_cpu_backend_uses_winograd_in_float32():
    from pdgan_infer.optimize import Optimizations
    assert winograd_count("cifar10", "float32") > 0
    assert winograd_count("cifar10", "float32", opts=Optimizations(winograd=False)) == 0
    assert winograd_count("digits", "float32") == 0  # every digits layer is thinner than WINOGRAD_MIN_CHANNELS


@needs_bf16
def test_native_cpu_backend_uses_bf16_winograd_where_onednn_has_no_amx(monkeypatch):
    """bfloat16: F(2x2, 3x3) where oneDNN has no AMX; with AMX the direct convolutions stay (faster there)."""
    from pdgan_infer.optimize import Optimizations
    monkeypatch.setattr(native, "onednn_uses_amx", lambda: False)
    assert winograd_count("cifar10", "bfloat16") > 0
    assert winograd_count("cifar10", "bfloat16", opts=Optimizations(dtype=torch.bfloat16, winograd=False)) == 0
    monkeypatch.setattr(native, "onednn_uses_amx", lambda: True)
    assert winograd_count("cifar10", "bfloat16") == 0


@pytest.mark.parametrize("caps, isa, uses", [({"amx_bf16": True}, None, True),
                                             ({"amx_bf16": True}, "AVX512_CORE_BF16", False),
                                             ({"amx_bf16": True}, "avx512_core_amx", True),
                                             ({"amx_bf16": False, "avx512_bf16": True}, None, False)])
def test_onednn_uses_amx_reads_the_cpu_and_the_isa_cap(monkeypatch, caps, isa, uses):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if isa is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert native.onednn_uses_amx() is uses


def make_bf16(n, c, h, w, k, seed=0):
    x, wt, b = make(n, c, h, w, k, seed)
    return x.bfloat16(), wt, b


# (N, C, H, W, K): one pixel, ragged tiles (odd H, W), the kernel's smallest channel blocks (16 in, 32 out), more
# tiles than one 12-tile micro-block, the cifar10 shapes
BF16_SHAPES = [(1, 16, 1, 1, 32), (2, 16, 5, 7, 32), (3, 64, 8, 8, 64), (2, 48, 3, 9, 96), (2, 256, 4, 4, 256),
               (2, 128, 32, 32, 128), (1, 512, 16, 16, 256)]


@needs_bf16
@pytest.mark.parametrize("shape", BF16_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bf16_matches_float64_convolution(shape):
    n, c, h, w, k = shape
    x, wt, b = make_bf16(n, c, h, w, k)
    y = native.winograd_conv3x3_bf16(x, native.winograd_weight_bf16(wt), b)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, x, wt, b, what=str(shape), bound=WINOGRAD_BF16_REL)


@needs_bf16
@pytest.mark.parametrize("alpha", [1.0, 0.7071067811865476, -2.0])
def test_bf16_residual_is_added_in_the_output_pass(alpha):
    x, wt, b = make_bf16(2, 32, 6, 10, 64, seed=1)
    res = torch.randn(2, 64, 6, 10).bfloat16().contiguous(memory_format=torch.channels_last)
    y = native.winograd_conv3x3_bf16(x, native.winograd_weight_bf16(wt), b, res, alpha)
    assert_close(y, x, wt, b, res, alpha, what=f"alpha={alpha}", bound=WINOGRAD_BF16_REL)


@needs_bf16
@pytest.mark.parametrize("tile_block", [12, 24, 36, 12_000])
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_tile_blocks_and_threads(tile_block, threads):
    """Every block size (a ragged last block, one block bigger than the batch's 84 tiles) and thread count gives
    the same convolution."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, wt, b = make_bf16(2, 32, 11, 13, 64, seed=2)
        y = native.winograd_conv3x3_bf16(x, native.winograd_weight_bf16(wt), b, tile_block=tile_block)
    finally:
        torch.set_num_threads(before)
    assert_close(y, x, wt, b, what=f"tile_block={tile_block}, {threads} threads", bound=WINOGRAD_BF16_REL)


@needs_bf16
def test_bf16_nchw_input_and_no_bias():
    x, wt, _ = make_bf16(2, 16, 7, 7, 32, seed=4)
    y = native.winograd_conv3x3_bf16(x.contiguous(), native.winograd_weight_bf16(wt))
    assert_close(y, x, wt, torch.zeros(32), what="NCHW input, no bias", bound=WINOGRAD_BF16_REL)


def test_bf16_weight_transform_is_the_published_one_in_the_kernels_layout():
    """U = G g G^T with F(2x2, 3x3)'s G, packed (16, K/32, C/2, 32, 2): a delta filter at the centre of
    (output 37, input 5) transforms to G[:, 1] G[:, 1]^T, found at block 1, pair 2, lane 5, slot 1."""
    w = torch.zeros(64, 16, 3, 3)
    w[37, 5, 1, 1] = 1.0
    u = native.winograd_weight_bf16(w)
    assert u.shape == (16, 2, 8, 32, 2) and u.dtype == torch.bfloat16
    g1 = torch.tensor([0.0, 0.5, -0.5, 0.0])
    assert torch.equal(u[:, 1, 2, 5, 1].float(), torch.outer(g1, g1).flatten())
    assert torch.count_nonzero(u) == torch.count_nonzero(torch.outer(g1, g1))
    with pytest.raises(ValueError, match="multiple of 16"):
        native.winograd_weight_bf16(torch.zeros(32, 24, 3, 3))
    with pytest.raises(ValueError, match=r"\(K, C, 3, 3\)"):
        native.winograd_weight_bf16(torch.zeros(32, 16, 5, 5))


@needs_bf16
def test_bf16_rejects_bad_inputs():
    x, wt, b = make_bf16(1, 16, 4, 4, 32)
    u = native.winograd_weight_bf16(wt)
    op = torch.ops.pdgan.winograd_conv3x3_bf16
    with pytest.raises(RuntimeError, match="must be bfloat16"):
        op(x.float(), u, b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match="channels_last"):
        op(x.contiguous(), u, b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match=r"\(16, K/32, C/2, 32, 2\)"):
        op(x, u[:, :, :4], b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match="bias"):
        op(x, u, b[:4], None, 1.0, 0)
    with pytest.raises(RuntimeError, match="residual"):
        op(x, u, b, torch.zeros(1, 32, 4, 4).contiguous(memory_format=torch.channels_last), 1.0, 0)
    with pytest.raises(RuntimeError, match="tile_block"):
        op(x, u, b, None, 1.0, 5)


def test_bf16_fake_kernel_gives_the_output_metadata():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x = torch.empty(2, 16, 5, 7, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        u = torch.empty(16, 2, 8, 32, 2, dtype=torch.bfloat16)
        y = torch.ops.pdgan.winograd_conv3x3_bf16(x, u, torch.empty(64), None, 1.0, 0)
    assert y.shape == (2, 64, 5, 7) and y.is_contiguous(memory_format=torch.channels_last)


@needs_bf16
def test_bf16_generator_is_as_close_to_float32_as_torch_bf16(monkeypatch):
    """The cifar10 generator (random weights) on the native backend with bfloat16 Winograd, against the float32
    reference: the rule of tests/infer/test_engine.py (mean / max error <= 2x torch autocast bfloat16's + atol)."""
    from pdgan_infer.backends import create
    from pdgan_infer.networks import random_model
    from pdgan_infer.optimize import WinogradConv2d
    monkeypatch.setattr(native, "onednn_uses_amx", lambda: False)
    model = random_model("cifar10", seed=0, with_latent=False)  # every layer active, as pdgan-bench's
    torch.manual_seed(0)
    cfg, cpu = model.config, torch.device("cpu")
    n, r, nz = 2, cfg.resolution, cfg.generator.nz
    args = (torch.randn(n, cfg.channels, r, r), torch.randn(n, nz), torch.randn(model.schedule.T - 1, n, nz),
            torch.randn(model.schedule.T - 1, n, cfg.channels, r, r))
    ref = create("torch", model, cpu, torch.float32)(*args)
    same_dtype = (create("torch", model, cpu, torch.bfloat16)(*args) - ref).abs()
    runner = create("native", model, cpu, torch.bfloat16)
    assert any(isinstance(m, WinogradConv2d) for m in runner.generator.modules())
    err = (runner(*args) - ref).abs()
    assert err.mean() <= 2 * same_dtype.mean() + 1e-3
    assert err.max() <= 2 * same_dtype.max() + 0.02
