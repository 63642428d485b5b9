"""A training run's integrity (pdgan_train.loop, rundir): where a resumed run writes, what may
replace a checkpoint, one writer per run directory, malformed resume files, failed writes, saving on
errors and signals. (Config ranges: test_config.py; data sets that would hang or fail late: test_data.py.)

Every run here is the tiny preset (tests/support/tiny_models.py) on the digits (seconds on a CPU). The reference for
"nothing was lost" is an uninterrupted run with the same seed: the resumed run must equal it bit for bit.
"""
# regression: the reliability review's section 2 (its defect numbers are named in the tests)
from __future__ import annotations

import json
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from hang_guard import in_thread as _in_thread  # tests/support
from tiny_models import tiny_cfg  # tests/support (the tiny fixture: tests/conftest.py)

from pdgan_infer import load_checkpoint
from pdgan_infer.files import MANIFEST
from pdgan_train.cli.train import main as train_main
from pdgan_train.config import TrainingError

CLI_TINY = ["--preset", "tiny", "--batch-size", "4", "--no-feature-loss", "--latent-steps", "0", "--log-every", "1",
            "--sample-every", "1000", "--lazy-reg", "2", "--ema-decay", "0.9"]


def _state(run) -> dict:
    return torch.load(run / "train_state.pt", weights_only=True)


def _assert_same_weights(a, b):
    sa, sb = _state(a), _state(b)
    assert sa["step"] == sb["step"]
    for key in ("model", "ema", "D"):
        assert sa[key].keys() == sb[key].keys()
        for k in sa[key]:
            assert torch.equal(sa[key][k], sb[key][k]), (key, k)


def _one_error_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("pdgan-train: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def reference(tiny, tmp_path):  # noqa: F811
    """An uninterrupted 4-step run (the result every interrupted-and-resumed run must reproduce)."""
    from pdgan_train.loop import Trainer
    Trainer(tiny_cfg(tmp_path / "ref")).train()
    return tmp_path / "ref"


# --- where a resumed run writes ------------------------------------------------------------------------
def test_resume_of_a_copy_writes_the_copy(tiny, tmp_path, capsys):  # noqa: F811
    """Defect 1: `--resume COPY` advanced the original run (config.json's out won)."""
    from pdgan_train.loop import Trainer
    Trainer(tiny_cfg(tmp_path / "A", ckpt_every=1)).train(until=2)
    shutil.copytree(tmp_path / "A", tmp_path / "A_copy")
    before = (tmp_path / "A" / "train_state.pt").read_bytes()
    assert train_main(["--resume", str(tmp_path / "A_copy"), "--max-steps", "3"]) == 0
    assert _state(tmp_path / "A_copy")["step"] == 3
    assert (tmp_path / "A" / "train_state.pt").read_bytes() == before  # the original is untouched
    assert "names the run directory" not in capsys.readouterr().err  # stored relative: no warning


def test_relative_paths_are_relative_to_the_run_dir(tiny, tmp_path, monkeypatch):  # noqa: F811
    """Defect 1 (other cwd): a relative --out and --data were stored relative to the launch directory, so
    resuming from elsewhere forked the run into ./runs/A and could not find the data."""
    from PIL import Image
    launch, other = tmp_path / "launch", tmp_path / "elsewhere"
    rng = np.random.default_rng(0)
    for i in range(8):
        (launch / "ds").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(launch / "ds" / f"{i}.png")
    other.mkdir()
    monkeypatch.chdir(launch)
    assert train_main([*CLI_TINY, "--data", "ds", "--out", "runs/A", "--max-steps", "2"]) == 0
    stored = json.loads((launch / "runs" / "A" / "config.json").read_text())["train"]
    assert stored["out"] == "." and stored["data"] == os.path.join("..", "..", "ds")
    monkeypatch.chdir(other)
    assert train_main(["--resume", str(launch / "runs" / "A"), "--max-steps", "3"]) == 0
    assert _state(launch / "runs" / "A")["step"] == 3
    assert not (other / "runs").exists()  # no fork in the working directory


def test_resume_warns_when_config_json_names_another_directory(tiny, tmp_path, capsys):  # noqa: F811
    """A config.json of an older version records the launch's --out; resuming DIR writes to DIR and says so."""
    from pdgan_train.loop import Trainer
    Trainer(tiny_cfg(tmp_path / "A", ckpt_every=1)).train(until=2)
    cfg_file = tmp_path / "A" / "config.json"
    old = json.loads(cfg_file.read_text())
    old.pop("paths")
    old["train"]["out"] = str(tmp_path / "somewhere_else")
    cfg_file.write_text(json.dumps(old))
    assert train_main(["--resume", str(tmp_path / "A"), "--max-steps", "3"]) == 0
    assert "names the run directory" in capsys.readouterr().err
    assert _state(tmp_path / "A")["step"] == 3 and not (tmp_path / "somewhere_else").exists()


# --- a bad step never replaces a good checkpoint -------------------------------------------------------
def test_exploding_weights_never_replace_a_good_checkpoint(tiny, tmp_path):  # noqa: F811
    """Defect 2: with lr 1e10 the step-9 checkpoint (weights up to 9e9) replaced the good step-8 one, and
    the message called it intact. The weights are now checked after each optimiser step."""
    from pdgan_train.loop import Trainer
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, ckpt_every=1, max_steps=10)).train(until=2)
    good_model, good_state = (run / "model.safetensors").read_bytes(), (run / "train_state.pt").read_bytes()
    tr = Trainer(tiny_cfg(run, ckpt_every=1, max_steps=10), resume=str(run))
    object.__setattr__(tr.cfg, "lr_g", 1e10)  # past validation: what a diverging run does to the weights
    with pytest.raises(TrainingError, match=r"non-finite or exploding weights at step 3.*\(step 2\) is intact"):
        tr.train()
    assert (run / "model.safetensors").read_bytes() == good_model
    assert (run / "train_state.pt").read_bytes() == good_state
    m = load_checkpoint(run)
    assert all(bool(torch.isfinite(p).all()) and p.abs().max() < 100 for p in m.parameters())


def test_save_refuses_a_non_finite_ema(tiny, tmp_path):  # noqa: F811
    from pdgan_train.loop import Trainer
    tr = Trainer(tiny_cfg(tmp_path))
    tr.train(until=1)
    before = (tmp_path / "model.safetensors").read_bytes()
    with torch.no_grad():
        next(tr.ema.generator.parameters())[0] = float("nan")
    with pytest.raises(TrainingError, match=r"refusing to save step 1: the EMA generator's weights are not finite"):
        tr.save()
    assert (tmp_path / "model.safetensors").read_bytes() == before


# --- one writer per run directory ----------------------------------------------------------------------
def test_two_trainings_on_one_out_cannot_both_write(tiny, tmp_path, capsys):  # noqa: F811
    """Defect 7: two pdgan-train on one --out interleaved their checkpoints and metrics. The second now
    fails at once, before reading data or building a model, with one line naming the owner."""
    from pdgan_train.loop import Trainer
    first = Trainer(tiny_cfg(tmp_path / "run", max_steps=2))
    assert train_main([*CLI_TINY, "--data", "digits", "--out", str(tmp_path / "run"), "--max-steps", "2"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "in use by another pdgan-train" in line and f"pid {os.getpid()}" in line
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    first.train()  # the owner is unaffected
    assert _state(tmp_path / "run")["phase"] == "done"
    assert train_main(["--resume", str(tmp_path / "run"), "--max-steps", "3"]) == 0  # released at the end


def test_fresh_run_does_not_replace_an_existing_run(tiny, tmp_path, capsys):  # noqa: F811
    """Defect 5: relaunching without --resume replaced a run silently; now refused, --overwrite starts over."""
    out = str(tmp_path / "run")
    assert train_main([*CLI_TINY, "--data", "digits", "--out", out, "--max-steps", "2"]) == 0
    before = (tmp_path / "run" / "train_state.pt").read_bytes()
    capsys.readouterr()
    assert train_main([*CLI_TINY, "--data", "digits", "--out", out, "--max-steps", "1"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "already holds a pdgan-train run" in line and "--resume" in line and "--overwrite" in line
    assert (tmp_path / "run" / "train_state.pt").read_bytes() == before
    assert train_main([*CLI_TINY, "--data", "digits", "--out", out, "--max-steps", "1", "--overwrite"]) == 0
    assert _state(tmp_path / "run")["step"] == 1
    steps = [json.loads(x).get("step") for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]  # the old run's metrics went with it


def test_stale_temporaries_are_removed_at_start(tiny, tmp_path):  # noqa: F811
    from pdgan_train.loop import Trainer
    run = tmp_path / "run"
    Trainer(tiny_cfg(run, ckpt_every=1)).train(until=1)
    stale = [run / ".train_state.pt.tmp", run / ".model.safetensors.123-abcd.tmp", run / ".model.json.9-x.tmp",
             run / ".metrics.png.77-q.png", run / "samples" / ".step_0000001.png.5-z.tmp"]
    keep = [run / ".keep", run / "notes.tmp", run / "samples" / "mine.png"]
    for p in stale + keep:
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    Trainer(tiny_cfg(run, ckpt_every=1), resume=str(run))
    assert [p.name for p in stale if p.exists()] == [] and all(p.exists() for p in keep)


# --- malformed resume files: one line, nothing touched ---------------------------------------------------
def _damage_state(run, how):
    path = run / "train_state.pt"
    state = _state(run)
    if how == "empty":
        path.write_bytes(b"")
        return
    if how == "fifo":
        path.unlink()
        os.mkfifo(path)
        return
    if how == "missing_keys":
        state = {"format": "pdgan-train-state", "world": 1}
    elif how == "no_model":
        del state["model"]
    elif how == "step_str":
        state["step"] = "abc"
    elif how == "phase":
        state["phase"] = "warmup"
    elif how == "rng_bytes":
        state["rng"]["gen"] = torch.zeros(3, dtype=torch.uint8)
    elif how == "rng_missing":
        del state["rng"]["data"]
    elif how == "model_shape":
        k = next(iter(state["model"]))
        state["model"][k] = torch.zeros(1)
    elif how == "config_not_json":
        state["config"] = "not json"
    elif how == "opt_garbage":
        state["opt_g"] = {"state": 1}
    torch.save(state, path)


def _damage_config(run, how):
    path = run / "config.json"
    data = json.loads(path.read_text())
    if how == "cfg_dir":
        path.unlink()
        path.mkdir()
        return
    if how == "cfg_fifo":
        path.unlink()
        os.mkfifo(path)
        return
    if how == "cfg_empty":
        path.write_text("")
        return
    if how == "cfg_types":
        data["train"]["max_steps"] = "ten"
    elif how == "cfg_list":
        data["train"] = [1]
    elif how == "cfg_top_list":
        data = [data]
    elif how == "cfg_float_int":
        data["train"]["lazy_reg"] = 1.5
    elif how == "cfg_workers":
        data["train"]["num_workers"] = -1
    elif how == "cfg_lr_nan":
        data["train"]["lr_d"] = float("nan")
    path.write_text(json.dumps(data))


READ_STATE_CASES = ["empty", "fifo", "missing_keys", "no_model", "step_str", "phase", "rng_missing", "config_not_json"]
LOAD_STATE_CASES = ["model_shape", "opt_garbage", "rng_bytes"]  # well-formed, but do not fit the model
CONFIG_CASES = ["cfg_dir", "cfg_fifo", "cfg_empty", "cfg_types", "cfg_list", "cfg_top_list", "cfg_float_int",
                "cfg_workers", "cfg_lr_nan"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    from tiny_models import TINY

    from pdgan_infer import PRESETS
    from pdgan_train.loop import Trainer
    PRESETS["tiny"] = TINY
    try:
        run = tmp_path_factory.mktemp("base") / "run"
        Trainer(tiny_cfg(run, ckpt_every=1)).train(until=1)
        yield run
    finally:
        PRESETS.pop("tiny", None)


@pytest.mark.parametrize("how", READ_STATE_CASES)
def test_malformed_train_state_is_one_line(base_run, tmp_path, how):
    """Defect 9: an empty state raised IndexError inside the error handler, missing keys KeyError, a step
    'abc' TypeError; a FIFO hung. Every key and type is now checked before anything is loaded."""
    from pdgan_train.rundir import read_state
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    _damage_state(run, how)
    with pytest.raises(TrainingError, match=r"^cannot resume: .*train_state\.pt") as e:
        _in_thread(lambda: read_state(run / "train_state.pt"), [run / "train_state.pt"])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("how", LOAD_STATE_CASES + CONFIG_CASES)
def test_malformed_resume_files_fail_the_cli_with_one_line(tiny, base_run, tmp_path, capsys, how):  # noqa: F811
    """Defect 9: a wrongly shaped tensor, a broken optimiser state, a config.json that is a folder, a FIFO,
    empty, or has wrong types (max_steps 'ten', lazy_reg 1.5, num_workers -1, lr_d NaN) crashed with a
    traceback, hung, or was accepted."""
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    (_damage_config if how.startswith("cfg_") else _damage_state)(run, how)
    model_before = (run / "model.safetensors").read_bytes()
    code = _in_thread(lambda: train_main(["--resume", str(run), "--max-steps", "3"]), [run / "config.json"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1 and "cannot resume" in line, line
    assert (run / "model.safetensors").read_bytes() == model_before
    assert '"step": 2' not in (run / "metrics.jsonl").read_text()  # nothing trained


# --- failed writes: one line naming the file, no temporary left, the old checkpoint intact ----------------
@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
def test_failed_write_names_the_file_and_keeps_the_checkpoint(tiny, tmp_path, monkeypatch, fault):  # noqa: F811
    """Defect 10: a full disk surfaced as '[enforce fail at inline_container.cc:672] unexpected pos' with
    the partial .train_state.pt.tmp left behind; a read-only folder as 'open file failed' without a path."""
    import tempfile

    from pdgan_train.loop import Trainer
    run = tmp_path / "run"
    tr = Trainer(tiny_cfg(run, ckpt_every=1, max_steps=6))
    tr.train(until=2)
    good = (run / "train_state.pt").read_bytes(), (run / "model.safetensors").read_bytes()
    real_save, real_mkstemp = torch.save, tempfile.mkstemp

    def full_disk(obj, f, *a, **k):  # what torch.save does on ENOSPC: half a file, then this error
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 932096 vs 931984")

    def read_only(*a, **k):
        if "train_state" in str(k.get("prefix", "")) or "model" in str(k.get("prefix", "")):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*a, **k)

    tr = Trainer(tiny_cfg(run, ckpt_every=1, max_steps=6), resume=str(run))
    with monkeypatch.context() as m, pytest.raises(TrainingError) as e:
        if fault == "disk_full":
            m.setattr(torch, "save", full_disk)
        else:
            m.setattr(tempfile, "mkstemp", read_only)
        tr.train()
    msg = str(e.value)
    assert f"cannot write {run / 'train_state.pt'}" in msg and "(step 2) is intact" in msg, msg
    assert ("MiB free" in msg) if fault == "disk_full" else ("Permission denied" in msg)
    assert "\n" not in msg
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") and p.name not in (".lock", MANIFEST)) == []
    assert ((run / "train_state.pt").read_bytes(), (run / "model.safetensors").read_bytes()) == good
    load_checkpoint(run)
    assert _state(run)["step"] == 2


# --- errors and signals save the last completed step ---------------------------------------------------
class _FailOnItem(torch.utils.data.Dataset):
    """The digits, failing on the n-th item read (a truncated image drawn late in an epoch)."""

    def __init__(self, base, n):
        self.base, self.n, self.calls = base, n, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.calls += 1
        if self.calls == self.n:
            raise ValueError("cannot read image zz.png (OSError: image file is truncated)")
        return self.base[i]


def test_data_error_late_in_a_run_saves_the_last_step_first(tiny, reference, tmp_path):  # noqa: F811
    """Defect 11: an error when step 3's batch is loaded lost everything since the last checkpoint. Now
    step 2 is saved first, and resuming reproduces the uninterrupted run bit for bit."""
    from pdgan_train.loop import Trainer
    run = tmp_path / "run"
    tr = Trainer(tiny_cfg(run))  # ckpt_every 1000: nothing saved by the schedule
    base = tr.dataset
    tr.dataset = _FailOnItem(base, n=2 * 4 + 3)  # batch 4: the third item of step 3
    with pytest.raises(ValueError, match="truncated"):
        tr.train()
    assert _state(run)["step"] == 2
    Trainer(tiny_cfg(run), resume=str(run)).train()
    _assert_same_weights(reference, run)


def test_non_finite_loss_before_the_update_saves_the_step_before(tiny, reference, tmp_path, monkeypatch):  # noqa: F811
    """A discriminator loss that fails its check in step 3 (before any optimiser update of that step):
    the step's random draws and running statistics are undone and step 2 is saved, exactly."""
    from pdgan_train import loop
    calls = {"n": 0}
    real = loop._check_finite

    def flaky(step, **values):
        if "d_real" in values:
            calls["n"] += 1
            if calls["n"] == 3:
                raise TrainingError(f"non-finite loss ['d_real'] at step {step}")
        return real(step, **values)

    monkeypatch.setattr(loop, "_check_finite", flaky)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="non-finite loss"):
        loop.Trainer(tiny_cfg(run)).train()
    monkeypatch.setattr(loop, "_check_finite", real)
    assert _state(run)["step"] == 2
    loop.Trainer(tiny_cfg(run), resume=str(run)).train()
    _assert_same_weights(reference, run)


def test_ctrl_c_mid_step_finishes_the_step_and_a_second_one_is_ignored(tiny, reference, tmp_path,  # noqa: F811
                                                                      monkeypatch, caplog):
    """Ctrl-C used to raise wherever the program was, and the handler saved a half-done step (D updated,
    G not); a second Ctrl-C during that save lost it. Now the step completes, is saved (the second signal,
    arriving inside the save, is ignored), and resuming equals the uninterrupted run."""
    from pdgan_train import loop
    real_g_step, real_save = loop.Trainer.g_step, torch.save
    hup = {}

    def g_step(self, x0):
        if self.step == 2:  # in the middle of step 3, after the discriminator's update
            hup["handler"] = signal.getsignal(signal.SIGHUP)
            signal.raise_signal(signal.SIGINT)
        return real_g_step(self, x0)

    def save_during_signal(*a, **k):
        signal.raise_signal(signal.SIGINT)
        return real_save(*a, **k)

    run = tmp_path / "run"
    # The handlers of a process started from a terminal: a test run started in the background (`cmd &` without job
    # control, nohup) inherits SIGINT / SIGHUP ignored, and the trainer leaves ignored signals ignored, as it should
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                signal.SIGHUP: signal.signal(signal.SIGHUP, signal.SIG_DFL)}
    before = signal.getsignal(signal.SIGINT)
    try:
        with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
            m.setattr(loop.Trainer, "g_step", g_step)
            m.setattr(torch, "save", save_during_signal)
            loop.Trainer(tiny_cfg(run)).train()
        after = signal.getsignal(signal.SIGINT)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert callable(hup["handler"])  # SIGHUP (closed terminal) is handled like SIGTERM, not fatal
    assert after is before  # restored after the run
    assert _state(run)["step"] == 3
    assert "interrupted (SIGINT) at step 3; state saved" in caplog.text
    loop.Trainer(tiny_cfg(run), resume=str(run)).train()
    _assert_same_weights(reference, run)


# --- the CLI on a machine without a GPU ------------------------------------------------------------------
def test_device_cuda_without_a_gpu_is_one_clear_line(tiny, tmp_path, capsys):  # noqa: F811
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert train_main([*CLI_TINY, "--data", "digits", "--out", str(tmp_path / "r"), "--device", "cuda"]) == 1
    assert "CUDA is not available" in _one_error_line(capsys.readouterr().err)
