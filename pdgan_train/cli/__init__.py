"""The pdgan-* commands of the training package, one module each (train, eval, edit): the parser and `main`,
nothing else; `[project.scripts]` points here. `pdgan_train.cli.main` (pdgan-train's old entry point) resolves
in `pdgan_train.cli.train` for one release."""
from __future__ import annotations

from pdgan_infer.deprecation import moved

__getattr__ = moved(__name__, "pdgan_train.cli.train", ("main", "build_parser", "resolve"))
