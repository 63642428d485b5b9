"""Deprecated: the NVIDIA Triton Inference Server model repository writer moved to `pdgan_infer.serve.repository`.
The old names still resolve here, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ..deprecation import moved

__getattr__ = moved(__name__, "pdgan_infer.serve.repository")
