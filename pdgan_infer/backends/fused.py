"""Backends with the fused kernels: the `optimized` model with every `AdaGNAct.kernel` hook set to a
fused AdaGN + SiLU kernel and the posterior step done by the fused posterior kernel.

* `triton`: `pdgan_infer.kernels.adagn` / `.posterior` (CUDA; on CPU only in Triton's interpreter,
  TRITON_INTERPRET=1, which is for testing: it is orders of magnitude slower).
* `native`: the C++ (CPU) / CUDA kernels of `csrc/`, loaded by `pdgan_infer.kernels.native`; on the CPU
  its 3x3 convolutions are Winograd (`Optimizations.winograd`, csrc/winograd): F(4x4, 3x3) in float32, and
  F(2x2, 3x3) in bfloat16 where `native.winograd_bf16_preferred()` (AVX512-BF16 and no AMX for oneDNN: AMD
  Zen 4, or a Xeon capped by ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16); with AMX, bfloat16 keeps oneDNN's direct
  convolutions, which are faster there. The choice is made per machine when the runner is built.
"""
from __future__ import annotations

import torch

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
        if self.device.type == "cpu" and self.opts.winograd:
            if self.opts.dtype == torch.float32:
                self.generator.set_conv3x3_kernel(native.winograd_conv3x3, native.winograd_weight)
            elif self.opts.dtype == torch.bfloat16 and native.winograd_bf16_preferred():
                self.generator.set_conv3x3_kernel(native.winograd_conv3x3_bf16, native.winograd_weight_bf16)
