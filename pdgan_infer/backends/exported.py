"""The base of the backends that run an exported graph of the whole T-step sampler (onnxruntime, tensorrt,
openvino: one file each beside this one). Each pairs a sampler class, which builds or loads its graph from
the export cache (`pdgan_infer.export.cache`) and is called with the graph's batch-first inputs
(x_T, z_T, z (N, T-1, nz), eps (N, T-1, C, R, R)), with a `Runner` that the Engine calls with `SamplerNoise`'s
step-first z and eps: `ExportedRunner` is the one place that turns the one layout into the other
(`export.onnx.graph_inputs`)."""
from __future__ import annotations

import torch

from ..export.onnx import graph_inputs
from ..networks import PDGAN
from .base import Runner


def check_model(model: PDGAN) -> None:
    if not isinstance(model, PDGAN):
        raise TypeError(f"expected a pdgan_infer.PDGAN (e.g. from load_checkpoint), got {type(model).__name__}")


class ExportedRunner(Runner):
    """A sampler class (`sampler_type`) as a Runner: `runner(x_T, z_T, z, eps) -> x0` float32 on its device, with
    `SamplerNoise`'s z (T-1, N, nz) and eps (T-1, N, C, R, R), which the sampler gets batch first."""

    static_shapes = False
    sampler_type: type = type(None)

    def __init__(self, model: PDGAN, device: torch.device, dtype: torch.dtype = torch.float32,
                 cache_dir: str | None = None, **options):
        super().__init__(device, dtype)
        self.sampler = self.sampler_class()(model, device, dtype, cache_dir=cache_dir, **options)

    def sampler_class(self) -> type:
        return self.sampler_type

    @torch.no_grad()
    def __call__(self, x_T, z_T, z, eps):
        return torch.as_tensor(self.sampler(**graph_inputs(x_T, z_T, z, eps))).to(self.device, torch.float32)
