"""The pdgan-* commands of the runtime, one module each: the parser and `main` (parse, call the library,
print, exit status through `pdgan_infer._cli.run_cli`), nothing else. `[project.scripts]` points here."""
from __future__ import annotations

import importlib
import warnings


def moved_to(old: str, new: str):
    """A module `__getattr__` for an old command-line module `old`: every name resolves in the module `new`, with
    a DeprecationWarning (the old entry points keep working for one release)."""
    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(new), name)  # AttributeError for a name that never was there
        warnings.warn(f"{old}.{name} moved to {new}.{name}", DeprecationWarning, stacklevel=2)
        return value
    return __getattr__
