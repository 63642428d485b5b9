"""Output folders a tool owns: it writes into a folder only when the folder is new, empty, or was written by pdgan.

    owned = check_owned_output(out, ".pdgan-triton.json", overwrite=args.overwrite)  # before any work
    ...  # write the files, replacing only those in `owned` (and new paths)
    write_owned_marker(out, ".pdgan-triton.json", files, tool="pdgan-export")       # after them

The marker is a small JSON file in the folder listing (relative to it) the files the tool wrote there. A folder
that exists, holds anything, and has no readable marker was not written by pdgan: it is refused unless the user
passes `overwrite=True` (`--overwrite`). A folder that is itself a symlink is refused always (writing through it
would change files outside the output). Files in an owned folder that the marker does not list are the user's:
a tool keeps them and refuses to replace one without `overwrite` (`check_owned_files`).
"""
from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .errors import PDGANError

MARKER_MAX_BYTES = 1 << 20


class OutputError(PDGANError, ValueError):
    """An output path that must not or cannot be written (an input, a folder, below a file, not pdgan's)."""


def check_owned_output(folder: str | os.PathLike, marker: str, overwrite: bool = False) -> list[str]:
    """Before a tool writes into the output folder FOLDER: the files (relative POSIX paths) that pdgan wrote there
    last time, per FOLDER/MARKER; [] for a new or empty folder, or with `overwrite` for one without a marker.
    OutputError when FOLDER is a symlink (always), not a folder, or a non-empty folder without a readable MARKER
    (unless `overwrite`)."""
    folder = Path(folder)
    if folder.is_symlink():
        raise OutputError(f"output folder {folder} is a symlink (to {os.readlink(folder)}); give the real folder, "
                          "pdgan does not write through symlinked output folders")
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} exists and is not a folder; give a folder")
    owned = _read_marker(folder / marker)
    if owned is not None:
        return owned
    if overwrite or not any(folder.iterdir()):
        return []
    raise OutputError(f"output folder {folder} exists, is not empty and was not written by pdgan (no {marker}); "
                      "choose a new or empty folder, or pass --overwrite to write pdgan's files into it")


def check_owned_files(folder: str | os.PathLike, files: Iterable[str], owned: Iterable[str],
                      overwrite: bool = False) -> None:
    """Before writing `files` (relative paths) into FOLDER: OutputError when a folder on the way is a symlink, or
    when one of them exists and is not a regular file, or (unless `overwrite`) is not in `owned`."""
    folder, owned = Path(folder), set(owned)
    for rel in files:
        path = folder
        for part in PurePosixPath(rel).parts[:-1]:
            path = path / part
            if path.is_symlink():
                raise OutputError(f"{path} is a symlink; pdgan does not write through symlinked folders (remove it "
                                  "or choose another output folder)")
        target = folder / rel
        if not os.path.lexists(target):
            continue
        if not stat.S_ISREG(os.lstat(target).st_mode):
            raise OutputError(f"{target} exists and is not a regular file; remove it or choose another output folder")
        if rel not in owned and not overwrite:
            raise OutputError(f"{target} exists and was not written by pdgan; remove it, choose another output "
                              "folder, or pass --overwrite")


def write_owned_marker(folder: str | os.PathLike, marker: str, files: Iterable[str], tool: str) -> Path:
    """FOLDER/MARKER (atomically): {"written_by": "pdgan", "tool": TOOL, "version": ..., "files": [...]}."""
    from ._version import __version__
    from .checkpoint import atomic_write_bytes

    record = {"written_by": "pdgan", "tool": tool, "version": __version__, "files": sorted(set(files))}
    path = Path(folder) / marker
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode())
    return path


def _read_marker(path: Path) -> list[str] | None:
    """The file list of a marker, or None when there is no valid one (missing, not a regular file, too large,
    not pdgan's JSON, or a path that leaves the folder)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MARKER_MAX_BYTES:
            return None
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) and record.get("written_by") == "pdgan" else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    if any(PurePosixPath(f).is_absolute() or ".." in PurePosixPath(f).parts or not f for f in files):
        return None
    return files


__all__ = ["OutputError", "check_owned_output", "check_owned_files", "write_owned_marker"]
