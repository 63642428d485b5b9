"""Backends with the fused kernels: the `optimized` model with every `AdaGNAct.kernel` hook set to a
fused AdaGN + SiLU kernel and the posterior step done by the fused posterior kernel.

* `triton`: `pdgan_infer.kernels.adagn` / `.posterior` (CUDA; on CPU only in Triton's interpreter,
  TRITON_INTERPRET=1, which is for testing: it is orders of magnitude slower).
* `native`: the C++ (CPU) / CUDA kernels of `csrc/`, loaded by `pdgan_infer.kernels.native`; on the CPU
  in float32 its 3x3 convolutions are Winograd F(4x4, 3x3) (`Optimizations.winograd`, csrc/winograd).
"""
from __future__ import annotations

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
        if self.device.type == "cpu" and self.opts.winograd:  # float32 3x3 convolutions (bf16 keeps oneDNN's)
            self.generator.set_conv3x3_kernel(native.winograd_conv3x3, native.winograd_weight)
