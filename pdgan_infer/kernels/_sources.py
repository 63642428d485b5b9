"""The digest of the csrc/ sources a build of `pdgan_infer._C` compiles: setup.py bakes it into the extension
(`_C.SOURCE_DIGEST`), and `pdgan_infer.kernels.native` recomputes it in a source checkout, so an extension
built from other sources (a stale `.so` after `git pull` or an edit of csrc/) is reported instead of used.

Standard library only: setup.py loads this file by path, before torch or the package can be imported.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["source_files", "source_digest"]


def source_files(csrc: Path, with_cuda: bool) -> list[Path]:
    """The files a build compiles or includes: *.cpp and *.h (and, with CUDA, *.cu and *.cuh) under csrc/,
    except csrc/testing/ (the host emulation of CUDA, used by the tests only) and, without CUDA, the
    *_cuda.cpp bindings and *_cuda.h launcher headers. Sorted by path."""
    suffixes = {".cpp", ".h"} | ({".cu", ".cuh"} if with_cuda else set())
    files = []
    for p in csrc.rglob("*"):
        rel = p.relative_to(csrc)
        if not p.is_file() or p.suffix not in suffixes or rel.parts[0] == "testing":
            continue
        if not with_cuda and p.name.endswith(("_cuda.cpp", "_cuda.h")):
            continue
        files.append(p)
    return sorted(files, key=lambda p: p.relative_to(csrc).as_posix())


def source_digest(csrc: str | Path, with_cuda: bool) -> str:
    """sha256 (first 16 hex digits) over the relative paths and contents of `source_files`."""
    csrc = Path(csrc)
    h = hashlib.sha256()
    for p in source_files(csrc, with_cuda):
        h.update(p.relative_to(csrc).as_posix().encode() + b"\0")
        h.update(p.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return h.hexdigest()[:16]
