"""The noise schedules pinned to numbers derived by hand from the paper's Eq. (12)/(13) and from
DDGAN's var_func_vp, and the posterior to the closed form of Gaussian conditioning."""
from __future__ import annotations

import math

import pytest
import torch

from pdgan_infer import Schedule

BMIN, BMAX = 0.1, 20.0


def abar_vp(t: int, T_hat: int) -> float:
    """Eq. (12) summed: prod (1 - beta_s) = exp(-bmin t/T_hat - (bmax-bmin) t^2 / (2 T_hat^2))."""
    return math.exp(-BMIN * t / T_hat - 0.5 * (BMAX - BMIN) * t * t / T_hat**2)


def snr(a: float) -> float:
    return a / (1 - a)


def test_pdgan_T2_hand_numbers():
    s = Schedule.pdgan(2)
    # By hand: T_hat in {5, 6} give t_hat = 2 (T_hat > 2/0.48591, T_hat < 3/0.48591); default takes 6.
    assert s.T_hat == 6
    beta1 = 1 - math.exp(-0.1 / 6 - 0.5 * 19.9 * 1 / 36)  # Eq. (12), t = 1
    assert s.betas[0].item() == pytest.approx(beta1, rel=1e-12)
    assert s.betas[0].item() == pytest.approx(0.2540190, abs=1e-6)
    # Eq. (13): beta_2 = 1 - abar_{T_hat} / abar_1, and abar_T = exp(-bmin - (bmax - bmin) / 2).
    abar_T = math.exp(-BMIN - (BMAX - BMIN) / 2)
    assert abar_T == pytest.approx(4.3185749e-05, rel=1e-7)
    assert s.betas[1].item() == pytest.approx(1 - abar_T / (1 - beta1), rel=1e-12)
    assert s.alphas_cumprod[-1].item() == pytest.approx(abar_T, rel=1e-10)
    # Both SNR conditions of Appendix A, on the initial schedule of the chosen T_hat.
    assert snr(abar_vp(2, 6)) > 0.1 > snr(abar_vp(3, 6))
    assert snr(abar_vp(2, 6)) == pytest.approx(0.47099, abs=1e-4)


def test_pdgan_T2_smallest_rule():
    s = Schedule.pdgan(2, t_hat_rule="smallest")
    assert s.T_hat == 5
    assert snr(abar_vp(2, 5)) > 0.1 > snr(abar_vp(3, 5))
    assert s.betas[0].item() == pytest.approx(1 - abar_vp(1, 5), rel=1e-12)
    # T_hat = 4 and 7 do not qualify:
    assert not snr(abar_vp(2, 4)) > 0.1
    assert snr(abar_vp(3, 7)) > 0.1


@pytest.mark.parametrize("T", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["pdgan", "ddgan"])
def test_schedules_build(T, kind):
    s = getattr(Schedule, kind)(T)
    assert s.T == T
    for name in ("betas", "alphas_cumprod", "posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance"):
        v = getattr(s, name)
        assert v.dtype == torch.float64 and v.shape == (T,), name
    assert bool(((s.betas > 0) & (s.betas <= 1)).all())
    if kind == "pdgan":
        T_hat = s.T_hat
        assert snr(abar_vp(T, T_hat)) > 0.1 > snr(abar_vp(T + 1, T_hat))
        assert s.alphas_cumprod[-1].item() == pytest.approx(math.exp(-BMIN - (BMAX - BMIN) / 2), rel=1e-10)
        for t in range(1, T):  # steps before T are Eq. (12) unchanged
            assert s.betas[t - 1].item() == pytest.approx(1 - abar_vp(t, T_hat) / abar_vp(t - 1, T_hat), rel=1e-12)


def test_ddgan_T2_hand_numbers():
    s = Schedule.ddgan(2)

    def abar(tc):  # 1 - var_func_vp(tc) with DDGAN's log_mean_coeff = -tc^2 (bmax-bmin)/4 - tc bmin/2
        return math.exp(2 * (-0.25 * tc * tc * (BMAX - BMIN) - 0.5 * tc * BMIN))

    tc = [1e-3 + (1 - 1e-3) * k / 2 for k in range(3)]  # [0.001, 0.5005, 1.0]
    assert tc[1] == pytest.approx(0.5005)
    b = [1 - abar(tc[k + 1]) / abar(tc[k]) for k in range(2)]
    assert s.betas.tolist() == pytest.approx(b, rel=1e-12)
    assert b == pytest.approx([0.921324, 0.999451], abs=1e-6)
    assert s.alphas_cumprod[-1].item() == pytest.approx(abar(1.0) / abar(1e-3), rel=1e-10)


@pytest.mark.parametrize("kind", ["pdgan", "ddgan"])
def test_posterior_matches_gaussian_conditioning(kind):
    """q(x_{t-1}|x_t,x0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(abar_{t-1}) x0, 1-abar_{t-1}):
    precision = a_t/b_t + 1/(1-abar_{t-1}), mean = var (sqrt(a_t) x_t / b_t + sqrt(abar_{t-1}) x0 / (1-abar_{t-1}))."""
    s = getattr(Schedule, kind)(3)
    betas = s.betas.tolist()
    abar_prev = 1.0
    for t in range(1, 4):
        b = betas[t - 1]
        a = 1 - b
        if t == 1:  # x_0 is known exactly: the posterior is a point mass at x0
            var, c1, c2 = 0.0, 1.0, 0.0
        else:
            var = 1 / (a / b + 1 / (1 - abar_prev))
            c1 = var * math.sqrt(abar_prev) / (1 - abar_prev)
            c2 = var * math.sqrt(a) / b
        assert s.posterior_variance[t - 1].item() == pytest.approx(var, abs=1e-12)
        assert s.posterior_mean_coef1[t - 1].item() == pytest.approx(c1, rel=1e-9)
        assert s.posterior_mean_coef2[t - 1].item() == pytest.approx(c2, abs=1e-12)
        abar_prev *= a


def test_step_and_q_sample_closed_form():
    s = Schedule.pdgan(2)
    x0, xt, eps = torch.randn(3, 2, 4, 4, dtype=torch.float64).unbind(0)
    c = s.coefficients(2)
    expect = c.c1 * x0 + c.c2 * xt + c.sigma * eps
    assert torch.allclose(s.step(x0, xt, 2, eps), expect)
    assert torch.allclose(s.step(x0, xt, torch.tensor([2, 2]), eps), expect)  # per-sample path
    assert torch.equal(s.step(x0, xt, 1, eps), x0)  # sigma_1 = 0, c1 = 1, c2 = 0
    abar2 = s.alphas_cumprod[1].item()
    assert torch.allclose(s.q_sample(x0, torch.tensor([2, 2]), eps), math.sqrt(abar2) * x0 + math.sqrt(1 - abar2) * eps)
    assert torch.equal(s.q_sample(x0, torch.tensor([0, 0]), eps), x0)


def test_q_sample_pairs_marginals():
    s = Schedule.pdgan(2)
    x0 = torch.full((200_000, 1, 1, 1), 0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x1, x2 = s.q_sample_pairs(x0, torch.full((200_000,), 2), generator=g)
    for x, t in ((x1, 1), (x2, 2)):
        abar = s.alphas_cumprod[t - 1].item()
        assert x.mean().item() == pytest.approx(0.5 * math.sqrt(abar), abs=5e-3)
        assert x.var().item() == pytest.approx(1 - abar, abs=5e-3)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_T(bad):
    with pytest.raises(ValueError, match="T must be a positive integer"):
        Schedule.pdgan(bad)


def test_bad_step():
    with pytest.raises(ValueError, match="outside 1..T"):
        Schedule.pdgan(2).coefficients(3)
