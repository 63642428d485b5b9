"""Deprecated: the NVIDIA Triton Inference Server model repository writer moved to `pdgan_infer.serve.repository`.
The old names still resolve here, with a DeprecationWarning, for one release."""
from __future__ import annotations

import importlib
import warnings


def __getattr__(name: str):
    module = importlib.import_module("pdgan_infer.serve.repository")
    if not hasattr(module, name):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"pdgan_infer.export.triton.{name} moved to pdgan_infer.serve.repository.{name}",
                  DeprecationWarning, stacklevel=2)
    return getattr(module, name)
