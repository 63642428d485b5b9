"""Export: the artifact writers. ONNX graphs of the generator step and of the whole sampler (checked and
verified), their cache (`cache`), TensorRT engines (`tensorrt`), the NVIDIA Triton Inference Server model
repository (`triton`), and the `pdgan-export` command. The runners that load these artifacts are backends
(`pdgan_infer.backends`: onnxruntime, tensorrt, openvino); nothing here imports a runner, the engine or the
server.

    from pdgan_infer.export import export_onnx
    export_onnx(model, "cifar10.onnx", graph="sampler", dtype="float16")

onnx / onnxruntime (extra `pdgan[onnx]`) and tensorrt (extra `pdgan[gpu]`, untested) are imported only
when used; this package imports with torch alone.
"""
from __future__ import annotations

from .cache import default_cache_dir
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
from .tensorrt import BatchProfile, engine_cache_key

_MOVED = {"OnnxRuntimeSampler": "pdgan_infer.backends.onnxruntime", "TensorRTSampler": "pdgan_infer.backends.tensorrt"}


def __getattr__(name: str):  # deprecated names, for one release
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import warnings
    warnings.warn(f"pdgan_infer.export.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)

__all__ = ["GRAPHS", "OPSET", "OnnxLoadError", "OnnxRunner", "export_onnx", "load_onnx", "read_metadata",
           "weights_sha256", "default_cache_dir", "BatchProfile",
           "engine_cache_key"]
