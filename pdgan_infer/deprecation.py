"""Names that moved, with a DeprecationWarning, so that old code keeps working for one release:
`renamed_keywords` for a keyword option with a new name, and `moved`, a module `__getattr__` that resolves an old
module's names in their new home, imported on first use (the old module does not import the new one, so a library
module can keep its command line's old names without depending on it).
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


def renamed_keywords(options: Mapping[str, object], renames: Mapping[str, str], where: str,
                     stacklevel: int = 3) -> dict[str, object]:
    """`options` with each keyword renamed by `renames` (old -> new) under its new name, with a DeprecationWarning
    naming both (old names keep working for one release); TypeError when a call gives both names."""
    out = dict(options)
    for old, new in renames.items():
        if old not in out:
            continue
        if new in out:
            raise TypeError(f"{where}: give {new}= only ({old}= is its old name)")
        warnings.warn(f"{where}: the option {old}= is now called {new}=; {old}= will be removed in the next release",
                      DeprecationWarning, stacklevel=stacklevel)
        out[new] = out.pop(old)
    return out
