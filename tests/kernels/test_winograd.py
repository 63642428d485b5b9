"""Winograd F(4x4, 3x3) convolutions (csrc/winograd, `native.winograd_conv3x3`, `optimize.WinogradConv2d`)
against float64 `F.conv2d`, an independent reference.

Bound: the float32 result may differ from the exact convolution by WINOGRAD_REL times the scale
sum |x| * |w| (the convolution of |x| with |w|, where rounding errors live). A direct float32 convolution
reaches ~2e-7 of that scale; Winograd's transforms (factors up to 5 in B, 8 in A) about 6 times more. A
wrong transform coefficient, a lost border row or tile, a misplaced bias or residual is off by O(1) of the
scale and fails.
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


def reference(x, w, b, residual=None, alpha=1.0):
    """(exact conv + bias + alpha * residual in float64, scale |x| * |w| + |b| + |alpha * residual|)."""
    xd, wd = x.double(), w.double()
    out = F.conv2d(xd, wd, b.double(), padding=1)
    scale = F.conv2d(xd.abs(), wd.abs(), b.double().abs(), padding=1)
    if residual is not None:
        out = out + alpha * residual.double()
        scale = scale + abs(alpha) * residual.double().abs()
    return out, scale


def assert_close(ours, x, w, b, residual=None, alpha=1.0, what=""):
    ref, scale = reference(x, w, b, residual, alpha)
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    rel = ((ours.double() - ref).abs() / scale.amax()).amax().item()
    assert rel <= WINOGRAD_REL, f"{what}: off by {rel:.2e} of the |x|*|w| scale (bound {WINOGRAD_REL:.0e})"


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
    assert not is_winograd_conv(nn.Conv2d(256, 256, 3, padding=1).bfloat16())


def test_native_cpu_backend_uses_winograd_in_float32_only():
    from pdgan_infer import Engine
    from pdgan_infer.optimize import Optimizations, WinogradConv2d, reduced_dtype_supported

    def count(preset, dtype, **kw):
        engine = Engine.from_preset(preset, backend="native", device="cpu", dtype=dtype, with_latent=False, **kw)
        return sum(isinstance(m, WinogradConv2d) for m in engine.runner.generator.modules())

    assert count("cifar10", "float32") > 0
    assert count("cifar10", "float32", opts=Optimizations(winograd=False)) == 0
    assert count("digits", "float32") == 0  # every digits layer is thinner than WINOGRAD_MIN_CHANNELS
    if reduced_dtype_supported(torch.bfloat16, torch.device("cpu")) is None:
        assert count("cifar10", "bfloat16") == 0
