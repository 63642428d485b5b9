"""The files layer: how pdgan writes a file, and which existing paths it may write over.

Writes are atomic (`atomic_path`, `atomic_write_bytes`): a temporary file in the same folder, fsync, rename
(mode 0o666 & ~umask). A kill at any instant leaves the old file or the new one; temporaries of killed
writers are removed by the next successful write of the same file. `sha256_file` hashes a file.

Ownership. Every successful atomic write is recorded in its folder's `.pdgan-files` (MANIFEST: one JSON
line per write with the name, size and modification time; `record_written` for a file written otherwise,
such as an appended log). A file is pdgan's own while its folder records it with its current size and
modification time: a file someone edited, or copied without keeping times, is a user's file again. The
rule every command applies before its work (`check_outputs`; the library's `save_pretrained` too):

- an output file that exists and is not pdgan's own is refused unless `--overwrite` (`overwrite=True`);
- an output folder that holds files but no MANIFEST is a user's folder: refused likewise; a folder output
  that names the files it writes (`contents`) is refused when one of them is a user's file, so a re-write
  replaces only its own files;
- an output equal to or inside an input (the dataset, a checkpoint file or folder, a reference file) is
  refused, `--overwrite` or not;
- an output folder that is a symlink is refused (the writes would land outside the path named).

Also refused before the work: an output that is a folder where a file is expected (or the reverse), below a
file, in a folder this process may not write, or two flags naming one file.

A folder that one tool fills as a whole (the Triton model repository of `pdgan-export --format triton`) carries a
marker listing the files it wrote (`check_owned_output`, `check_owned_files`, `write_owned_marker`, at the end).
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from .errors import PDGANError

MANIFEST = ".pdgan-files"  # in every folder pdgan writes files into: what it wrote there (JSON lines)
MAX_MANIFEST_BYTES = 1 << 20  # a longer manifest is compacted to the last record of each file still there
STALE_TMP_S = 600  # a temporary without a live writer's pid is stale after this long


class OutputPathError(PDGANError, OSError):
    """A file cannot be written where asked (a folder is there, the parent is a file, the disk is full)."""


class OutputError(PDGANError, ValueError):
    """An output path that must not or cannot be written (an input, a user's file, a folder, below a file)."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- atomic writes ---------------------------------------------------------------------------------
def _umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else by setting it back."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", record: bool = True) -> Iterator[Path]:
    """Write to the yielded temporary path (same folder, so the rename is atomic); on success it
    replaces `path` (fsynced, mode 0o666 & ~umask like any new file), is recorded as pdgan's own in its
    folder's MANIFEST (unless `record` is False: a whole-folder marker is its own record), and stale
    temporaries of `path` left by killed writers are removed; on any exception it is removed and `path` is
    untouched. `suffix` matters to writers that add or check one (np.savez wants ".npz")."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputPathError(f"cannot write {path}: a file is in the way of its folder {path.parent}") from None
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, PDGANError) or e.filename is not None or e.errno not in _WRITE_FAILURES:
            raise
        # a full disk or quota, a file-size limit: the writer's message names no file
        reason = e.strerror or str(e).strip()[:200] or type(e).__name__
        raise OutputPathError(f"cannot write {path} ({reason}); free space or choose another output") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if record:
        record_written(path)
    sweep_stale_temporaries(path, suffix)


_WRITE_FAILURES = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS}


def sweep_stale_temporaries(path: str | os.PathLike, suffix: str = ".tmp") -> list[Path]:
    """Remove `.NAME.PID-XXXX<suffix>` files beside `path` whose writer is gone (killed: no cleanup
    ran), and older pid-less `.NAME.XXXX<suffix>` ones; returns what was removed. A live writer's
    temporary (another process saving the same file) is left alone."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    for name in glob.glob(glob.escape(str(path.parent / prefix)) + "*" + glob.escape(suffix)):
        p = Path(name)
        middle = p.name[len(prefix):len(p.name) - len(suffix)]
        pid_text = middle.split("-", 1)[0] if "-" in middle else ""
        try:
            if pid_text.isdigit():
                if _alive(int(pid_text)):
                    continue
            elif time.time() - p.lstat().st_mtime < STALE_TMP_S:
                continue
            p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes, record: bool = True) -> None:
    with atomic_path(path, record=record) as tmp:
        tmp.write_bytes(data)





# --- ownership -------------------------------------------------------------------------------------
def _open_manifest(folder: Path, flags: int) -> int | None:
    """A descriptor of folder/MANIFEST when it is a regular file (never following a symlink, never blocking
    on a FIFO), else None."""
    try:
        fd = os.open(folder / MANIFEST, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: appends of one short line are not interleaved anyway
        yield
        return
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)


def _parse(data: bytes) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of the last record of each name (malformed lines, e.g. a killed append, skipped)."""
    records = {}
    for line in data.splitlines():
        with contextlib.suppress(ValueError, TypeError, AttributeError, RecursionError):
            r = json.loads(line)
            if isinstance(r["name"], str) and type(r["size"]) is int and type(r["mtime_ns"]) is int:
                records[r["name"]] = (r["size"], r["mtime_ns"])
    return records


def _line(name: str, size: int, mtime_ns: int) -> bytes:
    return (json.dumps({"name": name, "size": size, "mtime_ns": mtime_ns}) + "\n").encode()


def record_written(path: str | os.PathLike) -> None:
    """Record `path` (just written by pdgan) as pdgan's own in its folder's MANIFEST. Best effort: where the
    manifest cannot be written the file simply stays unrecorded (a later run then asks for --overwrite)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError:
        return
    fd = _open_manifest(path.parent, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    if fd is None:
        return
    try:
        with _locked(fd):
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a killed append: start a line of our own
            os.write(fd, b"\n" * torn + _line(path.name, st.st_size, st.st_mtime_ns))
            if os.fstat(fd).st_size > MAX_MANIFEST_BYTES:  # rewritten in place, under the lock appenders take
                records = _parse(os.pread(fd, 2 * MAX_MANIFEST_BYTES, 0))
                kept = b"".join(_line(name, *record) for name, record in records.items()
                                if os.path.lexists(path.parent / name))
                os.ftruncate(fd, 0)
                os.write(fd, kept)
    except OSError:
        pass
    finally:
        os.close(fd)


def written_by_pdgan(path: str | os.PathLike) -> bool:
    """Whether `path` is a regular file (not a symlink) that its folder's MANIFEST records with its current
    size and modification time."""
    return not foreign_files([path])


def foreign_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The existing `paths` that pdgan did not write (or that changed since), in order; each folder's MANIFEST
    is read once."""
    records: dict[Path, dict[str, tuple[int, int]]] = {}
    foreign = []
    for path in map(Path, paths):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if path.parent not in records:
            records[path.parent] = _read_records(path.parent)
        if not stat.S_ISREG(st.st_mode) or records[path.parent].get(path.name) != (st.st_size, st.st_mtime_ns):
            foreign.append(path)
    return foreign


def _read_records(folder: Path) -> dict[str, tuple[int, int]]:
    fd = _open_manifest(folder, os.O_RDONLY)
    if fd is None:
        return {}
    try:
        return _parse(os.pread(fd, 2 * MAX_MANIFEST_BYTES, 0))
    except OSError:
        return {}
    finally:
        os.close(fd)


def check_outputs(outputs: Mapping[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike | None] = (),
                  folders: Iterable[str] = (), *, overwrite: bool | None = False,
                  contents: Mapping[str, Iterable[str]] | None = None, how: str = "--overwrite") -> None:
    """OutputError unless every output {flag: path} can be written under the module's rule: not one of
    `inputs` nor inside one (symlinks resolved), not an existing folder (or, for the flags in `folders`, an
    existing non-folder or a symlink), not below a file, in a folder this process may write, no two flags on
    one file; and, unless `overwrite`, no existing file that pdgan did not write (for a folder flag: a folder
    of files without a MANIFEST, or one of its `contents[flag]` names). `how` is what the message offers to
    replace such files ("--overwrite", "overwrite=True"). `overwrite=None` leaves ownership to the caller
    (pdgan-generate's resume)."""
    protected = {Path(p).expanduser().resolve(): Path(p) for p in inputs if p is not None}
    folders, seen, contents = set(folders), {}, contents or {}
    for flag, raw in outputs.items():
        if raw is None:
            continue
        path = Path(raw).expanduser()
        real = path.resolve()
        if real in protected:
            raise OutputError(f"{flag} {path} is the input {protected[real]}: writing it would destroy the input; "
                              "choose another output path")
        for inp, given in protected.items():
            if real.is_relative_to(inp) and not inp.is_file():  # below a file: the "not a folder" error
                raise OutputError(f"{flag} {path} is inside the input {given}: pdgan does not write into its "
                                  "inputs; choose an output outside it")
        if real in seen:
            raise OutputError(f"{seen[real]} and {flag} name the same file {path}; give each its own")
        seen[real] = flag
        if flag in folders:
            _check_folder(flag, path, overwrite, contents.get(flag, ()), how)
        else:
            _check_file(flag, path, overwrite, how)
        parent = path.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"{flag} {path}: {parent} is not a folder, so {path.name} cannot be created there")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {path}: no permission to write in {parent}")


def _check_file(flag: str, path: Path, overwrite: bool | None, how: str) -> None:
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name (e.g. {path / 'out'}{path.suffix})")
    if path.exists() and not path.is_file():
        raise OutputError(f"{flag} {path} exists and is not a regular file; give another file name")
    if overwrite is False and os.path.lexists(path) and not written_by_pdgan(path):
        what = "is a symlink" if path.is_symlink() else "exists and was not written by pdgan"
        raise OutputError(f"{flag} {path} {what}; give {how} to replace it, or another file name")


def _check_folder(flag: str, path: Path, overwrite: bool | None, names: Iterable[str], how: str) -> None:
    if path.is_symlink():
        raise OutputError(f"{flag} {path} is a symlink (to {os.readlink(path)}): the files would be written "
                          "outside it; give the folder itself")
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{flag} {path} exists and is not a folder; give a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: no permission to write in it")
    if overwrite is not False:
        return
    if not os.path.lexists(path / MANIFEST):
        with os.scandir(path) as entries:
            if any(True for _ in entries):
                raise OutputError(f"{flag} {path} holds files that pdgan did not write; give {how} to write into "
                                  "it anyway, or an empty or new folder")
    for foreign in foreign_files(path / name for name in names):
        raise OutputError(f"{flag} {foreign} exists and was not written by pdgan; give {how} to replace it, or "
                          "another folder")

# --- whole-folder markers: an output folder a tool fills with a set of files (the Triton model repository) ------
# The marker is a small JSON file in the folder listing (relative to it) the files the tool wrote there:
#     owned = check_owned_output(out, ".pdgan-triton.json", overwrite=args.overwrite)  # before any work
#     ...  # write the files, replacing only those in `owned` (and new paths)
#     write_owned_marker(out, ".pdgan-triton.json", files, tool="pdgan-export")       # after them
# A folder that exists, holds anything, and has no readable marker was not written by pdgan: refused unless
# `overwrite=True`. A folder that is itself a symlink is refused always. Files in an owned folder that the
# marker does not list are the user's: kept, and not replaced without `overwrite` (`check_owned_files`).
MARKER_MAX_BYTES = 1 << 20


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

    record = {"written_by": "pdgan", "tool": tool, "version": __version__, "files": sorted(set(files))}
    path = Path(folder) / marker
    atomic_write_bytes(path, (json.dumps(record, indent=1) + "\n").encode(), record=False)  # the marker is the record
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
