"""The noise schedule: the one place where the diffusion maths lives.

`Schedule.pdgan(T)` is the special schedule of the paper's Appendix A; `Schedule.ddgan(T)` is
Denoising Diffusion GAN's own (the paper's baseline). Both give the same object: the forward process
`q_sample` (training), the posterior q(x_{t-1} | x_t, x0) coefficients and one sampling `step`
(training's own chain, the sampler, export and the kernels all use them).

Indexing: 1-D float64 tensors, index 0 is t = 1 (paper notation t = 1..T; x_0 is data). The helper
`at(t)` takes paper-convention t.

Appendix A, precisely. The initial VP schedule over T_hat steps (Eq. 12):
    beta_t = 1 - exp(-beta_min / T_hat - (beta_max - beta_min) (2t - 1) / (2 T_hat^2)),  t = 1..T_hat
so abar_t = prod_{s<=t} (1 - beta_s) = exp(-beta_min t / T_hat - (beta_max - beta_min) t^2 / (2 T_hat^2)).
t_hat is the step with SNR(t_hat) > 0.1 and SNR(t_hat + 1) < 0.1, SNR = abar / (1 - abar). The steps
after t_hat are folded into one (Eq. 13): beta_{t_hat} = 1 - abar_{T_hat} / abar_{t_hat - 1}, so the
new schedule has abar_T = abar_{T_hat} = exp(-beta_min - (beta_max - beta_min) / 2) (pure noise). T_hat
is searched so that t_hat = T. For the defaults two values qualify for every T (T=2: T_hat in {5, 6});
`t_hat_rule="largest"` (default) takes the larger one, which gives the smaller beta_t for t < T, the
paper's requirement that those steps "do not destroy the semantic information"; "smallest" takes the
other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str = "pdgan"  # "pdgan" (Appendix A) or "ddgan" (DDGAN's var_func_vp baseline)
    T: int = 2  # number of diffusion steps (NFE)
    beta_min: float = 0.1  # VP schedule beta_min
    beta_max: float = 20.0  # VP schedule beta_max
    snr_threshold: float = 0.1  # SNR that marks the step destroying semantics (Appendix A)
    t_hat_rule: str = "largest"  # which T_hat to use when several give t_hat = T: "largest"|"smallest"


# the range of each field (pdgan_infer.config's validator reads it with the other configs' limits)
SCHEDULE_LIMITS = {
    "kind": ("choice", ("pdgan", "ddgan")), "T": ("int", 1, 1000), "beta_min": ("float", 0.0, 100.0),
    "beta_max": ("float", 1e-6, 100.0), "snr_threshold": ("float", 1e-12, 1e12),
    "t_hat_rule": ("choice", ("largest", "smallest"))}


def _vp_alphas_cumprod(T_hat: int, beta_min: float, beta_max: float) -> torch.Tensor:
    """abar_t for t = 0..T_hat of the discretised VP schedule of Eq. (12) (abar_0 = 1), float64."""
    t = torch.arange(T_hat + 1, dtype=torch.float64)
    return torch.exp(-beta_min * t / T_hat - 0.5 * (beta_max - beta_min) * t**2 / T_hat**2)


def _t_hat(abar: torch.Tensor, snr_threshold: float) -> int | None:
    """t_hat with SNR(t_hat) > threshold > SNR(t_hat + 1) (abar indexed from t = 0), or None: the first
    such t in 1..len(abar) - 2."""
    snr = abar / (1.0 - abar)
    hits = ((snr[1:-1] > snr_threshold) & (snr[2:] < snr_threshold)).nonzero()
    return int(hits[0, 0]) + 1 if len(hits) else None


# The Appendix-A search tries T_hat = T + 1, T + 2, ... and costs O(T_hat^2): configs read from files
# must not need more than this (`t_hat_estimate`); `pdgan_betas` stops at its `max_T_hat`.
MAX_CONFIG_T_HAT = 20_000


def t_hat_estimate(T: int, beta_min: float, beta_max: float, snr_threshold: float) -> float:
    """The T_hat the search will reach, from the continuous schedule: SNR(s) = threshold at
    s* = t / T_hat solves beta_min s + (beta_max - beta_min) s^2 / 2 = log(1 + 1 / threshold), so
    t_hat = T needs T_hat ~ T / s*. inf when the threshold is at or below the SNR at the end of the
    schedule (s* >= 1), which SNR(T_hat) equals for every T_hat: then no T_hat exists at all."""
    if not (snr_threshold > 0 and math.isfinite(snr_threshold)):
        return math.inf
    a, b, target = 0.5 * (beta_max - beta_min), beta_min, math.log1p(1.0 / snr_threshold)
    if target >= a + b:
        return math.inf
    s = target / b if a <= 0 else 2.0 * target / (b + math.sqrt(b * b + 4.0 * a * target))
    return T / s if s > 0 else math.inf


def schedule_config_problem(cfg: ScheduleConfig, where: str = "schedule") -> str | None:
    """Why `cfg` cannot make a schedule (None when it can): beta_min above beta_max, or an Appendix-A T_hat
    search beyond MAX_CONFIG_T_HAT steps. `where` names the config in the message."""
    if cfg.beta_min > cfg.beta_max:
        return f"{where}.beta_min ({cfg.beta_min}) must be <= beta_max ({cfg.beta_max})"
    if cfg.kind != "pdgan":
        return None
    estimate = t_hat_estimate(cfg.T, cfg.beta_min, cfg.beta_max, cfg.snr_threshold)
    if estimate <= MAX_CONFIG_T_HAT:
        return None
    return (f"{where}: T={cfg.T}, beta_min={cfg.beta_min}, beta_max={cfg.beta_max}, "
            f"snr_threshold={cfg.snr_threshold} need T_hat ~ {estimate:.3g} steps in the Appendix-A search "
            f"(at most {MAX_CONFIG_T_HAT}); "
            + ("the threshold is at or below the SNR at the end of the schedule, so no T_hat exists"
               if math.isinf(estimate) else "use a smaller T or a threshold nearer 0.1"))


def pdgan_betas(T: int, beta_min: float = 0.1, beta_max: float = 20.0, snr_threshold: float = 0.1,
                t_hat_rule: str = "largest", max_T_hat: int = 100_000) -> tuple[torch.Tensor, int]:
    """The Appendix-A betas (float64, index 0 is t = 1) and the T_hat they came from."""
    if t_hat_rule not in ("largest", "smallest"):
        raise ValueError(f"t_hat_rule must be 'largest' or 'smallest', got {t_hat_rule!r}")
    if not (0.0 < snr_threshold):
        raise ValueError(f"snr_threshold must be positive, got {snr_threshold}")
    no_t_hat = (f"no T_hat gives t_hat = T = {T} for beta_min={beta_min}, beta_max={beta_max}, "
                f"snr_threshold={snr_threshold}; pick another T or threshold")
    # Fail fast with the loop's own verdict: every T_hat with t_hat = T lies in (T / s*, (T + 1) / s*).
    estimate = t_hat_estimate(T, beta_min, beta_max, snr_threshold)
    if math.isinf(estimate) or estimate * (T - 1) / T > max_T_hat + 2:
        raise ValueError(no_t_hat + ("" if math.isinf(estimate) else f" (it would need T_hat > {max_T_hat})"))
    found = []
    for T_hat in range(T + 1, max_T_hat):
        abar = _vp_alphas_cumprod(T_hat, beta_min, beta_max)
        t_hat = _t_hat(abar, snr_threshold)
        if t_hat == T:
            found.append(T_hat)
        elif found or (t_hat is not None and t_hat > T):
            break  # t_hat grows with T_hat: no later T_hat can give t_hat = T
    if not found:
        raise ValueError(no_t_hat)
    T_hat = found[-1] if t_hat_rule == "largest" else found[0]
    abar = _vp_alphas_cumprod(T_hat, beta_min, beta_max)
    betas = 1.0 - abar[1:T + 1] / abar[:T]  # Eq. (12) for t < T
    betas[T - 1] = 1.0 - abar[T_hat] / abar[T - 1]  # Eq. (13): fold t_hat..T_hat into step T
    return betas, T_hat


def ddgan_betas(T: int, beta_min: float = 0.1, beta_max: float = 20.0, eps_small: float = 1e-3) -> torch.Tensor:
    """Denoising Diffusion GAN's schedule (`get_sigma_schedule` with `var_func_vp`, non-geometric):
    continuous times t_k = eps + (1 - eps) k / T, abar(t) = exp(-beta_min t - (beta_max - beta_min) t^2 / 2),
    beta_k = 1 - abar(t_k) / abar(t_{k-1}), k = 1..T (float64, index 0 is t = 1)."""
    tc = torch.arange(T + 1, dtype=torch.float64) / T * (1.0 - eps_small) + eps_small
    abar = torch.exp(-beta_min * tc - 0.5 * (beta_max - beta_min) * tc**2)
    return 1.0 - abar[1:] / abar[:-1]


@dataclass(frozen=True)
class StepCoefficients:
    """Posterior q(x_{t-1} | x_t, x0) = N(c1 * x0 + c2 * x_t, sigma^2) for one t, as Python floats."""

    c1: float
    c2: float
    sigma: float


class Schedule:
    """Diffusion coefficients for T steps. Build with `Schedule.pdgan(T)`, `Schedule.ddgan(T)` or
    `Schedule.from_config(cfg)`. All tensors are float64 on the CPU; `index 0 is t = 1`."""

    def __init__(self, betas: torch.Tensor, kind: str, config: ScheduleConfig, T_hat: int | None = None):
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or len(betas) < 1 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError(f"betas must be a non-empty 1-D tensor in (0, 1], got {betas}")
        self.kind, self.config, self.T_hat = kind, config, T_hat
        self.T = len(betas)
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        # q(x_t | x0) coefficients padded with t = 0 (x_0 itself), for q_sample
        self._q_mean0 = torch.cat([torch.ones(1, dtype=torch.float64), self.sqrt_alphas_cumprod])
        self._q_std0 = torch.cat([torch.zeros(1, dtype=torch.float64), self.sqrt_one_minus_alphas_cumprod])
        one_minus = 1.0 - self.alphas_cumprod
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / one_minus
        self.posterior_log_variance_clipped = self.posterior_variance.clamp(min=1e-20).log()
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / one_minus
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * self.alphas.sqrt() / one_minus
        # the per-step floats of `coefficients`, read once: float(tensor[i]) inside a traced sampler (torch.export,
        # the ONNX exporter) would be a data-dependent read of a lifted constant
        self._coefficients = [StepCoefficients(c1, c2, math.sqrt(v)) for c1, c2, v in zip(
            self.posterior_mean_coef1.tolist(), self.posterior_mean_coef2.tolist(), self.posterior_variance.tolist())]

    # --- constructors -----------------------------------------------------------------------
    @classmethod
    def pdgan(cls, T: int = 2, beta_min: float = 0.1, beta_max: float = 20.0, snr_threshold: float = 0.1,
              t_hat_rule: str = "largest") -> Schedule:
        _check_T(T)
        betas, T_hat = pdgan_betas(T, beta_min, beta_max, snr_threshold, t_hat_rule)
        cfg = ScheduleConfig("pdgan", T, beta_min, beta_max, snr_threshold, t_hat_rule)
        return cls(betas, "pdgan", cfg, T_hat)

    @classmethod
    def ddgan(cls, T: int = 2, beta_min: float = 0.1, beta_max: float = 20.0) -> Schedule:
        _check_T(T)
        return cls(ddgan_betas(T, beta_min, beta_max), "ddgan", ScheduleConfig("ddgan", T, beta_min, beta_max))

    @classmethod
    def from_config(cls, cfg: ScheduleConfig) -> Schedule:
        if cfg.kind == "pdgan":
            return cls.pdgan(cfg.T, cfg.beta_min, cfg.beta_max, cfg.snr_threshold, cfg.t_hat_rule)
        if cfg.kind == "ddgan":
            return cls.ddgan(cfg.T, cfg.beta_min, cfg.beta_max)
        raise ValueError(f"unknown schedule kind {cfg.kind!r}; choose 'pdgan' or 'ddgan'")

    def __repr__(self) -> str:
        extra = f", T_hat={self.T_hat}" if self.T_hat is not None else ""
        return f"Schedule({self.kind}, T={self.T}{extra}, betas={[round(b, 6) for b in self.betas.tolist()]})"

    # --- per-step access ----------------------------------------------------------------------
    def coefficients(self, t: int) -> StepCoefficients:
        """Posterior coefficients for paper-convention step t (1..T) as floats (sigma = 0 at t = 1)."""
        return self._coefficients[self._index(t)]

    def _index(self, t: int) -> int:
        if not 1 <= int(t) <= self.T:
            raise ValueError(f"step t={t} is outside 1..T={self.T}")
        return int(t) - 1

    @staticmethod
    def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t - 1] per sample, shaped (N, 1, 1, ...) to broadcast against `like`."""
        v = values.to(device=like.device)[t.to(like.device).long() - 1]
        return v.to(like.dtype if like.is_floating_point() else torch.float32).reshape(-1, *[1] * (like.ndim - 1))

    # --- forward process (training) -----------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_t ~ q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I); t is a (N,) tensor in 1..T, or 0
        for x_0 itself."""
        t = torch.as_tensor(t, device=x0.device).long().expand(x0.shape[0])
        noise = torch.randn_like(x0) if noise is None else noise
        return self._gather(self._q_mean0, t + 1, x0) * x0 + self._gather(self._q_std0, t + 1, x0) * noise

    def q_sample_pairs(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """A real pair (x_{t-1}, x_t): x_{t-1} ~ q(x_{t-1} | x0), x_t ~ q(x_t | x_{t-1}) (t in 1..T)."""
        t = torch.as_tensor(t, device=x0.device).long()
        n1 = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        n2 = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_prev = self.q_sample(x0, t - 1, n1)
        x_t = self._gather(self.alphas.sqrt(), t, x0) * x_prev + self._gather(self.betas.sqrt(), t, x0) * n2
        return x_prev, x_t

    # --- reverse step (sampling) --------------------------------------------------------------
    def posterior_mean_variance(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x0), per sample step t (N,)."""
        mean = (self._gather(self.posterior_mean_coef1, t, x0) * x0
                + self._gather(self.posterior_mean_coef2, t, x0) * x_t)
        return (mean, self._gather(self.posterior_variance, t, x0),
                self._gather(self.posterior_log_variance_clipped, t, x0))

    def step(self, x0: torch.Tensor, x_t: torch.Tensor, t: int | torch.Tensor,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """One posterior sample x_{t-1} = c1[t] x0 + c2[t] x_t + sigma[t] noise. `t` is one int for the
        whole batch (the sampler's case) or a (N,) tensor (training's chain). At t = 1, sigma = 0 and
        the result is x0 exactly."""
        if isinstance(t, int) or (torch.is_tensor(t) and t.ndim == 0):
            c = self.coefficients(int(t))
            out = c.c1 * x0 + c.c2 * x_t
            if c.sigma != 0.0:
                out = out + c.sigma * (torch.randn_like(x0) if noise is None else noise)
            return out
        mean, var, _ = self.posterior_mean_variance(x0, x_t, t)
        noise = torch.randn_like(x0) if noise is None else noise
        return mean + var.sqrt() * noise


def _check_T(T: int) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer number of steps, got {T!r}")
