"""Progress of long loops: the one home of every bar and progress line of the tools and the Engine.

    with Progress(total=10_000, desc="latent denoiser", show=not quiet) as bar:
        for step in range(10_000):
            ...
            bar.update(1, loss=f"{loss:.4f}")

What `show` gives:
- True (the command-line tools): where someone watches stderr (a terminal, or a Jupyter kernel) a
  `tqdm.auto` bar; elsewhere (a log file, CI, nohup) log lines on `logging.getLogger("pdgan.progress")`:
  one when the phase starts, one every `interval()` seconds (PDGAN_PROGRESS_INTERVAL, default 10 s),
  and one when it ends, e.g. "latent denoiser: step 2000/10000 (20%), 35 s, eta 2 min". A unit that takes
  longer than the interval (a first training step, a large batch) does not make a silent stretch: a
  background thread logs the line again when no update came for an interval.
- None (the library's default, `Engine.generate`): the bar where someone watches, nothing elsewhere (a
  library does not fill a script's log).
- False (-q): nothing.
Only the main process shows anything (rank 0 under torchrun, `pdgan_infer.distributed.process_rank`).
The lines are log records, so a command's -q (level WARNING) silences them as well.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .distributed import process_rank

T = TypeVar("T")
log = logging.getLogger("pdgan.progress")
INTERVAL_ENV = "PDGAN_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0  # seconds between two progress lines off a terminal


def interval() -> float:
    """Seconds between two progress lines: $PDGAN_PROGRESS_INTERVAL (>= 0; 0: a line at every update) or 10."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{INTERVAL_ENV} must be a number of seconds >= 0, got {text!r}; set it to e.g. 10 or "
                         "unset it")
    return value


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython's shell with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return getattr(shell, "kernel", None) is not None


def watching() -> bool:
    """Whether someone watches stderr: a terminal, or a notebook (which shows the bar as a widget or text)."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        pass
    return in_notebook()


def mode(show: bool | None) -> str:
    """"bar", "log" or "off" for `show` (the module docstring) in this process."""
    if show is False or process_rank() != 0:
        return "off"
    if watching():
        return "bar"
    return "log" if show else "off"


def duration(seconds: float) -> str:
    """'35 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _plural(unit: str, count: int | None) -> str:
    if count == 1 or unit.endswith("s") or unit == "img":
        return unit
    return unit + ("es" if unit.endswith(("ch", "sh", "x")) else "s")


class Progress:
    """A phase of `total` units (None: unknown). `update(n, **values)` counts n more and shows `values`
    (losses, speeds) in the bar or the next line; `close()` (or leaving the `with`) ends the phase. The
    clock and the interval are arguments for tests; the heartbeat thread (module docstring) runs with the
    real clock and an interval > 0 only."""

    def __init__(self, total: int | None, desc: str, unit: str = "step", show: bool | None = True, *,
                 initial: int = 0, leave: bool = True, clock: Callable[[], float] = time.monotonic,
                 every: float | None = None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.mode = mode(show)
        self.values: dict[str, Any] = {}
        self._initial, self._clock, self._closed, self._bar = initial, clock, False, None
        self._every = every if every is not None or self.mode != "log" else interval()
        if self.mode == "bar":
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=leave, dynamic_ncols=True)
        self._start = self._last = clock()
        self._lock, self._stop = threading.Lock(), threading.Event()
        if self.mode == "log":
            what = "" if total is None else (f", {unit} {initial}/{total}" if initial else
                                              f", {total} {_plural(unit, total)}")
            log.info(f"{desc}: started{what}")
            if clock is time.monotonic and self._every > 0:
                threading.Thread(target=_heartbeat, args=(weakref.ref(self), self._stop, self._every),
                                 name=f"pdgan progress: {desc}", daemon=True).start()

    def update(self, n: int = 1, **values: Any) -> None:
        with self._lock:  # the heartbeat thread reads them
            self.n += n
            self.values.update(values)
        if self._bar is not None:
            if values:
                self._bar.set_postfix(self.values, refresh=False)
            self._bar.update(n)
        elif self.mode == "log":
            self._log_if_due()

    def _log_if_due(self) -> None:
        """Log the progress line if the last one is an interval old (from `update` and the heartbeat thread)."""
        with self._lock:
            now = self._clock()
            if self._closed or now - self._last < self._every:
                return
            self._last = now
            text = self.line(now)
        log.info(text)

    def line(self, now: float | None = None) -> str:
        """The progress line of this moment: 'DESC: step N/TOTAL (P%), ELAPSED, eta REMAINING[, values]'."""
        elapsed = (self._clock() if now is None else now) - self._start
        if self.total:
            text = f"{self.desc}: {self._count()} ({100 * self.n / self.total:.0f}%), {duration(elapsed)}"
            done = self.n - self._initial
            if 0 < done and self.n < self.total:
                text += f", eta {duration(elapsed / done * (self.total - self.n))}"
        else:
            text = f"{self.desc}: {self.n} {_plural(self.unit, self.n)}, {duration(elapsed)}"
        return text + "".join(f", {k}={v}" for k, v in self.values.items())

    def _count(self) -> str:
        if self.unit == "step":
            return f"step {self.n}/{self.total}"
        return f"{self.n}/{self.total} {_plural(self.unit, self.total)}"

    def close(self, failed: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log":
            elapsed = duration(self._clock() - self._start)
            done = self.n - self._initial
            count = f" {done} {_plural(self.unit, done)}" if done or self.total else ""
            log.info(f"{self.desc}: {'stopped after' if failed else 'done,'}{count} in {elapsed}"
                     if count else f"{self.desc}: {'stopped' if failed else 'done'} after {elapsed}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(failed=kind is not None)


def _heartbeat(ref: weakref.ref, stop: threading.Event, every: float) -> None:
    """Every `every` seconds until `stop`, the progress line of `ref()` if no update logged one meanwhile; it
    holds the Progress weakly, so a phase that is dropped without close() ends its thread too."""
    while not stop.wait(every):
        bar = ref()
        if bar is None:
            return
        bar._log_if_due()
        del bar


def track(items: Iterable[T], desc: str, unit: str = "step", show: bool | None = True,
          total: int | None = None, **options: Any) -> Iterator[T]:
    """`items`, counted by a `Progress` (total: len(items) when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, show, **options) as bar:
        for item in items:
            yield item
            bar.update(1)
