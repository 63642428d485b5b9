"""Deprecated: the OpenVINO peer runner moved to `pdgan_infer.backends.openvino`. The old names still resolve here,
with a DeprecationWarning, for one release."""
from __future__ import annotations

from ..deprecation import moved

__getattr__ = moved(__name__, "pdgan_infer.backends.openvino",
                    ("INSTALL", "PRECISIONS", "probe", "OpenVinoSampler", "OpenVinoRunner"))
