"""Fault injection on real pdgan-train processes (slow: each kill costs a process start).

- SIGKILL at every file operation of a checkpoint save (before each mkstemp/fsync/replace/rename/unlink,
  and after the last) and at random moments of training, 20 kills in all, each followed by checks that
  `model.safetensors` loads with pdgan_infer's loader, `train_state.pt` reads back, and `--resume` works.
- Two processes on one --out: the second fails at once (the lock), the first goes on.
- SIGHUP, a second SIGTERM during the save, SIGTERM during the latent stage, a file-size limit (a full
  disk as the writer sees it).

The runs are the tiny preset (tests/support/tiny_models.py) on the digits, through a small runner script that
registers the preset (and, for the kills at file operations, counts them and kills itself).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pdgan_infer import load_checkpoint
from pdgan_infer.files import MANIFEST

pytestmark = pytest.mark.slow

SUPPORT = Path(__file__).resolve().parents[1] / "support"
RUNNER = """
import os, signal, sys, tempfile
sys.path.insert(0, {support!r})
from tiny_models import register_tiny
register_tiny()
kill_at, oplog = os.environ.get("PDGAN_TEST_KILL_AT"), os.environ.get("PDGAN_TEST_OPLOG")
if kill_at or oplog:
    # File operations are counted from the first save on (its temporary of train_state.pt), so the
    # indices do not depend on what the start-up cleaned.
    count = [0]
    target, when = (int(kill_at.split(":")[0]), kill_at.split(":")[1]) if kill_at else (0, "")

    def hook(name, fn):
        def wrapped(*a, **k):
            if not count[0] and not (name == "mkstemp" and "train_state" in str(k.get("prefix"))):
                return fn(*a, **k)
            count[0] += 1
            n = count[0]
            if oplog:
                with open(oplog, "a") as f:
                    f.write(f"{{n}} {{name}} {{a[0] if a else k.get('prefix')}}\\n")
            if n == target and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = fn(*a, **k)
            if n == target and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped

    for mod, name in ((os, "replace"), (os, "rename"), (os, "fsync"), (os, "unlink"), (tempfile, "mkstemp")):
        setattr(mod, name, hook(name, getattr(mod, name)))
from pdgan_train.cli.train import main
sys.exit(main(sys.argv[1:]))
"""
TINY_ARGS = ["--preset", "tiny", "--data", "digits", "--batch-size", "4", "--no-feature-loss", "--latent-steps", "0",
             "--log-every", "1", "--sample-every", "100000", "--lazy-reg", "2", "--ema-decay", "0.9",
             "--ckpt-every", "1"]


@pytest.fixture
def runner(tmp_path):
    path = tmp_path / "runner.py"
    path.write_text(RUNNER.format(support=str(SUPPORT)))
    return path


def start(runner, args, env=None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
           **(env or {})}
    return subprocess.Popen([sys.executable, str(runner), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, **kw)


def finish(proc, timeout=600) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def steps_logged(run: Path) -> int:
    try:
        return sum('"step"' in line for line in (run / "metrics.jsonl").read_text().splitlines())
    except OSError:
        return 0


def wait_for(cond, proc, timeout=600, poll=0.002):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before the kill point:\n{proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the run")
        time.sleep(poll)


def state_step(run: Path) -> int:
    from pdgan_train.rundir import read_state
    return read_state(run / "train_state.pt")["step"]


def check_run(run: Path) -> int:
    """After a kill: the resume state reads back, the inference checkpoint loads; returns the state's step."""
    step = state_step(run)
    model = load_checkpoint(run / "model.safetensors")
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    return step


def save_ops(runner, run: Path, tmp_path: Path) -> list[int]:
    """The file operations of one checkpoint save, numbered from its first (calibration: a resume that
    trains one step and saves it, with every operation logged)."""
    oplog = tmp_path / "ops.log"
    proc = start(runner, ["--resume", str(run), "--max-steps", str(state_step(run) + 1)],
                 env={"PDGAN_TEST_OPLOG": str(oplog)})
    rc, err = finish(proc)
    assert rc == 0, err
    ops = [line.split(" ", 2) for line in oplog.read_text().splitlines()]
    # The save: the state, the weights and their sidecar; then the final sample grid (a .png) follows.
    end = next((int(n) for n, _, arg in ops if ".png" in arg), len(ops) + 1)
    last = max(int(n) for n, _, arg in ops if int(n) < end and "model" in arg)
    return list(range(1, last + 1))


def test_sigkill_at_every_write_phase_and_at_random_moments(tiny, runner, tmp_path):  # noqa: F811
    """20 kills; after each the checkpoint loads, the state reads back, and the next --resume starts from
    it (it trains on: its steps show in the metrics) without losing a saved step."""
    run = tmp_path / "K"
    rng = random.Random(16)
    proc = start(runner, [*TINY_ARGS, "--out", str(run), "--max-steps", "100000"])
    wait_for(lambda: steps_logged(run) >= 2 and (run / "model.json").exists(), proc)
    proc.kill()
    proc.wait()
    saved = check_run(run)
    phases = [f"{op}:before" for op in save_ops(runner, run, tmp_path)]
    saved = check_run(run)
    phases.append(phases[-1].replace("before", "after"))
    kills = phases + ["random"] * (20 - len(phases))
    assert len(kills) == 20 and len(phases) >= 6, phases  # state + weights + sidecar: >= 2 ops each
    rng.shuffle(kills)
    for i, kill in enumerate(kills):
        logged = steps_logged(run)
        env = {} if kill == "random" else {"PDGAN_TEST_KILL_AT": kill}
        proc = start(runner, ["--resume", str(run), "--max-steps", "100000"], env=env)
        if kill == "random":
            wait_for(lambda n=logged: steps_logged(run) > n, proc)  # --resume worked: it trains
            time.sleep(rng.uniform(0.0, 0.4))
            proc.kill()
            proc.wait()
        else:
            rc, err = finish(proc)
            assert rc == -signal.SIGKILL, f"kill {i} ({kill}): the run ended with {rc}\n{err}"
            assert steps_logged(run) > logged, f"kill {i} ({kill}): the resume did not train\n{err}"
        step = check_run(run)
        assert step >= saved, f"kill {i} ({kill}): the saved step went back from {saved} to {step}"
        saved = step
    proc = start(runner, ["--resume", str(run), "--max-steps", str(saved + 1)])
    rc, err = finish(proc)
    assert rc == 0, err
    assert check_run(run) == saved + 1
    leftovers = [p.name for p in run.iterdir() if p.name.startswith(".") and p.name not in (".lock", MANIFEST)]
    assert leftovers == [], leftovers


def test_second_training_on_the_same_out_fails_at_once(tiny, runner, tmp_path):  # noqa: F811
    run = tmp_path / "C"
    first = start(runner, [*TINY_ARGS, "--out", str(run), "--max-steps", "100000"])
    wait_for(lambda: steps_logged(run) >= 1, first)
    second = start(runner, [*TINY_ARGS, "--out", str(run), "--max-steps", "3", "--seed", "1"])
    rc, err = finish(second, timeout=300)
    assert rc == 1 and "in use by another pdgan-train" in err and f"pid {first.pid}" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert first.poll() is None  # unaffected
    first.send_signal(signal.SIGTERM)
    rc, err = finish(first)
    assert rc == 130 and "state saved" in err, err
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))  # one writer
    check_run(run)


def test_sighup_saves_like_sigterm(tiny, runner, tmp_path):  # noqa: F811
    """SIGHUP (terminal closed) killed the run without saving."""
    run = tmp_path / "H"
    proc = start(runner, [*TINY_ARGS, "--out", str(run), "--max-steps", "100000", "--ckpt-every", "1000"])
    wait_for(lambda: steps_logged(run) >= 2, proc)
    proc.send_signal(signal.SIGHUP)
    rc, err = finish(proc)
    assert rc == 130 and "interrupted (SIGHUP) at step" in err and "Traceback" not in err, err
    assert check_run(run) >= 2


def test_second_sigterm_during_the_save_is_ignored(tiny, runner, tmp_path):  # noqa: F811
    """A second SIGTERM while the first one's save was writing lost the state, or printed a traceback."""
    run = tmp_path / "T"
    proc = start(runner, [*TINY_ARGS, "--out", str(run), "--max-steps", "100000", "--ckpt-every", "1000"])
    wait_for(lambda: steps_logged(run) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any(p.name.startswith(".train_state.pt.") for p in run.iterdir()), proc, timeout=120,
             poll=0.0005)
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc)
    assert rc == 130 and "state saved" in err and "Traceback" not in err, err
    assert check_run(run) >= 2


def test_sigterm_in_the_latent_stage_says_what_is_saved(tiny, runner, tmp_path):  # noqa: F811
    run = tmp_path / "L"
    args = list(TINY_ARGS)
    args[args.index("--latent-steps") + 1] = "100000"
    proc = start(runner, [*args, "--out", str(run), "--max-steps", "2"])
    wait_for(lambda: '"latent_step"' in ((run / "metrics.jsonl").read_text() if (run / "metrics.jsonl").exists()
                                          else ""), proc)
    proc.send_signal(signal.SIGTERM)
    rc, err = finish(proc)
    assert rc == 130 and "during the latent-denoiser stage" in err and "step 2 is saved" in err, err
    assert state_step(run) == 2


def test_file_size_limit_is_one_line_and_keeps_the_checkpoint(tiny, runner, tmp_path):  # noqa: F811
    """A write that the disk refuses (here RLIMIT_FSIZE, as a full disk refuses it): one line naming the
    file, the partial temporary removed, the previous checkpoint intact and loadable."""
    import resource
    run = tmp_path / "F"
    rc, err = finish(start(runner, [*TINY_ARGS, "--out", str(run), "--max-steps", "2"]))
    assert rc == 0, err
    state_size = (run / "train_state.pt").stat().st_size
    good = (run / "train_state.pt").read_bytes()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (state_size // 2, state_size // 2))

    rc, err = finish(start(runner, ["--resume", str(run), "--max-steps", "4"], preexec_fn=limit))
    lines = err.strip().splitlines()
    assert rc == 1 and "Traceback" not in err, err
    assert f"cannot write {run / 'train_state.pt'}" in lines[-1] and "(step 2) is intact" in lines[-1], err
    assert [p.name for p in run.iterdir() if p.name.startswith(".") and p.name not in (".lock", MANIFEST)] == []
    assert (run / "train_state.pt").read_bytes() == good
    check_run(run)
