"""A pdgan-train run directory: who may write it, what a killed write leaves in it, how its state is
read back. The training loop (`loop.py`) uses these; nothing here changes what is trained.

- `RunLock`: an exclusive `fcntl.flock` on OUT/.lock for as long as a run writes there, so a second
  pdgan-train on the same --out stops at once with one line instead of interleaving checkpoints.
- `remove_stale_temporaries`: what writes killed half-way left behind (while the lock is held no other
  writer exists, so every temporary of the run's files is stale).
- `claim_out`: a new run never silently replaces an existing one (`--resume` or `--overwrite`).
- `writing(path)`: a failed write (full disk, read-only folder) becomes one TrainingError naming the file.
- `read_state(path)`: train_state.pt loaded with `weights_only=True` and checked key by key and type by
  type, so a damaged or foreign file is one line, never a traceback.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from pdgan_infer.files import OutputPathError, foreign_files

from .config import TrainConfig, TrainingError

STATE_FILE = "train_state.pt"
LOCK_FILE = ".lock"
CHECKPOINT_FILES = (STATE_FILE, "model.safetensors")  # either makes a directory a run
RUN_FILES = (STATE_FILE, "model.safetensors", "model.json", "metrics.jsonl", "metrics.png", "config.json")
PHASES = ("gan", "latent", "done")
log = logging.getLogger("pdgan.train")


def short(err: BaseException, limit: int = 160) -> str:
    """An exception as one short line (its type when the message is empty, as a 0-byte file's is)."""
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return (text or type(err).__name__)[:limit]


# --- exclusive use -------------------------------------------------------------------------------
class RunLock:
    """`fcntl.flock(LOCK_EX | LOCK_NB)` on OUT/.lock, which holds the owner's pid. Released by `release()`
    or when the process ends (a killed run leaves no stale lock: the kernel drops it)."""

    def __init__(self, out: Path):
        self.path = out / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        if self.fd is not None:
            return
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except OSError as e:
            raise TrainingError(f"cannot create the lock file {self.path} ({e.strerror}); choose another --out"
                                ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise TrainingError(f"{self.path.parent} is in use by another pdgan-train{holder}: two runs in one "
                                f"directory overwrite each other's checkpoints; wait for it to end or choose "
                                f"another --out") from None
        except OSError as e:  # ENOLCK: a file system without locks (some network mounts)
            log.warning(f"cannot lock {self.path} ({e.strerror}); make sure no other pdgan-train writes to "
                        f"{self.path.parent}")
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text.isdigit():
            return f" (pid {int(text)})"
    return ""


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise TrainingError(f"output directory {out} is not writable ({e.strerror}); choose another --out") from None


# --- what earlier runs left ----------------------------------------------------------------------
_SAMPLE_TMP = re.compile(r"^\.(step_\d+|final)\.png\..+")


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove the temporaries of the run's files (`.NAME.<anything>` for NAME in RUN_FILES, samples'
    `.step_N.png.<anything>`) and the old write probe. Call it only while holding the run's lock."""
    prefixes = tuple(f".{name}." for name in RUN_FILES)
    removed = []
    for folder, match in ((out, lambda n: n.startswith(prefixes) or n == ".write_test"),
                          (out / "samples", _SAMPLE_TMP.match)):
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if match(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def claim_out(out: Path, overwrite: bool) -> bool:
    """Whether `out` holds a run that `overwrite` allows to be deleted; TrainingError when it holds one
    and `overwrite` is not given (a fresh launch never silently replaces a run), or when a file the run
    would write is there and pdgan did not write it (`pdgan_infer.files`: a user's config.json, a
    samples/final.png)."""
    found = [name for name in CHECKPOINT_FILES if (out / name).exists()]
    if found == ["model.safetensors"] and not (out / "model.json").exists() and _model_folder(out):
        raise TrainingError(f"{out} is a model folder written by save_pretrained (config.json + model.safetensors), "
                            "not a pdgan-train run; choose another --out")
    if found and not overwrite:
        raise TrainingError(f"{out} already holds a pdgan-train run ({found[0]}); continue it with --resume {out}, "
                            f"or start over with --overwrite (deletes it), or choose another --out")
    foreign = foreign_files(run_files(out))
    if foreign and not overwrite:
        raise TrainingError(f"{out} holds files that pdgan did not write and the run would replace ({foreign[0]}"
                            f"{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); choose another --out, "
                            "or --overwrite to replace them")
    return bool(found) or bool(foreign)


def _model_folder(out: Path) -> bool:
    """Whether out/config.json is a pdgan model config (a save_pretrained folder), not a run's config."""
    from pdgan_infer.checkpoint import FORMAT
    try:
        return json.loads((out / "config.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def run_files(out: Path) -> list[Path]:
    """The files in `out` that a run writes and --overwrite deletes: RUN_FILES and the sample grids."""
    files = [out / name for name in RUN_FILES if os.path.lexists(out / name)]
    with contextlib.suppress(OSError):
        files += sorted(p for p in (out / "samples").iterdir() if _SAMPLE.fullmatch(p.name))
    return files


_SAMPLE = re.compile(r"(step_\d+|final)\.png")


def remove_run(out: Path) -> None:
    """What --overwrite deletes: the run's checkpoints, metrics and sample grids (not other files)."""
    for path in run_files(out):
        path.unlink(missing_ok=True)


# --- writing -------------------------------------------------------------------------------------
@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A failed write of `path` (full disk, read-only folder, file size limit) becomes one TrainingError
    naming the file; the writer's atomic_path has removed its temporary and left `path` as it was."""
    try:
        yield
    except TrainingError:
        raise
    except OutputPathError as e:  # atomic_path's own message names the file (a full disk, a size limit)
        raise TrainingError(str(e)) from e
    except (OSError, RuntimeError, SafetensorError) as e:  # what file systems, torch.save and safetensors raise
        if isinstance(e, OSError) and e.strerror:
            reason = e.strerror
        else:  # torch.save reports a short write as "[enforce fail at inline_container.cc] unexpected pos"
            reason = short(e)
            with contextlib.suppress(OSError):
                reason += f"; {shutil.disk_usage(path.parent).free >> 20} MiB free on its disk"
            limit = _file_size_limit()
            if limit is not None:  # torch.save's message has no errno: say what else can cut a write short
                reason += f"; this process may write files of at most {limit} bytes (ulimit -f)"
        raise TrainingError(f"cannot write {path} ({reason}); free disk space or make {path.parent} writable") from e


def _file_size_limit() -> int | None:
    """RLIMIT_FSIZE in bytes, None when unlimited (or not POSIX)."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


# --- reading the resume state --------------------------------------------------------------------
_STATE_TYPES: dict[str, type] = {"format": str, "config": str, "step": int, "epoch": int, "batch_pos": int,
                                 "phase": str, "world": int, "model": dict, "ema": dict, "D": dict, "opt_g": dict,
                                 "opt_d": dict, "scaler": dict, "rng": dict}
_RNG_KEYS = ("gen", "data", "torch")


def read_state(path: Path) -> dict[str, Any]:
    """train_state.pt, loaded without unpickling code and checked: every key present with its type,
    counters non-negative, the phase known, RNG states byte tensors, weights tensors, config readable."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TrainingError(f"cannot resume: {path} not found (expected a run directory written by pdgan-train)"
                            ) from None
    except OSError as e:
        raise TrainingError(f"cannot resume: {path} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):  # torch.load would block forever on a named pipe
        raise TrainingError(f"cannot resume: {path} is not a regular file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (truncated zip, empty file, unsafe content: all reported)
        raise TrainingError(f"cannot resume: {path} is corrupt or not a pdgan training state "
                            f"({short(e)}); the file was left untouched") from None
    if not isinstance(state, dict) or state.get("format") != "pdgan-train-state":
        raise TrainingError(f"cannot resume: {path} is not a pdgan training state")
    bad = lambda what: TrainingError(f"cannot resume: {path} is damaged ({what}); resume from a copy of the run, "  # noqa: E731
                                     f"or start over with --overwrite")
    missing = [k for k in _STATE_TYPES if k not in state]
    if missing:
        raise bad(f"it lacks {', '.join(missing)}")
    for key, kind in _STATE_TYPES.items():
        if not isinstance(state[key], kind) or (kind is int and isinstance(state[key], bool)):
            raise bad(f"{key} is a {type(state[key]).__name__}, not a {kind.__name__}")
    if min(state["step"], state["epoch"], state["batch_pos"]) < 0 or state["world"] < 1:
        raise bad("a negative step, epoch or batch position")
    if state["phase"] not in PHASES:
        raise bad(f"unknown phase {state['phase']!r}")
    for key in _RNG_KEYS:
        rng = state["rng"].get(key)
        if not (torch.is_tensor(rng) and rng.dtype == torch.uint8 and rng.dim() == 1):
            raise bad(f"rng.{key} is not a generator state")
    for key in ("model", "ema", "D"):
        if not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state[key].items()):
            raise bad(f"{key} is not a mapping of tensors")
    try:
        state["config"] = TrainConfig.from_dict(json.loads(state["config"]))
    except (ValueError, TypeError, RecursionError) as e:
        raise bad(f"its config: {short(e)}") from None
    return state
