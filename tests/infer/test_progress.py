"""pdgan_infer.progress: log lines at the interval (an injected clock), start and end lines, nothing when quiet
or on another torchrun rank, a tqdm bar on a real terminal (a pty), and the interval's environment override."""
from __future__ import annotations

import fcntl
import logging
import os
import select
import struct
import sys
import termios

import pytest

from pdgan_infer import progress as P


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines(caplog, monkeypatch):
    """The messages of the progress logger, stderr not a terminal, no torchrun rank."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv(P.INTERVAL_ENV, raising=False)
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # noqa: SIM115 - closed by the interpreter
    caplog.set_level(logging.INFO, logger="pdgan.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "pdgan.progress"]


def test_lines_at_the_interval_with_start_and_end(lines):
    clock = Clock()
    with P.Progress(100, "latent denoiser", "step", True, clock=clock, every=10.0) as bar:
        assert bar.mode == "log"
        for _ in range(100):
            clock.now += 3.0  # one step: 3 s, so lines after steps 4, 8, 12, ... (12 s, 24 s, ...: >= 10 s apart)
            bar.update(1, **({"loss": "0.5000"} if bar.n == 49 else {}))
    got = lines()
    assert got[0] == "latent denoiser: started, 100 steps"
    # step 4 at 12 s: 12 / 4 * 96 = 288 s left ("5 min"); step 8 at 24 s: 24 / 8 * 92 = 276 s ("5 min")
    assert got[1] == "latent denoiser: step 4/100 (4%), 12 s, eta 5 min"
    assert got[2] == "latent denoiser: step 8/100 (8%), 24 s, eta 5 min"
    assert len(got) == 1 + 25 + 1  # every 4th step, the last one (step 100: no eta) included
    assert got[-2] == "latent denoiser: step 100/100 (100%), 5 min, loss=0.5000"
    assert got[-1] == "latent denoiser: done, 100 steps in 5 min"
    assert "loss=0.5000" not in got[12] and got[13].endswith("loss=0.5000")  # shown from the update that set it


def test_a_unit_longer_than_the_interval_is_not_a_silent_stretch(lines):
    """No update for several intervals (one long training step): the heartbeat thread logs the line each
    interval; after close() it stops."""
    import threading
    import time

    with P.Progress(4, "training", "step", True, every=0.05) as bar:
        time.sleep(0.6)  # one 'step' of 12 intervals
        during = [m for m in lines() if m.startswith("training: step 0/4 (0%)")]
        bar.update(1)
    assert len(during) >= 2, lines()
    assert lines()[-1].startswith("training: done, 1 step in ")
    after = len(lines())
    time.sleep(0.2)
    assert len(lines()) == after  # the thread ended with the phase
    assert not [t for t in threading.enumerate() if t.name == "pdgan progress: training"]


def test_interval_zero_is_a_line_per_update_and_units_read_right(lines):
    clock = Clock()
    with P.Progress(30, "evaluation", "img", True, clock=clock, every=0.0) as bar:
        bar.update(10)
        clock.now += 80.0
        bar.update(20)
    assert lines() == ["evaluation: started, 30 img", "evaluation: 10/30 img (33%), 0 s, eta 0 s",
                       "evaluation: 30/30 img (100%), 80 s", "evaluation: done, 30 img in 80 s"]


def test_unknown_total_resumed_total_and_a_failed_phase(lines):
    clock = Clock()
    with P.Progress(None, "ONNX export", clock=clock, every=0.0):
        clock.now += 4.0
    with P.Progress(10, "training", "step", True, initial=6, clock=clock, every=0.0) as bar:
        clock.now += 20.0
        bar.update(2)  # 2 steps in 20 s since the resume: 2 steps left take 20 s
    with pytest.raises(RuntimeError), P.Progress(5, "checkpoint", "file", True, clock=clock, every=0.0) as bar:
        bar.update(1)
        raise RuntimeError("disk full")
    assert lines() == ["ONNX export: started", "ONNX export: done after 4 s",
                       "training: started, step 6/10", "training: step 8/10 (80%), 20 s, eta 20 s",
                       "training: done, 2 steps in 20 s",
                       "checkpoint: started, 5 files", "checkpoint: 1/5 files (20%), 0 s, eta 0 s",
                       "checkpoint: stopped after 1 file in 0 s"]


def test_track_counts_the_items(lines):
    assert list(P.track(["a", "b", "c"], "interpolate", "pair", True, every=0.0)) == ["a", "b", "c"]
    got = lines()
    assert got[0] == "interpolate: started, 3 pairs" and got[-1].startswith("interpolate: done, 3 pairs in ")
    assert [line.split(" (")[0] for line in got[1:-1]] == [f"interpolate: {i}/3 pairs" for i in (1, 2, 3)]


def test_quiet_another_rank_and_the_library_default_show_nothing(lines, monkeypatch, capfd):
    for show in (False, None):  # -q; a library call (Engine.generate) off a terminal
        with P.Progress(10, "quiet", "step", show, every=0.0) as bar:
            assert bar.mode == "off" and bar._bar is None
            bar.update(10)
    monkeypatch.setenv("RANK", "1")  # torchrun: rank 0 alone reports
    assert P.mode(True) == "off"
    with P.Progress(10, "rank 1", "step", True, every=0.0) as bar:
        bar.update(10)
    assert lines() == [] and capfd.readouterr().err == ""


def test_a_terminal_gets_a_tqdm_bar_and_no_lines(lines, monkeypatch):
    """stderr a real terminal (a pty): a tqdm bar written to it, no log lines, even for the library default."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns: the whole bar
    with open(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        assert P.watching() and P.mode(None) == "bar" and P.mode(True) == "bar" and P.mode(False) == "off"
        with P.Progress(100, "pdgan-generate", "img", None, every=0.0) as bar:
            from tqdm.auto import tqdm
            assert isinstance(bar._bar, tqdm)
            bar.update(40, loss="0.1")
        tty.flush()
        out = b""
        while select.select([master], [], [], 0.5)[0]:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            out += chunk
    os.close(master)
    text = out.decode(errors="replace")
    assert "pdgan-generate" in text and "40/100" in text and "loss=0.1" in text
    assert lines() == []


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.delenv(P.INTERVAL_ENV, raising=False)
    assert P.interval() == 10.0
    monkeypatch.setenv(P.INTERVAL_ENV, "0")
    assert P.interval() == 0.0
    monkeypatch.setenv(P.INTERVAL_ENV, " 2.5 ")
    assert P.interval() == 2.5
    for bad in ("soon", "-1", "nan", "inf"):
        monkeypatch.setenv(P.INTERVAL_ENV, bad)
        with pytest.raises(ValueError, match=f"PDGAN_PROGRESS_INTERVAL must be a number of seconds >= 0, got '{bad}'"):
            P.interval()
        with P.Progress(3, "quiet", "step", False) as bar:  # a phase that shows nothing never reads it
            bar.update(3)


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (35, "35 s"), (89, "89 s"), (90, "2 min"), (725, "12 min"),
                                           (5399, "90 min"), (5400, "1.5 h"), (12600, "3.5 h")])
def test_duration(seconds, text):
    assert P.duration(seconds) == text


def test_not_in_a_notebook_without_a_kernel():
    assert not P.in_notebook()  # pytest runs in no IPython kernel


def test_in_a_jupyter_kernel():
    """A real in-process IPython kernel (ipykernel): code run in it is in a notebook, so the bar shows."""
    inprocess = pytest.importorskip("ipykernel.inprocess", reason="ipykernel is not installed")
    km = inprocess.InProcessKernelManager()
    km.start_kernel()
    try:
        shell = km.kernel.shell
        shell.run_cell("from pdgan_infer import progress as P; seen = (P.in_notebook(), P.mode(None))")
        assert shell.user_ns["seen"] == (True, "bar")
    finally:
        km.shutdown_kernel()
