"""Deprecated: pdgan-serve's command line moved to `pdgan_infer.cli.serve`. Its names still resolve here, with a
DeprecationWarning, for one release; `python -m pdgan_infer.serve.cli` still runs the command."""
from __future__ import annotations

import sys

from ..deprecation import moved

__getattr__ = moved("pdgan_infer.serve.cli", "pdgan_infer.cli.serve")

if __name__ == "__main__":
    sys.exit(__getattr__("main")())
