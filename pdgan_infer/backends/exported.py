"""Backends that run an exported graph of the whole T-step sampler (`pdgan_infer.export.runtime`):
`onnxruntime` (CPU or CUDA execution provider) and `tensorrt` (CUDA). The runtime classes build or
load the graph (cached in `cache_dir`) and are called like every runner."""
from __future__ import annotations

import torch

from ..networks import PDGAN
from .base import Runner


class _ExportedRunner(Runner):
    static_shapes = False
    runtime_class = ""

    def __init__(self, model: PDGAN, device: torch.device, dtype: torch.dtype = torch.float32,
                 cache_dir: str | None = None, **options):
        super().__init__(device, dtype)
        self.sampler = self.sampler_class()(model, device, dtype, cache_dir=cache_dir, **options)

    def sampler_class(self) -> type:
        """The runtime class that builds or loads the graph (imported on use: the runtimes are extras)."""
        from ..export import runtime
        return getattr(runtime, self.runtime_class)

    @torch.no_grad()
    def __call__(self, x_T, z_T, z, eps):
        return torch.as_tensor(self.sampler(x_T, z_T, z, eps)).to(self.device, torch.float32)


class OnnxRuntimeRunner(_ExportedRunner):
    name = "onnxruntime"
    runtime_class = "OnnxRuntimeSampler"


class TensorRTRunner(_ExportedRunner):
    name = "tensorrt"
    static_shapes = True  # engines are built for fixed profiles
    runtime_class = "TensorRTSampler"
