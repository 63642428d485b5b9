"""Winograd convolutions (csrc/winograd, `native.winograd_conv3x3`, `optimize.WinogradConv2d`): F(4x4, 3x3) in
float32, F(2x2, 3x3) in float32 and bfloat16, against float64 `F.conv2d`, an independent reference.

Bound: the float32 result may differ from the exact convolution by WINOGRAD_REL times the scale
sum |x| * |w| (the convolution of |x| with |w|, where rounding errors live). A direct float32 convolution
reaches ~2e-7 of that scale; Winograd's transforms (factors up to 5 in B, 8 in A) about 6 times more. A
wrong transform coefficient, a lost border row or tile, a misplaced bias or residual is off by O(1) of the
scale and fails.

bfloat16 (F(2x2) only): the reference is the exact convolution of the bf16-rounded x and w (what a bf16 model
holds); the bound is WINOGRAD_BF16_ULPS bf16 ulps (2^-8 at 1) of the scale. oneDNN's direct bf16 convolution
(bf16 output) reaches 0.1-0.15 ulp of it, F(2x2) 0.15-0.3, F(4x4) in bf16 (emulated below) 3-5: the bound
separates them, and a second test ties F(2x2) to 3x the direct bf16 convolution's error on the same layer.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pdgan_infer.kernels import native
from pdgan_infer.optimize import reduced_dtype_supported

pytestmark = pytest.mark.skipif(not native.available(), reason=f"PDGAN_SKIP_EXT=1, native extension unavailable: "
                                f"{native.unavailable_reason()}")

WINOGRAD_REL = 5e-6  # of the |x| * |w| scale; measured worst 1.5e-6 here (direct float32: 2.5e-7); a 1e-3 error
# in one of the 36 transformed filter components gives 7e-5 or more


BF16_OK = reduced_dtype_supported(torch.bfloat16, torch.device("cpu")) is None
BF16_ULP = 2.0 ** -8
WINOGRAD_BF16_ULPS = 1.0  # of the |x| * |w| scale; measured worst 0.3 here


def reference(x, w, b, residual=None, alpha=1.0):
    """(exact conv + bias + alpha * residual in float64, scale |x| * |w| + |b| + |alpha * residual|)."""
    xd, wd = x.double(), w.double()
    out = F.conv2d(xd, wd, b.double(), padding=1)
    scale = F.conv2d(xd.abs(), wd.abs(), b.double().abs(), padding=1)
    if residual is not None:
        out = out + alpha * residual.double()
        scale = scale + abs(alpha) * residual.double().abs()
    return out, scale


def rel_error(ours, x, w, b, residual=None, alpha=1.0, what=""):
    """max |ours - exact| / max scale, the exact result from the inputs as given (bf16 values are exact in
    float64)."""
    ref, scale = reference(x, w, b, residual, alpha)
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    return ((ours.double() - ref).abs() / scale.amax()).amax().item()


def assert_close(ours, x, w, b, residual=None, alpha=1.0, what=""):
    rel = rel_error(ours, x, w, b, residual, alpha, what)
    if ours.dtype == torch.bfloat16:
        assert rel <= WINOGRAD_BF16_ULPS * BF16_ULP, (f"{what}: off by {rel / BF16_ULP:.2f} bf16 ulps of the |x|*|w| "
                                                      f"scale (bound {WINOGRAD_BF16_ULPS})")
    else:
        assert rel <= WINOGRAD_REL, f"{what}: off by {rel:.2e} of the |x|*|w| scale (bound {WINOGRAD_REL:.0e})"


def make(n, c, h, w, k, seed=0, dtype=torch.float32):
    """x (channels_last) and w in `dtype`, the bias float32 (as WinogradConv2d keeps it)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(k, c, 3, 3, generator=gen) / (9 * c) ** 0.5).to(dtype)
    b = torch.randn(k, generator=gen)
    return x, wt, b


# (tile, dtype) pairs the kernel runs: F(4x4) float32, F(2x2) float32 and bfloat16
TILINGS = [(4, torch.float32), (2, torch.float32), (2, torch.bfloat16)]
TILING_IDS = ["F4-float32", "F2-float32", "F2-bfloat16"]


def wino(x, wt, b, tile, dtype, **kw):
    return native.winograd_conv3x3(x, native.winograd_weight(wt, tile, dtype), b, **kw)


# (N, C, H, W, K): one pixel, ragged tiles (H, W not multiples of 4), channel counts below, at and past the
# kernel's 64-channel blocks, the cifar10 shapes
SHAPES = [(1, 16, 1, 1, 16), (2, 20, 5, 7, 24), (3, 64, 8, 8, 64), (1, 130, 9, 6, 67), (2, 256, 4, 4, 256),
          (2, 128, 32, 32, 128), (1, 512, 16, 16, 256)]


@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_float64_convolution(shape, tiling):
    n, c, h, w, k = shape
    x, wt, b = make(n, c, h, w, k, dtype=tiling[1])
    y = wino(x, wt, b, *tiling)
    assert y.dtype == tiling[1] and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, x, wt, b, what=str(shape))


@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
@pytest.mark.parametrize("alpha", [1.0, 0.7071067811865476, -2.0])
def test_residual_is_added_in_the_output_pass(alpha, tiling):
    x, wt, b = make(2, 24, 6, 10, 40, seed=1, dtype=tiling[1])
    res = torch.randn(2, 40, 6, 10).to(tiling[1]).contiguous(memory_format=torch.channels_last)
    y = wino(x, wt, b, *tiling, residual=res, alpha=alpha)
    assert_close(y, x, wt, b, res, alpha, what=f"alpha={alpha}")


@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
@pytest.mark.parametrize("tile_block", [1, 3, 7, 10_000])
def test_tile_blocks(tile_block, tiling):
    """Every block size (ragged last block included) gives the same convolution: 24 4x4 tiles, 84 2x2 tiles."""
    x, wt, b = make(2, 32, 11, 13, 48, seed=2, dtype=tiling[1])
    y = wino(x, wt, b, *tiling, tile_block=tile_block)
    assert_close(y, x, wt, b, what=f"tile_block={tile_block}")


@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_thread_counts(threads, tiling):
    """F(2x2) gives each thread whole blocks, one at a time: 3 x 36 2x2 tiles in blocks of 5 (the last one 3)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, wt, b = make(3, 48, 12, 12, 32, seed=3, dtype=tiling[1])
        res = torch.randn(3, 32, 12, 12).to(tiling[1]).contiguous(memory_format=torch.channels_last)
        y = wino(x, wt, b, *tiling, residual=res, tile_block=5)
    finally:
        torch.set_num_threads(before)
    assert_close(y, x, wt, b, res, what=f"{threads} threads")


@pytest.mark.parametrize("tiling", TILINGS, ids=TILING_IDS)
def test_nchw_input_and_no_bias(tiling):
    x, wt, _ = make(2, 16, 7, 7, 8, seed=4, dtype=tiling[1])
    y = wino(x.contiguous(), wt, None, *tiling)
    assert y.dtype == tiling[1] and y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, x, wt, torch.zeros(8), what="NCHW input, no bias")


# the cifar10 layers at a small batch: (N, C, H, W, K)
CIFAR10_LAYERS = [(4, 128, 32, 32, 128), (4, 256, 16, 16, 256), (8, 512, 8, 8, 256), (4, 384, 32, 32, 128)]


@pytest.mark.parametrize("shape", CIFAR10_LAYERS, ids=lambda s: "x".join(map(str, s)))
def test_bf16_error_within_3x_direct_bf16_convolution(shape):
    """The flash-attention rule against oneDNN's own bf16 convolution of the same bf16 inputs (measured
    1.5-2x), and F(2x2) more accurate in bf16 than F(4x4)'s transforms would be (emulated: the same
    roundings of V, U and M to bf16, in torch), which is why bfloat16 uses F(2x2)."""
    n, c, h, w, k = shape
    x, wt, b = make(n, c, h, w, k, seed=5, dtype=torch.bfloat16)
    ours = rel_error(wino(x, wt, b, 2, torch.bfloat16), x, wt, b)
    direct = rel_error(F.conv2d(x, wt.contiguous(memory_format=torch.channels_last), b.bfloat16(), padding=1),
                       x, wt, b.bfloat16().float())
    assert ours <= 3 * direct + 1e-4, f"F(2x2) bf16 {ours:.2e} vs direct bf16 {direct:.2e} of the scale"
    f4 = rel_error(emulated_bf16_winograd(x, wt, b, 4), x, wt, b)
    assert f4 > 3 * ours, f"F(4x4) in bf16 {f4:.2e} should be several times F(2x2)'s {ours:.2e}"


def emulated_bf16_winograd(x, wt, b, tile):
    """Winograd F(tile x tile, 3x3) in torch: transforms in float32, V, U, M rounded to bf16 (the bf16 GEMM's
    inputs and output), output transform in float32. Matrices from the paper (Lavin & Gray 2016)."""
    bt = {4: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
              [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
          2: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]}[tile]
    at = {4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
          2: [[1, 1, 1, 0], [0, 1, -1, -1]]}[tile]
    bt, at = torch.tensor(bt, dtype=torch.float32), torch.tensor(at, dtype=torch.float32)
    n, c, h, w = x.shape
    a = tile + 2
    th, tw = -(-h // tile), -(-w // tile)
    xp = F.pad(x.float(), (1, tw * tile - w + 1, 1, th * tile - h + 1))
    patches = xp.unfold(2, a, tile).unfold(3, a, tile)  # (n, c, th, tw, a, a)
    v = torch.einsum("ij,nctwjk,lk->ilntwc", bt, patches, bt).bfloat16().float()
    u = native.winograd_weight(wt, tile, torch.bfloat16).float().reshape(a, a, c, -1)
    m = torch.einsum("ilntwc,ilck->ilntwk", v, u).bfloat16().float()
    y = torch.einsum("ij,jlntwk,ml->nktiwm", at, m, at).reshape(n, -1, th * tile, tw * tile)[:, :, :h, :w]
    return y + b[:, None, None]


def test_weight_transform_is_the_published_one():
    """U = G g G^T with Lavin & Gray's G: a delta filter at the centre transforms to G[:, 1] G[:, 1]^T."""
    w = torch.zeros(1, 1, 3, 3)
    w[0, 0, 1, 1] = 1.0
    u = native.winograd_weight(w).reshape(6, 6)
    g1 = torch.tensor([0.0, -1 / 6, 1 / 6, 1 / 12, -1 / 12, 0.0])
    torch.testing.assert_close(u, torch.outer(g1, g1), rtol=0, atol=1e-7)
    u2 = native.winograd_weight(w, 2, torch.bfloat16).reshape(4, 4)  # F(2x2): G[:, 1] = (0, 1/2, -1/2, 0)
    g2 = torch.tensor([0.0, 0.5, -0.5, 0.0])
    assert u2.dtype == torch.bfloat16 and torch.equal(u2.float(), torch.outer(g2, g2))
    with pytest.raises(ValueError, match=r"\(K, C, 3, 3\)"):
        native.winograd_weight(torch.zeros(2, 2, 5, 5))
    with pytest.raises(ValueError, match="tile must be 4"):
        native.winograd_weight(w, 3)


def test_rejects_bad_inputs():
    x, wt, b = make(1, 16, 4, 4, 8)
    u = native.winograd_weight(wt)
    op = torch.ops.pdgan.winograd_conv3x3
    with pytest.raises(RuntimeError, match="float32 or bfloat16 x only"):
        op(x.half(), u.half(), b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match="u must have x's dtype"):
        op(x.bfloat16(), native.winograd_weight(wt, 2), b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match=r"F\(4x4, 3x3\) runs in float32 only"):
        op(x.bfloat16(), u.bfloat16(), b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match="bias must be float32"):
        op(x, u, b.double(), None, 1.0, 0)
    with pytest.raises(RuntimeError, match="channels_last"):
        op(x.contiguous(), u, b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match=r"\(36, C, K\)"):
        op(x, u[:, :8], b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match=r"\(16, C, K\)"):
        op(x, u[:25], b, None, 1.0, 0)
    with pytest.raises(RuntimeError, match="bias"):
        op(x, u, b[:4], None, 1.0, 0)
    with pytest.raises(RuntimeError, match="residual"):
        op(x, u, b, torch.zeros(1, 8, 4, 5).contiguous(memory_format=torch.channels_last), 1.0, 0)
    with pytest.raises(RuntimeError, match="residual"):
        op(x, u, b, torch.zeros(1, 8, 4, 4).bfloat16().contiguous(memory_format=torch.channels_last), 1.0, 0)
    with pytest.raises(RuntimeError, match="tile_block"):
        op(x, u, b, None, 1.0, -1)


def test_fake_kernel_gives_the_output_metadata():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        x = torch.empty(2, 16, 5, 7).contiguous(memory_format=torch.channels_last)
        y = torch.ops.pdgan.winograd_conv3x3(x, torch.empty(36, 16, 24), torch.empty(24), None, 1.0, 0)
    assert y.shape == (2, 24, 5, 7) and y.is_contiguous(memory_format=torch.channels_last)


def test_module_swap_keeps_ineligible_convolutions(cifar10):
    """set_conv3x3_kernel replaces exactly the float32 3x3 stride-1 padding-1 ungrouped convolutions with
    >= WINOGRAD_MIN_CHANNELS channels in and out, and the prepared generator computes the same function."""
    from pdgan_infer.optimize import WINOGRAD_MIN_CHANNELS, WinogradConv2d, prepare_generator
    model = cifar10
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
    assert is_winograd_conv(nn.Conv2d(256, 256, 3, padding=1).bfloat16())
    assert not is_winograd_conv(nn.Conv2d(128, 64, 3, padding=1))
    assert not is_winograd_conv(nn.Conv2d(64, 256, 3, padding=1))
    assert not is_winograd_conv(nn.Conv2d(256, 256, 3, padding=1, stride=2))
    assert not is_winograd_conv(nn.Conv2d(256, 256, 3, padding=1).half())


@pytest.fixture(scope="module")
def cifar10():
    from pdgan_infer.networks import PDGAN
    torch.manual_seed(0)
    return PDGAN("cifar10", with_latent=False)


def winograd_tiles(runner) -> set:
    from pdgan_infer.optimize import WinogradConv2d
    return {(round(m.u.shape[0] ** 0.5) - 2, m.u.dtype) for m in runner.generator.modules()
            if isinstance(m, WinogradConv2d)}


def test_native_cpu_backend_uses_f4x4_in_float32(cifar10):
    from pdgan_infer import Engine
    from pdgan_infer.backends import create
    from pdgan_infer.optimize import Optimizations
    cpu = torch.device("cpu")
    assert winograd_tiles(create("native", cifar10, cpu, torch.float32)) == {(4, torch.float32)}
    assert winograd_tiles(create("native", cifar10, cpu, torch.float32, opts=Optimizations(winograd=False))) == set()
    digits = Engine.from_preset("digits", backend="native", device="cpu", with_latent=False)
    assert winograd_tiles(digits.runner) == set()  # every digits layer is thinner than WINOGRAD_MIN_CHANNELS


@pytest.mark.skipif(not BF16_OK, reason="this CPU has no native bfloat16")
@pytest.mark.parametrize("kind, tile", [("amx", None), ("avx512_bf16", 2), ("no_bf16", None)])
def test_native_cpu_backend_takes_the_bf16_tile_of_the_cpu_kind(cifar10, monkeypatch, kind, tile):
    """bfloat16: F(2x2) where there is avx512_bf16 but no AMX, oneDNN's direct convolution on AMX (and where the
    table says bf16 is not native), as pdgan_infer.cpu's table says."""
    from pdgan_infer.backends import create
    monkeypatch.setenv("PDGAN_CPU_KIND", kind)
    runner = create("native", cifar10, torch.device("cpu"), torch.bfloat16)
    assert winograd_tiles(runner) == ({(tile, torch.bfloat16)} if tile else set())


@pytest.mark.slow  # ~10 s quiet: three samplers of the 48 M-parameter cifar10 generator
@pytest.mark.skipif(not BF16_OK, reason="this CPU has no native bfloat16")
@torch.no_grad()
def test_native_bf16_with_f2x2_within_the_bf16_tolerance(cifar10, monkeypatch):
    """The cifar10 sampler (random weights, 2 images) on the native backend in bf16 with F(2x2) convolutions,
    against torch float32: the engine's bf16 rule (tests/infer/test_engine.py), |ours - fp32| <= 2 |torch bf16 -
    fp32| + atol on the mean and the max."""
    from pdgan_infer import draw_noise
    from pdgan_infer.backends import create
    monkeypatch.setenv("PDGAN_CPU_KIND", "avx512_bf16")
    n, nz, cfg = 2, cifar10.config.generator.nz, cifar10.config
    noise = draw_noise(list(range(n)), cfg.schedule.T, cfg.channels, cfg.resolution, nz)
    args = (noise.x_T, torch.randn(n, nz, generator=torch.Generator().manual_seed(2)), noise.z, noise.eps)
    cpu = torch.device("cpu")
    ref = create("torch", cifar10, cpu, torch.float32)(*args)
    same_dtype = (create("torch", cifar10, cpu, torch.bfloat16)(*args) - ref).abs()
    runner = create("native", cifar10, cpu, torch.bfloat16)
    assert winograd_tiles(runner) == {(2, torch.bfloat16)}
    ours = (runner(*args) - ref).abs()
    assert ours.mean() <= 2 * same_dtype.mean() + 1e-3
    assert ours.max() <= 2 * same_dtype.max() + 0.02
