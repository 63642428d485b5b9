"""Generator / encoder / latent denoiser: parameter count, forward at every preset, gradients reach
every parameter, and the building blocks against independent formulations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pdgan_infer import PRESETS, build_encoder, build_generator, build_latent, get_preset
from pdgan_infer.config import DDGAN_PRESETS
from pdgan_infer.engine import redraw_zero_init
from pdgan_infer.kernels.reference import adagn_silu_ref
from pdgan_infer.networks.layers import AdaGNAct, AttnBlock, ConvDownsample, FIRDownsample, FIRUpsample


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_cifar10_generator_is_ddgan_size():
    # DDGAN reports 48.43 M parameters for its CIFAR-10 generator.
    assert n_params(build_generator("cifar10")) == pytest.approx(48.4e6, rel=0.01)


# the ddgan-* presets are the cifar10 / celebahq256 networks with DDGAN's schedule (test_ddgan_presets_...)
@pytest.mark.parametrize("preset", sorted(set(PRESETS) - set(DDGAN_PRESETS.values())))
def test_forward_every_preset(preset):
    cfg = get_preset(preset)
    g, e, lat = build_generator(preset), build_encoder(preset), build_latent(preset)
    redraw_zero_init(g)  # training's 1e-10 layers would make G(x) ~ 1e-5 whatever the rest computes
    e.eval()  # inference: a standardising code norm (digits) uses its running statistics, any batch size
    x = torch.randn(1, cfg.channels, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        z_T = e(x)
        assert z_T.shape == (1, cfg.generator.nz)
        for t in range(1, cfg.schedule.T + 1):
            y = g(x, z_T, torch.tensor([float(t)]))
            assert y.shape == x.shape and torch.isfinite(y).all()
            assert y.std() > 0.05, "the output is (nearly) constant"
        assert lat(z_T, torch.tensor([10.0])).shape == z_T.shape


def test_ddgan_presets_are_the_pdgan_networks_without_a_semantic_code():
    from pdgan_infer.networks import random_model
    for name, base in (("ddgan-cifar10", "cifar10"), ("ddgan-celebahq256", "celebahq256"),
                       ("ddgan-lsun256", "celebahq256")):
        assert get_preset(name).generator == get_preset(base).generator and get_preset(name).schedule.kind == "ddgan"
    model = random_model("ddgan-cifar10")  # what pdgan-bench --preset ddgan-cifar10 times
    assert model.components == ["generator"] and model.latent_slot == "none" and model.schedule.T == 4
    assert model.can_draw_z_T and torch.equal(model.draw_z_T(torch.ones(1, 100)), torch.ones(1, 100))


def _ddgan_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """By hand: DDPM's sinusoid of DDGAN's 0-based index s = t - 1 for the paper's step t (1..T):
    [sin(s w_0) .. sin(s w_{h-1}), cos(s w_0) .. cos(s w_{h-1})], w_i = 10000^(-i / (h - 1)), h = dim / 2."""
    import math
    h = dim // 2
    rows = [[math.sin((step - 1) * 10000.0 ** (-i / (h - 1))) for i in range(h)]
            + [math.cos((step - 1) * 10000.0 ** (-i / (h - 1))) for i in range(h)] for step in t.tolist()]
    return torch.tensor(rows, dtype=torch.float32)


def test_generator_embeds_paper_step_t_as_ddgan_index_t_minus_1():
    """Paper step t is DDGAN's index t - 1 (the networks were designed, and DDGAN's weights trained, that way):
    the generator's sinusoid equals the hand-computed one (t = 1: [0] * nf/2 + [1] * nf/2), and the generator's
    output is the same when its embedding is replaced by the hand-computed function, different with the
    paper's index unshifted."""
    torch.manual_seed(0)
    g = build_generator("digits").eval()
    redraw_zero_init(g)
    t, nf = torch.tensor([1.0, 2.0, 4.0]), g.cfg.nf
    emb = g.time_embed(t)
    torch.testing.assert_close(emb[0], torch.cat([torch.zeros(nf // 2), torch.ones(nf // 2)]), atol=0, rtol=0)
    torch.testing.assert_close(emb, _ddgan_sinusoid(t, nf), atol=2e-6, rtol=0)

    class Hand(torch.nn.Module):
        def __init__(self, shift: float):
            super().__init__()
            self.shift = shift

        def forward(self, steps):
            return _ddgan_sinusoid(steps + self.shift, nf)

    x, z = torch.randn(3, 3, 32, 32), torch.randn(3, 32)
    with torch.no_grad():
        y = g(x, z, t)
        g.time_embed = Hand(0.0)
        torch.testing.assert_close(g(x, z, t), y, atol=1e-5, rtol=0)
        g.time_embed = Hand(1.0)  # paper index t unshifted
        assert (g(x, z, t) - y).abs().max() > 1e-2


def _randomise(m: torch.nn.Module) -> None:
    # Near-zero inits (DDGAN's init_scale=0 layers) make some gradients vanishingly small; random
    # weights test what matters here: every parameter is wired to the output.
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)


@pytest.mark.parametrize("preset", ["digits", "cifar10"])
def test_gradients_reach_every_parameter(preset):
    cfg = get_preset(preset)
    g, e = build_generator(preset), build_encoder(preset)
    _randomise(g)
    _randomise(e)
    x = torch.randn(2, cfg.channels, cfg.resolution, cfg.resolution)
    y = g(x, e(x), torch.tensor([2.0, 1.0]))
    (y * torch.randn_like(y)).sum().backward()
    for name, m in (("G", g), ("SE", e)):
        dead = [k for k, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not dead, f"{name}: no gradient reaches {dead[:5]}"


def test_latent_denoiser_gradients_and_ddim_shape():
    lat = build_latent("digits")
    _randomise(lat)
    z = torch.randn(4, lat.nz)
    lat(z, torch.tensor([0.0, 10.0, 500.0, 999.0])).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lat.parameters())
    assert lat.ddim_timesteps(10)[0] == 999 and lat.ddim_timesteps(10)[-1] == 0
    with torch.no_grad():
        assert lat.sample(torch.randn(3, lat.nz), steps=4).shape == (3, lat.nz)
    with pytest.raises(ValueError, match="DDIM steps"):
        lat.ddim_timesteps(0)


# --- building blocks against independent formulations ------------------------------------------
def upfirdn2d(x, k, up=1, down=1, pad=(0, 0)):
    """Direct upfirdn2d (zero-insertion, pad, FIR, decimate) on a folded batch: the slow textbook way."""
    n, c, h, w = x.shape
    x = x.reshape(n * c, 1, h, w)
    if up > 1:
        y = torch.zeros(n * c, 1, h * up, w * up, dtype=x.dtype)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    k2 = torch.flip(k, [0, 1])[None, None]
    x = F.conv2d(x, k2)[:, :, ::down, ::down]
    return x.reshape(n, c, x.shape[-2], x.shape[-1])


def fir(gain):
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    k = torch.outer(k, k)
    return k / k.sum() * gain


def test_fir_resampling_matches_upfirdn():
    x = torch.randn(2, 5, 8, 6, dtype=torch.float64)
    up = FIRUpsample(5).double()(x)
    assert torch.allclose(up, upfirdn2d(x, fir(4.0), up=2, pad=(2, 1)))  # DDGAN upsample_2d
    down = FIRDownsample(5).double()(x)
    assert torch.allclose(down, upfirdn2d(x, fir(1.0), down=2, pad=(1, 1)))  # DDGAN downsample_2d
    cd = ConvDownsample(5, 7).double()
    ref = F.conv2d(upfirdn2d(x, fir(1.0), pad=(2, 2)), cd.conv.weight, cd.conv.bias, stride=2)
    assert torch.allclose(cd(x), ref)  # DDGAN conv_downsample_2d
    assert cd(x).shape == (2, 7, 4, 3)


def test_adagn_matches_reference():
    m = AdaGNAct(64, 16)
    with torch.no_grad():
        m.style.weight.normal_()
    x, s = torch.randn(3, 64, 5, 5), torch.randn(3, 16)
    gamma, beta = m.style(s).chunk(2, 1)
    assert torch.allclose(m(x, s), adagn_silu_ref(x, gamma, beta, 16), atol=1e-5)


def test_attention_matches_einsum():
    m = AttnBlock(16).double()
    with torch.no_grad():
        m.proj.weight.normal_()
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    h = m.norm(x)
    q, k, v = m.qkv(h).chunk(3, 1)
    w = torch.einsum("bchw,bcij->bhwij", q, k).reshape(2, 4, 4, 16) * 16**-0.5
    w = w.softmax(-1).reshape(2, 4, 4, 4, 4)
    o = m.proj(torch.einsum("bhwij,bcij->bchw", w, v))
    assert torch.allclose(m(x), (x + o) / 2**0.5)


def test_bad_preset_and_resolution():
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        build_generator("nope")
    cfg = get_preset("cifar10").replace(resolution=36)
    with pytest.raises(ValueError, match="not divisible"):
        build_generator(cfg)


def test_half_precision_forward():
    g = build_generator("digits").half()
    y = g(torch.randn(2, 3, 32, 32).half(), torch.randn(2, 32).half(), torch.tensor([2.0, 1.0]))
    assert y.dtype == torch.float16 and y.shape == (2, 3, 32, 32)
    lat = build_latent("digits").half()
    assert lat(torch.randn(2, 32).half(), torch.tensor([3.0, 5.0])).dtype == torch.float16


def test_encoder_pooling_modes():
    """pool="mean": linear on the spatial mean of the last map (Diffusion Autoencoders); "flatten": linear on
    the whole map (digits). Both checked against the encoder's own layers composed by hand."""
    from dataclasses import replace

    from pdgan_infer.networks import SemanticEncoder
    cfg = get_preset("digits")
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    for pool in ("mean", "flatten"):
        enc = SemanticEncoder(replace(cfg.encoder, pool=pool), 32, 3, 32).eval()
        with torch.no_grad():
            h, skips = enc.conv_in(x), []
            for level in enc.down:
                h, _ = level(h, None, None, None, skips)
            h = enc.norm_out(enc.mid(h, None, None))
            assert h.shape[-1] == 8
            feats = h.mean(dim=(2, 3)) if pool == "mean" else h.reshape(3, -1)
            want = feats @ enc.proj.weight.T + enc.proj.bias
            assert torch.allclose(enc(x), want, atol=1e-5)
    with pytest.raises(ValueError, match="pool must be 'mean' or 'flatten'"):
        SemanticEncoder(replace(cfg.encoder, pool="max"), 32, 3, 32)
    assert get_preset("cifar10").encoder.pool == "mean" and cfg.encoder.pool == "flatten"


def test_configs_written_before_pool_read_as_mean():
    from pdgan_infer import PDGANConfig
    d = get_preset("digits").to_dict()
    del d["encoder"]["pool"]
    assert PDGANConfig.from_dict(d).encoder.pool == "mean"
