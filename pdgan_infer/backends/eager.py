"""Eager torch backends.

* `torch`: the reference. The unmodified generator and `pdgan_infer.sampler.sample` itself; a reduced
  `dtype` runs under `torch.autocast` (weights stay float32).
* `optimized`: the prepared `optimize.FastGenerator` (merged style/time GEMMs, channels-last, fast
  FIR upsampling, the trunk cast to `dtype`) in the same chain; on CUDA the whole T-step sampler is
  replayed from a CUDA graph per batch size; on the CPU a batch runs in near-equal passes of at most
  `optimize.cpu_micro_batch(resolution)` images (every image's chain is independent of the others').
  Subclassed by the fused-kernel backends.
"""
from __future__ import annotations

import torch

from ..networks import PDGAN
from ..optimize import CUDAGraphSampler, Optimizations, cpu_micro_batch, prepare_generator
from ..sampler import SamplerNoise, sample
from .base import Runner, StepFn, chain, torch_step


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, model: PDGAN, device: torch.device, dtype: torch.dtype = torch.float32):
        super().__init__(device, dtype)
        self.generator, self.schedule = model.generator, model.schedule

    @torch.no_grad()
    def __call__(self, x_T, z_T, z, eps):
        noise = SamplerNoise(x_T, z_T.new_zeros(0), z, eps)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            return sample(self.generator, self.schedule, z_T, noise).float()


class OptimizedRunner(Runner):
    name = "optimized"

    def __init__(self, model: PDGAN, device: torch.device, dtype: torch.dtype = torch.float32,
                 opts: Optimizations | None = None, cuda_graph: bool | None = None):
        super().__init__(device, dtype)
        self.opts = opts if opts is not None else Optimizations(dtype=dtype)
        self.schedule = model.schedule
        self.generator = prepare_generator(model.generator, self.opts)
        self.step: StepFn = torch_step(model.schedule)
        self.setup()
        use_graph = device.type == "cuda" if cuda_graph is None else cuda_graph
        if use_graph and device.type != "cuda":
            raise ValueError("cuda_graph=True needs a CUDA device")
        # the CUDA graphs of the chain (None: eager). The sampler holds self._chain weakly and no attribute holds a
        # bound method of self, so a dropped runner is freed at once with its graphs' memory pool
        self._run = CUDAGraphSampler(self._chain) if use_graph else None
        self.cuda_graph = use_graph
        self.static_shapes = type(self).static_shapes or use_graph  # graphs are captured per batch size
        # CPU: images per sampler pass (None: the whole batch in one pass); not with static shapes, where
        # every new pass size would compile again
        self.micro_batch = (cpu_micro_batch(model.config.resolution)
                            if device.type == "cpu" and not self.static_shapes else None)

    def setup(self) -> None:
        """Subclasses install kernel hooks / compile here."""

    def _chain(self, x_T, z_T, z, eps):
        return chain(self.generator, self.schedule, self.step, x_T, z_T, z, eps)

    @torch.no_grad()
    def __call__(self, x_T, z_T, z, eps):
        n, mb = x_T.shape[0], self.micro_batch
        run = self._run if self._run is not None else self._chain
        if mb is None or n <= mb:
            return run(x_T, z_T, z, eps)
        parts = -(-n // mb)  # near-equal passes: 100 images at 25 per pass -> 4 x 25 (not 32+32+32+4 at 32)
        bounds = [n * i // parts for i in range(parts + 1)]
        return torch.cat([run(x_T[a:b], z_T[a:b], z[:, a:b], eps[:, a:b])
                          for a, b in zip(bounds[:-1], bounds[1:])])
