"""The `onnxruntime` backend: the exported sampler graph (`pdgan_infer.export.cache`) in an ONNX Runtime
session, on the CPU or (onnxruntime-gpu) CUDA execution provider.

    sampler = OnnxRuntimeSampler(model)                 # cached export + session
    x0 = sampler(x_T, z_T, z, eps)                      # the sampler graph's inputs, batch first

x_T (N, C, R, R), z_T (N, nz), z (N, T-1, nz), eps (N, T-1, C, R, R) (`export.onnx.graph_inputs` makes them from
`pdgan_infer.sampler.SamplerNoise`); the result is float32 on the device of x_T.
"""
from __future__ import annotations

import os
import warnings

import torch

from ..export.cache import cached_onnx
from ..export.onnx import OnnxLoadError, OnnxRunner, dtype_name, require
from ..networks import PDGAN
from .base import BackendUnavailable
from .exported import ExportedRunner, check_model


class OnnxRuntimeSampler:
    """The sampler graph in ONNX Runtime: CPUExecutionProvider, or CUDAExecutionProvider when `device`
    is cuda and onnxruntime-gpu is installed (CUDA path untested here). `dtype` is the generator's
    compute dtype inside the graph (float32 or float16); I/O is float32.

    The providers are the session's own (`session.get_providers()`), not the requested ones: a CUDA
    provider that fails to load (e.g. an onnxruntime-gpu built for CUDA 12 next to a cu13 torch) makes
    ONNX Runtime fall back to the CPU silently; on a CUDA `device` that raises BackendUnavailable instead
    of binding CUDA buffers to a CPU session."""

    backend = "onnxruntime"

    def __init__(self, model: PDGAN, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None):
        check_model(model)
        require("onnx")
        require("onnxruntime")
        self.device, self.dtype = torch.device(device), dtype_name(dtype)
        self.onnx_path, self.weights_sha256 = cached_onnx(model, self.dtype, cache_dir)
        with warnings.catch_warnings():  # a CUDA provider that did not load is reported below, as an error
            warnings.filterwarnings("ignore", message="onnxruntime could not load")
            try:
                self.runner = OnnxRunner(self.onnx_path, self.device, threads)
            except OnnxLoadError as e:  # e.g. a file replaced between the check and the open
                warnings.warn(f"re-exporting {self.onnx_path}: {e}", stacklevel=2)
                self.onnx_path, _ = cached_onnx(model, self.dtype, cache_dir, force=True)
                self.runner = OnnxRunner(self.onnx_path, self.device, threads)
        requested = list(getattr(self.runner, "requested_providers", self.runner.providers))
        actual = list(self.runner.session.get_providers())
        self.runner.providers = actual  # what the runner's CUDA I/O binding path is decided from
        if self.device.type == "cuda" and "CUDAExecutionProvider" not in actual:
            raise BackendUnavailable(
                f"onnxruntime asked for {requested} but the session runs on {actual}: its CUDA provider did not "
                "load (onnxruntime-gpu from PyPI is built for CUDA 12 / cuDNN 9; a CUDA 13 torch needs the "
                "CUDA 13 onnxruntime-gpu build, and the CPU wheel onnxruntime must not be installed beside it)")
        self.providers = actual

    def __call__(self, x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.runner(x_T=x_T, z_T=z_T, z=z, eps=eps)

    def __repr__(self) -> str:
        return f"OnnxRuntimeSampler({self.onnx_path.name}, providers={self.providers})"


class OnnxRuntimeRunner(ExportedRunner):
    name = "onnxruntime"
    sampler_type = OnnxRuntimeSampler
