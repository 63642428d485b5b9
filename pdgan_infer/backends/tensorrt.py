"""The `tensorrt` backend: the exported float16 sampler graph (`pdgan_infer.export.cache`) built into a
TensorRT engine (`pdgan_infer.export.tensorrt`) and run on CUDA. UNTESTED on a GPU (no TensorRT on the
project's machines)."""
from __future__ import annotations

import os

import torch

from ..export.cache import cached_onnx
from ..export.onnx import dtype_name
from ..networks import PDGAN
from .base import BackendUnavailable
from .exported import ExportedRunner, check_model


class TensorRTSampler:
    """The sampler graph as a TensorRT engine (strongly typed, built from the float16 ONNX export).
    UNTESTED: written against the documented TensorRT 10 Python API; no TensorRT on our machines.

    The engine is cached beside the ONNX file under a key of (GPU model, TensorRT version, batch
    profile, weights hash, dtype); a missing, stale or unreadable engine is rebuilt. Batches outside
    [min_batch, max_batch] are split (and padded up to min_batch). `batch_size` (the Engine's) sets the
    profile to (1, batch_size, batch_size): tactics tuned for the batch that runs, context memory sized
    for it (a fixed 1/100/256 profile sized celebahq256's context for 256 images). The exported graphs
    run in float32 or float16: another dtype raises BackendUnavailable (so `backend="auto"` moves on)."""

    backend = "tensorrt"

    def __init__(self, model: PDGAN, device: str | torch.device = "cuda", dtype: torch.dtype = torch.float16,
                 cache_dir: str | os.PathLike | None = None, min_batch: int = 1, opt_batch: int = 100,
                 max_batch: int = 256, batch_size: int | None = None):
        check_model(model)
        try:
            self.dtype = dtype_name(dtype)
        except ValueError as e:
            raise BackendUnavailable(f"tensorrt: {e}; use dtype=torch.float16 (or float32)") from None
        from ..export import tensorrt as trt_mod
        trt_mod.require_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend needs a CUDA GPU (torch.cuda.is_available() is False or "
                               f"device={device!r}); install with pip install 'pdgan[gpu]' on a GPU machine")
        if batch_size is not None:
            min_batch, opt_batch, max_batch = 1, batch_size, batch_size
        profile = trt_mod.BatchProfile(min_batch, opt_batch, max_batch)
        onnx_path, wsha = cached_onnx(model, self.dtype, cache_dir)
        self.runner = trt_mod.TensorRTRunner.from_onnx(onnx_path, profile, wsha, self.device)

    def __call__(self, x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.runner(x_T=x_T, z_T=z_T, z=z, eps=eps)


class TensorRTRunner(ExportedRunner):
    name = "tensorrt"
    static_shapes = True  # engines are built for fixed profiles
    sampler_type = TensorRTSampler
