"""`compile`: the `optimized` model's generator through `torch.compile` (Inductor: C++/OpenMP code on the
CPU, Triton kernels on CUDA). Shapes are static, so the engine pads the last batch instead of paying a
recompilation; the first call of each batch size compiles (616 s for cifar10 in bf16 on the project's
2-core CPU, where the compiled generator was not measurably faster than `optimized`: 12.4-15.4 s vs 15.3
s per batch-100 generator forward, under load). On CUDA the whole sampler is also replayed from a CUDA graph
(Inductor's own cudagraphs are left off so the two do not nest)."""
from __future__ import annotations

import torch

from .eager import OptimizedRunner


class CompileRunner(OptimizedRunner):
    name = "compile"
    static_shapes = True

    def setup(self) -> None:
        mode = "max-autotune-no-cudagraphs" if self.device.type == "cuda" else None
        self.generator = torch.compile(self.generator, mode=mode, dynamic=False)
