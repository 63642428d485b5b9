"""Backends with the fused kernels: the `optimized` model with every `AdaGNAct.kernel` hook set to a
fused AdaGN + SiLU kernel and the posterior step done by the fused posterior kernel.

* `triton`: `pdgan_infer.kernels.adagn` / `.posterior` (CUDA; on CPU only in Triton's interpreter,
  TRITON_INTERPRET=1, which is for testing: it is orders of magnitude slower).
* `native`: the C++ (CPU) / CUDA kernels of `csrc/`, loaded by `pdgan_infer.kernels.native`; on the CPU its
  3x3 convolutions are Winograd (`Optimizations.winograd`, csrc/winograd) with the tile that
  `pdgan_infer.cpu` gives this kind of CPU and dtype: F(4x4, 3x3) in float32; F(2x2, 3x3) with bf16 GEMMs in
  bfloat16 on CPUs with avx512_bf16 but no AMX; oneDNN's direct convolution in bfloat16 with AMX.
"""
from __future__ import annotations

import functools

from ..cpu import cpu_choice
from .base import kernel_step
from .eager import OptimizedRunner


class TritonRunner(OptimizedRunner):
    name = "triton"

    def setup(self) -> None:
        from ..kernels.adagn import adagn_silu
        from ..kernels.posterior import posterior_step
        self.generator.set_adagn_kernel(adagn_silu)
        self.step = kernel_step(self.schedule, posterior_step)


class NativeRunner(OptimizedRunner):
    name = "native"

    def setup(self) -> None:
        from ..kernels import native
        if not native.available(self.device):
            from .base import BackendUnavailable
            raise BackendUnavailable(f"backend 'native': {native.unavailable_reason(self.device)}")
        self.generator.set_adagn_kernel(native.adagn_silu)
        self.step = kernel_step(self.schedule, native.posterior_step)
        trunk = self.opts.dtype  # the dtype of the convolutions (an explicit `opts` sets it)
        tile = cpu_choice().winograd_tile.get(trunk) if self.device.type == "cpu" else None
        if tile is not None and self.opts.winograd:
            self.generator.set_conv3x3_kernel(native.winograd_conv3x3,
                                              functools.partial(native.winograd_weight, tile=tile, dtype=trunk))
