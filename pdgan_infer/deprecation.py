"""Names that moved: a module `__getattr__` that resolves an old module's names in their new home, imported on
first use, with a DeprecationWarning. Old import paths keep working for one release this way; the old module
does not import the new one (so a library module can keep its command line's old names without depending on it).
"""
from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterable, Mapping


def moved(old: str, new: str | Mapping[str, str], names: Iterable[str] | None = None):
    """`__getattr__` for the module `old`. `new` is the module every name moved to (every name it has, or only
    `names`), or a mapping name -> module for names that went to different places."""
    homes = dict(new) if isinstance(new, Mapping) else None
    allowed = None if names is None else frozenset(names)

    def __getattr__(name: str):
        home = homes.get(name) if homes is not None else new
        if home is None or name.startswith("__") or (allowed is not None and name not in allowed):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)  # AttributeError for a name that never was there
        warnings.warn(f"{old}.{name} moved to {home}.{name}", DeprecationWarning, stacklevel=2)
        return value
    return __getattr__
