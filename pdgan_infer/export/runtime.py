"""Deprecated: the exported-graph samplers moved to `pdgan_infer.backends` (onnxruntime, tensorrt) and the export
cache to `pdgan_infer.export.cache`. The old names still resolve here, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ..deprecation import moved

__getattr__ = moved(__name__, {
    "OnnxRuntimeSampler": "pdgan_infer.backends.onnxruntime", "TensorRTSampler": "pdgan_infer.backends.tensorrt",
    **{name: "pdgan_infer.export.cache" for name in (
        "EXPORT_REVISION", "default_cache_dir", "onnx_cache_key", "cached_onnx", "cache_record_path")}})
