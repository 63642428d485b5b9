"""Discriminator D(x_{t-1}, x_t, t) and the adversarial / R1 losses (paper Eq. 6, DDGAN)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pdgan_train.adversarial import d_loss_fake, d_loss_real, g_loss_adv, r1_penalty, r1_weight
from pdgan_train.discriminator import (
    DiscriminatorLarge,
    DiscriminatorSmall,
    FirDownsample,
    build_discriminator,
    minibatch_stddev,
)


def _randomize(module: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """DDGAN's init leaves some convs at ~1e-10; random weights make wiring tests meaningful."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def _inputs(n: int, c: int, res: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, res, res, generator=g), torch.randn(n, c, res, res, generator=g)


# --- shapes and construction ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "resolution, n, ngf, cls",
    [
        pytest.param(32, 3, 64, DiscriminatorSmall, id="small-32-default-width"),
        pytest.param(64, 2, 16, DiscriminatorSmall, id="small-64"),
        pytest.param(128, 2, 64, DiscriminatorLarge, id="large-128-default-width"),
        pytest.param(256, 2, 8, DiscriminatorLarge, id="large-256-narrow"),
    ],
)
def test_one_logit_per_sample(resolution, n, ngf, cls):
    torch.manual_seed(0)
    d = build_discriminator(resolution, channels=3, ngf=ngf)
    assert type(d) is cls
    x_prev, x_t = _inputs(n, 3, resolution)
    t = torch.tensor([1, 2, 1][:n])
    with torch.no_grad():
        out = d(x_prev, x_t, t)
    assert out.shape == (n,) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("resolution", [16, 48, 100, 512])
def test_bad_resolution_raises(resolution):
    with pytest.raises(ValueError, match="unsupported resolution"):
        build_discriminator(resolution)


def test_bad_input_shapes_raise():
    d = build_discriminator(32, ngf=4)
    x_prev, x_t = _inputs(2, 3, 32)
    with pytest.raises(ValueError, match="x_prev and x_t"):
        d(x_prev, x_t[:, :1], torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="expected t of shape"):
        d(x_prev, x_t, torch.tensor([1, 2, 1]))


def test_parameter_count_matches_ddgan():
    # Hand count of DDGAN's Discriminator_small / _large (nc = 2 * 3, ngf = 64, t_emb_dim = 128).
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(DiscriminatorSmall(3, 64, 128)) == 12_462_849
    assert count(DiscriminatorLarge(3, 64, 128)) == 27_278_209


def test_fixed_kernels_stay_out_of_state_dict():
    d = build_discriminator(32, ngf=4)
    names = set(d.state_dict())
    assert names == {n for n, _ in d.named_parameters()}
    assert any(n.endswith("blur_main.weight") for n, _ in d.named_buffers())


def test_forward_exports_without_tensor_constants():
    # Nothing is built from Python inside forward: every fixed tensor (FIR kernels, sinusoid
    # frequencies) is a buffer, so export lifts no constants (what CUDA-graph capture also needs).
    d = build_discriminator(32, ngf=4).eval()
    x_prev, x_t = _inputs(3, 3, 32)
    t = torch.tensor([1, 2, 1])
    program = torch.export.export(d, (x_prev, x_t, t))
    assert not program.graph_signature.lifted_tensor_constants
    torch.testing.assert_close(program.module()(x_prev, x_t, t), d(x_prev, x_t, t))


# --- conditioning and gradients ------------------------------------------------------------------
def test_time_conditioning_changes_logits():
    d = _randomize(build_discriminator(32, ngf=8))
    x_prev, x_t = _inputs(3, 3, 32)
    with torch.no_grad():
        out1 = d(x_prev, x_t, torch.ones(3, dtype=torch.long))
        out2 = d(x_prev, x_t, torch.full((3,), 2, dtype=torch.long))
        out2f = d(x_prev, x_t, torch.full((3,), 2.0))
    assert (out1 - out2).abs().min() > 1e-4
    torch.testing.assert_close(out2, out2f)  # integer and float steps embed identically


def test_time_embedding_uses_ddgan_index():
    # Paper step t = 1 is DDGAN index 0: sinusoid = [sin 0, ..., cos 0, ...] = [0] * 64 + [1] * 64.
    emb = build_discriminator(32, ngf=4).time_embed
    sinusoid = torch.cat([torch.zeros(1, 64), torch.ones(1, 64)], dim=1)
    expected = emb.fc2(nn.functional.leaky_relu(emb.fc1(sinusoid), 0.2))
    torch.testing.assert_close(emb(torch.tensor([1])), expected)


@pytest.mark.parametrize("resolution", [32, 128])
def test_gradients_reach_every_parameter_and_both_inputs(resolution):
    d = _randomize(build_discriminator(resolution, ngf=4))
    x_prev, x_t = _inputs(4, 3, resolution)
    x_prev.requires_grad_(True)
    x_t.requires_grad_(True)
    d(x_prev, x_t, torch.tensor([1, 2, 2, 1])).sum().backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x_prev.grad.abs().sum() > 0 and x_t.grad.abs().sum() > 0


# --- FIR blur and minibatch stddev ---------------------------------------------------------------
def _blur_1d(row: list[float]) -> list[float]:
    """[1, 3, 3, 1] / 8 on a zero-padded row (pad 1 each side), stride 2 (DDGAN's downsample_2d)."""
    padded = [0.0] + row + [0.0]
    taps = [1 / 8, 3 / 8, 3 / 8, 1 / 8]
    return [sum(w * padded[i + j] for j, w in enumerate(taps)) for i in range(0, len(row), 2)]


def test_fir_blur_matches_separable_hand_computation():
    x = torch.randn(2, 3, 6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = FirDownsample(3).double()(x)
    assert out.shape == (2, 3, 3, 4)
    for n in range(2):
        for c in range(3):
            rows = [_blur_1d(r) for r in x[n, c].tolist()]  # along W
            cols = [_blur_1d(list(col)) for col in zip(*rows)]  # along H
            expected = torch.tensor(cols, dtype=torch.float64).T
            torch.testing.assert_close(out[n, c], expected)


def test_fir_blur_preserves_constants_inside():
    out = FirDownsample(1)(torch.ones(1, 1, 8, 8))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize("n, group", [(4, 4), (3, 3), (6, 3), (8, 4), (5, 1)])
def test_minibatch_stddev(n, group):
    x = torch.randn(n, 5, 2, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    out = minibatch_stddev(x)
    assert out.shape == (n, 6, 2, 3)
    torch.testing.assert_close(out[:, :5], x)
    m = n // group
    for i in range(n):
        members = x[i % m::m]  # StyleGAN2 / DDGAN layout: view(G, N // G, ...) groups n with n + k*m
        assert members.shape[0] == group
        expected = torch.sqrt(members.var(dim=0, correction=0) + 1e-8).mean()
        torch.testing.assert_close(out[i, 5], expected.expand(2, 3))


# --- losses --------------------------------------------------------------------------------------
def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_losses_match_hand_computation():
    logits = torch.tensor([0.0, 1.0, -2.0])
    real = sum(_softplus(-v) for v in (0.0, 1.0, -2.0)) / 3
    fake = sum(_softplus(v) for v in (0.0, 1.0, -2.0)) / 3
    torch.testing.assert_close(d_loss_real(logits), torch.tensor(real))
    torch.testing.assert_close(d_loss_fake(logits), torch.tensor(fake))
    torch.testing.assert_close(g_loss_adv(logits), torch.tensor(real))
    # Eq. 6 in probability form: -log D(real), -log(1 - D(fake)).
    p = torch.sigmoid(logits.double())
    torch.testing.assert_close(d_loss_real(logits).double(), -p.log().mean(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(d_loss_fake(logits).double(), -(1 - p).log().mean(), rtol=1e-6, atol=1e-6)


def test_losses_are_float32_for_half_logits():
    assert d_loss_real(torch.zeros(4, dtype=torch.bfloat16)).dtype == torch.float32


class _LinearCritic(nn.Module):
    """D(x) = sum(w * x) per sample, so dD/dx_n = w for every n and the R1 penalty is ||w||^2."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.w = nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(dim=1)


def test_r1_penalty_on_linear_critic():
    critic = _LinearCritic((2, 4, 4))
    x = torch.randn(5, 2, 4, 4).requires_grad_(True)
    penalty = r1_penalty(critic(x), x)
    w = critic.w.detach()
    torch.testing.assert_close(penalty, w.square().sum())
    penalty.backward()  # create_graph=True: d ||w||^2 / d w = 2 w
    torch.testing.assert_close(critic.w.grad, 2 * w)


def test_r1_penalty_averages_per_sample_norms():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)
    logits = (x**2).sum(dim=1, keepdim=True)  # grad 2x; ||.||^2 = 20 and 36
    torch.testing.assert_close(r1_penalty(logits, x), torch.tensor(28.0))


def test_r1_penalty_through_discriminator_wrt_x_prev_only():
    d = _randomize(build_discriminator(32, ngf=4))
    x_prev, x_t = _inputs(2, 3, 32)
    x_prev.requires_grad_(True)  # DDGAN: only the real x_{t-1} requires grad, x_t is detached
    penalty = r1_penalty(d(x_prev, x_t, torch.tensor([1, 2])), x_prev)
    assert penalty.ndim == 0 and penalty > 0
    penalty.backward()
    # Every weight shapes dD/dx_prev. Biases after the last smooth op (minibatch stddev) only move
    # LeakyReLU kinks, so the penalty's gradient w.r.t. them is zero almost everywhere.
    for name, p in d.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_r1_penalty_requires_grad_on_input():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(x.sum(dim=1), x)


def test_r1_weight_lazy_rules():
    assert r1_weight(7, 0.02) == pytest.approx(0.01)
    assert [r1_weight(s, 2.0, lazy_reg=10) for s in (0, 5, 10)] == [1.0, 0.0, 1.0]  # DDGAN
    assert r1_weight(20, 2.0, lazy_reg=10, scale_by_interval=True) == pytest.approx(10.0)  # StyleGAN2
    with pytest.raises(ValueError):
        r1_weight(0, 1.0, lazy_reg=0)
