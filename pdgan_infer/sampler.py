"""The reference 2-NFE (T-step) sampler in pure torch. Every backend is checked against it.

    x_T ~ N(0, I);  x0^T = G(x_T, z_T, T);  x_{T-1} ~ q(x_{T-1} | x_T, x0^T);
    x0^t = G(x_t, z_t, t) with z_t ~ N(0, I) for t < T; ...;  image = x0^1 (sigma_1 = 0).

All randomness is an explicit input (`SamplerNoise`), so backends can be compared bit for bit.
`draw_noise` makes it from one seed per image with a counter-based generator, the same on every device:

    noise element j of tensor k of the image with seed s = normal number k * 2**34 + j of the
    Philox4x32-10 stream keyed by s (pdgan_infer.kernels.native documents the stream: key = the seed's
    64 bits, counter = (j // 4, k, 0, 0), lane j % 4, Box-Muller in float64 rounded to float32),
    k = 0: x_T (C, R, R);  1: the latent denoiser's start (nz,);  2: z (T-1, nz);  3: eps (T-1, C, R, R),
    j = the row-major index within the image's tensor.

So an image's noise depends on its seed only (not on the batch size, its position in the batch, or
the device), and costs one kernel launch per tensor on a GPU. It is computed by the C++/CUDA kernels
(`pdgan_infer._C`) when built, else by the Triton kernel on CUDA, else by the pure-torch reference
(`kernels.reference.philox_normal_rows_ref`); all give the same float32 numbers up to the last bit of
float64 libm differences (rare 1-ulp flips).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .schedule import Schedule

# step(x0, x_t, t, eps) -> x_{t-1}; eps is None at t = 1
StepFn = Callable[[torch.Tensor, torch.Tensor, int, "torch.Tensor | None"], torch.Tensor]


@dataclass
class SamplerNoise:
    x_T: torch.Tensor  # (N, C, R, R) the starting noise
    z_T_noise: torch.Tensor  # (N, nz) the noise z_T is drawn from: the latent denoiser's DDIM start, or z_T
    #                          itself without a semantic code (latent_slot "none"); unused when z_T is given
    z: torch.Tensor  # (T-1, N, nz): z[t-1] is the generator's latent at step t < T
    eps: torch.Tensor  # (T-1, N, C, R, R): eps[t-2] is the posterior noise of step t >= 2

    def to(self, device=None, dtype=None) -> SamplerNoise:
        return SamplerNoise(*(v.to(device=device, dtype=dtype) for v in (self.x_T, self.z_T_noise, self.z, self.eps)))

    @property
    def latent(self) -> torch.Tensor:
        """Deprecated name of `z_T_noise` (one release)."""
        import warnings
        warnings.warn("SamplerNoise.latent is now SamplerNoise.z_T_noise", DeprecationWarning, stacklevel=2)
        return self.z_T_noise


X_T, LATENT, Z, EPS = 0, 1, 2, 3  # tensor ids k of the noise definition
TENSOR_STRIDE = 1 << 34  # stream offset of tensor k: k * 2**34 (at most 2**34 elements per image tensor)
NOISE_IMPLS = ("native", "triton", "reference")


def draw_noise(seeds: list[int], T: int, channels: int, resolution: int, nz: int, *,
               device: torch.device | str | None = None, impl: str | None = None) -> SamplerNoise:
    """The sampler noise of one image per seed (module docstring), float32 on `device` (default cpu).
    seeds: ints in [-2**63, 2**64) (taken mod 2**64). impl: force "native", "triton" or "reference"
    (default: the first that runs on the device)."""
    device = torch.device("cpu" if device is None else device)
    n, pixels = len(seeds), channels * resolution * resolution
    if max(pixels, nz) * max(T - 1, 1) >= TENSOR_STRIDE:
        raise ValueError(f"draw_noise: an image tensor of {pixels * max(T - 1, 1)} elements exceeds 2**34")
    keys = _seed_keys(seeds).to(device)
    rows = _normal_rows(device, impl)

    def draw(k: int, count: int) -> torch.Tensor:
        if n == 0 or count == 0:
            return torch.zeros(n, count, device=device)
        return rows(keys, count, k * TENSOR_STRIDE)

    x_T = draw(X_T, pixels).view(n, channels, resolution, resolution)
    latent = draw(LATENT, nz)
    z = draw(Z, (T - 1) * nz).view(n, T - 1, nz).transpose(0, 1).contiguous()
    eps = draw(EPS, (T - 1) * pixels).view(n, T - 1, channels, resolution, resolution).transpose(0, 1).contiguous()
    return SamplerNoise(x_T, latent, z, eps)


def _seed_keys(seeds: list[int]) -> torch.Tensor:
    """int64 tensor of the seeds' 64 bits (the Philox keys)."""
    keys = []
    for seed in seeds:
        s = int(seed)
        if not -(1 << 63) <= s < (1 << 64):
            raise ValueError(f"draw_noise: seed {s} is outside [-2**63, 2**64)")
        bits = s & ((1 << 64) - 1)
        keys.append(bits - (1 << 64) if bits >= (1 << 63) else bits)
    return torch.tensor(keys, dtype=torch.int64)


def _normal_rows(device: torch.device, impl: str | None):
    """rows(keys, count, offset) -> (N, count) float32 with the fastest implementation on `device`."""
    if impl is not None and impl not in NOISE_IMPLS:
        raise ValueError(f"draw_noise: impl must be one of {NOISE_IMPLS}, got {impl!r}")
    if impl in (None, "native"):
        from .kernels import native
        if native.available(device):
            return lambda keys, count, offset: native.philox_normal_rows(keys, count, offset, device=device)
        if impl == "native":
            raise RuntimeError(f"draw_noise: native kernels unavailable: {native.unavailable_reason(device)}")
    if impl == "triton" or (impl is None and device.type == "cuda"):
        from .kernels import _triton
        if impl == "triton" or (_triton.HAS_TRITON and torch.cuda.is_available()):
            from .kernels.philox import philox_normal_rows
            return philox_normal_rows
    from .kernels.reference import philox_normal_rows_ref
    return philox_normal_rows_ref


@torch.no_grad()
def with_latent_slot(noise: SamplerNoise, z_T: torch.Tensor, latent_slot: str = "first") -> SamplerNoise:
    """The noise a model trained with `latent_slot` samples with: "all" (z_T fed at every step, the
    Table-1 "+ encoder" row) replaces every z_t by z_T; "first" and "none" leave it unchanged."""
    if latent_slot != "all":
        return noise
    z = z_T.to(noise.z.dtype).unsqueeze(0).expand_as(noise.z).contiguous()
    return SamplerNoise(noise.x_T, noise.z_T_noise, z, noise.eps)


def sample(generator: Callable[..., torch.Tensor], schedule: Schedule, z_T: torch.Tensor, noise: SamplerNoise,
           latent_slot: str = "first", step: StepFn | None = None) -> torch.Tensor:
    """The sampler loop of pdgan, the only one (every backend, the export graphs and training's sample grids run
    it): the T-step chain from noise.x_T with semantic code z_T; returns x0 in [-1, 1].
    latent_slot: how the model was trained (`pdgan_infer.networks.LATENT_SLOTS`). step(x0, x_t, t, eps) ->
    x_{t-1} (eps None at t = 1): the posterior step, by default `schedule.step`; a fused kernel in the fused
    backends. Capturable in a CUDA graph and traceable for export: the step vectors are made with full_like."""
    noise = with_latent_slot(noise, z_T, latent_slot)
    step = schedule.step if step is None else step
    x = noise.x_T
    for t in range(schedule.T, 0, -1):
        steps = torch.full_like(x[:, 0, 0, 0], float(t))  # (N,), follows a traced dynamic batch
        x0 = generator(x, z_T if t == schedule.T else noise.z[t - 1], steps)
        x = step(x0, x, t, noise.eps[t - 2] if t > 1 else None)
    return x


def noise_for(model, seeds: Sequence[int], *, device: torch.device | str | None = None,
              impl: str | None = None) -> SamplerNoise:
    """`draw_noise` for `model`'s shapes (its schedule's T, channels, resolution and nz)."""
    c = model.config
    return draw_noise(list(seeds), model.schedule.T, c.channels, c.resolution, c.generator.nz, device=device,
                      impl=impl)


@torch.no_grad()
def images_from_seeds(model, seeds: Sequence[int], z_T: torch.Tensor | None = None, *,
                      draw_z_T: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      chain: Callable[..., torch.Tensor] | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """The images of `seeds` (one per seed), (N, C, R, R) float in [-1, 1]: the seeds' noise (`noise_for`, on
    `device`), z_T (given, else draw_z_T(noise.z_T_noise), by default the model's latent denoiser `model.draw_z_T`),
    the model's latent slot, then chain(x_T, z_T, z, eps) (a backend's runner; default: `sample` with the
    model's generator and schedule). `to_uint8` makes them pixels."""
    noise = noise_for(model, seeds, device=device)
    if z_T is None:
        z_T = (model.draw_z_T if draw_z_T is None else draw_z_T)(noise.z_T_noise)
    else:
        z_T = z_T.to(noise.x_T.device, torch.float32)
    noise = with_latent_slot(noise, z_T, model.latent_slot)
    if chain is None:
        return sample(model.generator, model.schedule, z_T, noise)
    return chain(noise.x_T, z_T, noise.z, noise.eps)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, 3) uint8 (grey images are repeated to RGB)."""
    x = ((images.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return x.expand(-1, -1, -1, 3).contiguous() if x.shape[-1] == 1 else x.contiguous()
