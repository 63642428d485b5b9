"""The training losses (pdgan_train.losses): each loss term against a hand computation, the progressive P
schedule and t sampling, L_per's target from the model's own chain."""
from __future__ import annotations

import math

import pytest
import torch

from pdgan_infer import Schedule
from pdgan_train import losses as L


# --- loss terms against hand computations --------------------------------------------------------
def test_masked_l1_by_hand():
    a = torch.tensor([[1.0, 2.0], [3.0, 5.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    mask = torch.tensor([True, True, False])
    assert L.masked_l1(a, b, mask).item() == pytest.approx((1 + 2 + 2 + 4) / 4)
    assert L.masked_l1(a, b, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_feature_l1_by_hand():
    feats = lambda x: [2 * x, x.sum(1)]
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.zeros(2, 2)
    mask = torch.tensor([False, True])
    # layer 1: mean |2 * [3, 4]| = 7; layer 2: |3 + 4| = 7; mean over layers = 7.
    assert L.feature_l1(feats, a, b, mask).item() == pytest.approx(7.0)
    mask = torch.tensor([True, True])
    # layer 1: mean(2, 4, 6, 8) = 5; layer 2: mean(3, 7) = 5.
    assert L.feature_l1(feats, a, b, mask).item() == pytest.approx(5.0)


def test_progressive_p_is_eq11():
    assert L.progressive_p(0, 100) == pytest.approx(0.8)
    assert L.progressive_p(50, 100) == pytest.approx(0.6)
    assert L.progressive_p(100, 100) == pytest.approx(0.4)
    assert L.progressive_p(25, 100, 1.0, 0.0) == pytest.approx(0.75)
    assert L.progressive_p(200, 100) == pytest.approx(0.4)  # clamped after N


@pytest.mark.parametrize("T,p", [(2, 0.8), (2, 0.4), (3, 0.7), (4, 0.5)])
def test_t_frequencies(T, p):
    n = 200_000
    t = L.sample_t(n, T, p, torch.Generator().manual_seed(0))
    assert t.min().item() >= 1 and t.max().item() <= T
    assert (t == T).float().mean().item() == pytest.approx(p, abs=0.005)
    for s in range(1, T):  # the rest uniform over 1..T-1
        assert (t == s).float().mean().item() == pytest.approx((1 - p) / (T - 1), abs=0.005)


def test_t_uniform_without_progressive():
    t = L.sample_t(120_000, 3, None, torch.Generator().manual_seed(1))
    for s in (1, 2, 3):
        assert (t == s).float().mean().item() == pytest.approx(1 / 3, abs=0.005)


def test_semantic_mask_and_latent_input():
    t = torch.tensor([1, 2, 2, 1])
    assert L.semantic_mask(t, 2, "first").tolist() == [False, True, True, False]
    assert L.semantic_mask(t, 2, "all").all() and not L.semantic_mask(t, 2, "none").any()
    z_sem, z_rand = torch.ones(4, 3), torch.zeros(4, 3)
    z = L.latent_input(L.semantic_mask(t, 2, "first"), z_sem, z_rand)
    assert z[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0]


class RecordingG(torch.nn.Module):
    def forward(self, x, z, t):
        return torch.tanh(0.3 * x + z.mean(1)[:, None, None, None] - 0.2 * t[:, None, None, None])


def test_chain_targets_are_the_models_own_chain_T3():
    s = Schedule.pdgan(3)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 2, 4, 4, generator=g) * 2 - 1
    t = torch.tensor([1, 2, 3, 2, 1])
    z_T, z_rand = torch.randn(5, 6, generator=g), torch.randn(2, 5, 6, generator=g)
    n_T, eps = torch.randn(5, 2, 4, 4, generator=g), torch.randn(2, 5, 2, 4, 4, generator=g)
    G = RecordingG()
    out = L.chain_targets(G, s, x0, t, z_T, z_rand, n_T, eps)
    # By hand: x_3 ~ q(x_3|x0); x0^3 = G(x_3, z_T, 3); x_2 = c1 x0^3 + c2 x_3 + sigma eps; x0^2 = G(x_2, z, 2).
    ab3 = s.alphas_cumprod[2].item()
    x3 = math.sqrt(ab3) * x0 + math.sqrt(1 - ab3) * n_T
    x0_3 = G(x3, z_T, torch.full((5,), 3.0))
    c = s.coefficients(3)
    x2 = c.c1 * x0_3 + c.c2 * x3 + c.sigma * eps[1]
    x0_2 = G(x2, z_rand[1], torch.full((5,), 2.0))
    assert torch.allclose(out[1], x0_3[1]) and torch.allclose(out[3], x0_3[3])  # t = 2: target x0^3
    assert torch.allclose(out[0], x0_2[0], atol=1e-6) and torch.allclose(out[4], x0_2[4], atol=1e-6)  # t = 1
    assert torch.equal(out[2], torch.zeros_like(out[2]))  # t = T: no L_per


def test_chain_targets_with_real_generator(tiny):
    from pdgan_infer import build_generator
    G = build_generator("tiny").eval()
    s = Schedule.pdgan(2)
    x0 = torch.rand(3, 3, 32, 32) * 2 - 1
    z_T, z_rand = torch.randn(3, 8), torch.randn(1, 3, 8)
    n_T, eps = torch.randn(3, 3, 32, 32), torch.randn(1, 3, 3, 32, 32)
    out = L.chain_targets(G, s, x0, torch.tensor([1, 2, 1]), z_T, z_rand, n_T, eps)
    with torch.no_grad():
        expect = G(s.q_sample(x0, torch.full((3,), 2), n_T), z_T, torch.full((3,), 2.0))
    assert torch.allclose(out[[0, 2]], expect[[0, 2]], atol=1e-6)
