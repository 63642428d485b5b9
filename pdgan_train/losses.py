"""The PDGAN objective (paper Sec. 3, Eq. 6-11), as small functions the training loop composes.

Notation: paper steps t = 1..T; a training pair is (x_{t-1}, x_t) with x_t ~ q(x_t | x0); the
generator predicts x0^t = G(x_t, z, t) and the fake x_{t-1} is drawn from q(x_{t-1} | x_t, x0^t).

- Eq. (11), progressive pipeline: P = P_max - (P_max - P_min) n / N; each sample takes t = T with
  probability P, else t ~ U{1..T-1}. With `progressive` off: t ~ U{1..T} (DDGAN).
- Eq. (8), the latent slot: SE(x0) where the semantic encoder is used (t = T for the paper's
  "first" mode, every step for the ablation's "all" mode), z ~ N(0, I) elsewhere.
- Eq. (9), L_sem on the samples that received SE(x0): L1 in pixels + L1 on VGG16 feature maps.
- Eq. (10), L_per on samples with t < T: L1(G(x_t, z, t), x0^{t+1}), where x0^{t+1} comes from the
  model's own sampling chain run from x_T ~ q(x_T | x0) down to step t + 1 with SE(x0) at step T.
  The target is computed without gradient (a teacher signal; the chain's own steps are trained
  when they are sampled as t).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from pdgan_infer.schedule import Schedule


def progressive_p(step: int, total: int, p_max: float = 0.8, p_min: float = 0.4) -> float:
    """Eq. (11) with n = step, N = total (clamped to [p_min, p_max])."""
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    return p_max - (p_max - p_min) * frac


def sample_t(n: int, T: int, p: float | None, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """(n,) long steps in 1..T: t = T with probability p, else uniform on 1..T-1; p=None: uniform on 1..T."""
    if T == 1:
        return torch.ones(n, dtype=torch.long, device=device)
    if p is None:
        return torch.randint(1, T + 1, (n,), generator=generator, device=device)
    pick_T = torch.rand(n, generator=generator, device=device) < p
    other = torch.randint(1, T, (n,), generator=generator, device=device)
    return torch.where(pick_T, torch.full_like(other, T), other)


def semantic_mask(t: torch.Tensor, T: int, encoder: str) -> torch.Tensor:
    """Which samples receive SE(x0) in the latent slot (Eq. 8 and the ablation modes)."""
    if encoder == "none":
        return torch.zeros_like(t, dtype=torch.bool)
    if encoder == "all":
        return torch.ones_like(t, dtype=torch.bool)
    if encoder == "first":
        return t == T
    raise ValueError(f"encoder mode must be 'none', 'all' or 'first', got {encoder!r}")


def latent_input(mask: torch.Tensor, z_sem: torch.Tensor | None, z_rand: torch.Tensor) -> torch.Tensor:
    """SE(x0) where mask, random z elsewhere."""
    if z_sem is None or not bool(mask.any()):
        return z_rand
    return torch.where(mask[:, None], z_sem.to(z_rand.dtype), z_rand)


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the masked samples (0 when none is selected, keeping the graph)."""
    if not bool(mask.any()):
        return a.sum() * 0.0
    return (a[mask] - b[mask]).abs().mean()


def feature_l1(features: Callable[[torch.Tensor], Sequence[torch.Tensor]], pred: torch.Tensor,
               target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. (9) second term: mean over feature maps of the L1 between V(pred) and V(target)."""
    if not bool(mask.any()):
        return pred.sum() * 0.0
    fp = features(pred[mask])
    with torch.no_grad():
        ft = features(target[mask])
    return torch.stack([F.l1_loss(a, b) for a, b in zip(fp, ft)]).mean()


@torch.no_grad()
def chain_targets(generator: Callable, schedule: Schedule, x0: torch.Tensor, t: torch.Tensor,
                  z_T: torch.Tensor, z_rand: torch.Tensor, x_T_noise: torch.Tensor,
                  eps: torch.Tensor) -> torch.Tensor:
    """x0^{t+1} for every sample with t < T (rows with t = T are returned as zeros).

    The model's own chain with x0 as input: x_T = q_sample(x0, T, x_T_noise); x0^T = G(x_T, z_T, T);
    for s = T-1 .. t+1: x_s = posterior(x0^{s+1}, x_{s+1}, s+1, eps[s-1]); x0^s = G(x_s, z_rand[s-1], s).
    z_T: (N, nz) the step-T latent (SE(x0), or random z without an encoder); z_rand: (T-1, N, nz)
    and eps: (T-1, N, C, H, W) indexed by step s - 1."""
    T = schedule.T
    out = torch.zeros_like(x0)
    need = t < T
    if not bool(need.any()):
        return out
    rows = need.nonzero().squeeze(1)  # only the samples that need a target: the chain is per sample
    x0, t, z_T, z_rand = x0[rows], t[rows], z_T[rows], z_rand[:, rows]
    x_T_noise, eps = x_T_noise[rows], eps[:, rows]
    n = rows.numel()
    targets = torch.zeros_like(x0)
    pending = torch.ones(n, dtype=torch.bool, device=x0.device)
    x = schedule.q_sample(x0, torch.full((n,), T, device=x0.device), x_T_noise)
    x0_hat = generator(x, z_T, torch.full((n,), float(T), device=x0.device)).to(x0.dtype)
    for s in range(T - 1, 0, -1):
        done = pending & (t == s)  # their target is x0^{s+1}, the current prediction
        targets[done] = x0_hat[done]
        pending = pending & ~done
        if not bool(pending.any()):
            break
        x = schedule.step(x0_hat, x, s + 1, eps[s - 1])
        x0_hat = generator(x, z_rand[s - 1], torch.full((n,), float(s), device=x0.device)).to(x0.dtype)
    out[rows] = targets
    return out
