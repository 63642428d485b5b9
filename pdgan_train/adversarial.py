"""Adversarial losses of paper Eq. 6 (DDGAN's non-saturating GAN) and DDGAN's R1 penalty.

With D = sigmoid(logit), Eq. 6 reads, per sample,
    real pair (x_{t-1} ~ q(x_{t-1} | x_t)):        -log D       = softplus(-logit)   -> d_loss_real
    fake pair (x_{t-1} ~ p_theta(x_{t-1} | x_t)):  -log(1 - D)  = softplus(logit)    -> d_loss_fake
The generator uses the non-saturating form -log D(fake) = softplus(-logit) (g_loss_adv), as DDGAN.
All losses are computed in float32 whatever the logits' dtype.

R1 (Mescheder et al., 2018) as DDGAN applies it: the gradient of sum(D(x_{t-1}, x_t, t)) with respect
to the REAL x_{t-1} only; DDGAN sets requires_grad on x_{t-1} and passes x_t detached, so x_t gets no
penalty. `r1_penalty` returns the gamma-free E_n ||grad_n||^2; the training loop adds
`r1_weight(step, r1_gamma, lazy_reg) * r1_penalty(...)` to the discriminator loss.

Lazy R1 choice: DDGAN evaluates the penalty every `lazy_reg` steps (steps 0, k, 2k, ...) with weight
r1_gamma / 2 and does NOT multiply by the interval. StyleGAN2's lazy regularisation multiplies by the
interval to keep the time-averaged strength equal to the non-lazy one. We default to DDGAN's rule,
because PDGAN is built on DDGAN and DDGAN's published gammas (CIFAR-10: 0.02 with lazy_reg 15;
CelebA-HQ 256: 2.0 with lazy_reg 10) were tuned under it: scaling by the interval would make the
penalty 10-15x stronger than in the runs the paper compares to. `scale_by_interval=True` gives
StyleGAN2's rule.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss_real(logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(logit) on real pairs, averaged: softplus(-logits).mean()."""
    return F.softplus(-logits.float()).mean()


def d_loss_fake(logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - sigmoid(logit)) on generated pairs, averaged: softplus(logits).mean()."""
    return F.softplus(logits.float()).mean()


def g_loss_adv(logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss on generated pairs: softplus(-logits).mean()."""
    return F.softplus(-logits.float()).mean()


def r1_penalty(d_real_logits: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """mean_n || d sum(D) / d x_real[n] ||^2, differentiable (create_graph=True) so it can be minimised.

    d_real_logits: (N,) or (N, 1) logits computed from `x_real`, which must have requires_grad=True
    (set it on the real x_{t-1} before calling D). Returns a float32 scalar.
    """
    if not x_real.requires_grad:
        raise ValueError("r1_penalty: x_real must have requires_grad=True before D is evaluated on it")
    if d_real_logits.shape[0] != x_real.shape[0]:
        raise ValueError(f"r1_penalty: {d_real_logits.shape[0]} logits for a batch of {x_real.shape[0]}")
    (grad,) = torch.autograd.grad(d_real_logits.sum(), x_real, create_graph=True)
    return grad.float().flatten(1).square().sum(dim=1).mean()


def r1_weight(step: int, r1_gamma: float, lazy_reg: int | None = None,
              scale_by_interval: bool = False) -> float:
    """Weight of `r1_penalty` at optimisation step `step` (0-based); 0.0 means "skip R1 this step".

    Non-lazy (lazy_reg None or 1): r1_gamma / 2 every step. Lazy: r1_gamma / 2 on steps divisible by
    lazy_reg (DDGAN), times lazy_reg if scale_by_interval (StyleGAN2).
    """
    if r1_gamma < 0:
        raise ValueError(f"r1_gamma must be >= 0, got {r1_gamma}")
    if lazy_reg is None or lazy_reg == 1:
        return r1_gamma / 2
    if lazy_reg < 1:
        raise ValueError(f"lazy_reg must be >= 1 or None, got {lazy_reg}")
    if step % lazy_reg:
        return 0.0
    return r1_gamma / 2 * (lazy_reg if scale_by_interval else 1)
