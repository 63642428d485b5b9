"""Export: ONNX graphs of the generator step and of the whole sampler, ONNX Runtime and TensorRT
runners for the Engine, and the `pdgan-export` command.

    from pdgan_infer.export import export_onnx, OnnxRuntimeSampler
    export_onnx(model, "cifar10.onnx", graph="sampler", dtype="float16")   # checked + verified
    sampler = OnnxRuntimeSampler(model)                                     # cached export + session
    x0 = sampler(x_T, z_T, z, eps)

onnx / onnxruntime (extra `pdgan[onnx]`) and tensorrt (extra `pdgan[gpu]`, untested) are imported only
when used; this package imports with torch alone.
"""
from __future__ import annotations

from .onnx import (
           GRAPHS,
           OPSET,
           OnnxLoadError,
           OnnxRunner,
           export_onnx,
           load_onnx,
           read_metadata,
           weights_sha256,
)
from .runtime import OnnxRuntimeSampler, TensorRTSampler, default_cache_dir
from .tensorrt import BatchProfile, engine_cache_key

__all__ = ["GRAPHS", "OPSET", "OnnxLoadError", "OnnxRunner", "export_onnx", "load_onnx", "read_metadata",
           "weights_sha256", "OnnxRuntimeSampler", "TensorRTSampler", "default_cache_dir", "BatchProfile",
           "engine_cache_key"]
