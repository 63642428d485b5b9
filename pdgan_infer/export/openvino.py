"""Deprecated: the OpenVINO peer runner moved to `pdgan_infer.backends.openvino`. The old names still resolve here,
with a DeprecationWarning, for one release."""
from __future__ import annotations

import importlib
import warnings

_MOVED = ("INSTALL", "PRECISIONS", "probe", "OpenVinoSampler", "OpenVinoRunner")


def __getattr__(name: str):
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"pdgan_infer.export.openvino.{name} moved to pdgan_infer.backends.openvino.{name}",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module("pdgan_infer.backends.openvino"), name)
