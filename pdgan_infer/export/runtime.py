"""Deprecated: the exported-graph samplers moved to `pdgan_infer.backends` (onnxruntime, tensorrt) and the export
cache to `pdgan_infer.export.cache`. The old names still resolve here, with a DeprecationWarning, for one release."""
from __future__ import annotations

import importlib
import warnings

_MOVED = {"OnnxRuntimeSampler": "pdgan_infer.backends.onnxruntime", "TensorRTSampler": "pdgan_infer.backends.tensorrt",
          **{name: "pdgan_infer.export.cache" for name in (
              "EXPORT_REVISION", "default_cache_dir", "onnx_cache_key", "cached_onnx", "cache_record_path")}}


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"pdgan_infer.export.runtime.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning,
                  stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)
