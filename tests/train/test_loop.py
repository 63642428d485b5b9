"""The training loop (pdgan_train.loop, the pdgan-train CLI): exact resume, the latent stage, DDP gradient
averaging, bad input, corrupt resume files, non-finite losses, metrics of a digits run, progress lines off a
terminal in every phase and none with -q. The loss terms:
test_losses.py; a run's integrity under faults: test_run_integrity.py and (slow) test_train_faults.py."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import register_tiny, tiny_cfg  # tests/support (the tiny fixture: tests/conftest.py)

from pdgan_infer import load_checkpoint
from pdgan_train import losses as L
from pdgan_train.cli.train import main as train_main


# --- the loop -------------------------------------------------------------------------------------
def _weights(run_dir):
    state = torch.load(os.path.join(run_dir, "train_state.pt"), weights_only=True)
    return state["model"], state["ema"], state["D"]


def test_resume_is_exact(tiny, tmp_path):
    from pdgan_train.loop import Trainer
    Trainer(tiny_cfg(tmp_path / "a")).train()
    Trainer(tiny_cfg(tmp_path / "b")).train(until=2)
    Trainer(tiny_cfg(tmp_path / "b"), resume=str(tmp_path / "b")).train()
    for sa, sb in zip(_weights(tmp_path / "a"), _weights(tmp_path / "b")):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    m = load_checkpoint(tmp_path / "b")
    assert m.latent is None  # latent stage skipped: not in the inference checkpoint


def test_latent_stage_and_grid(tiny, tmp_path):
    from pdgan_train.loop import Trainer
    cfg = tiny_cfg(tmp_path, max_steps=2, latent_steps=20, latent_batch=64)
    Trainer(cfg).train()
    m = load_checkpoint(tmp_path / "model.safetensors")
    assert m.latent is not None and float(m.latent.z_std.min()) > 0
    assert (tmp_path / "samples" / "final.png").exists() and (tmp_path / "samples" / "step_0000002.png").exists()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert any('"latent_loss"' in x for x in lines) and any('"d_real"' in x for x in lines)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, result_file: str):
    import torch.distributed as dist

    from pdgan_train.loop import Trainer
    register_tiny()
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tr = Trainer(tiny_cfg(out, max_steps=2), device="cpu")
    # The same weights on every rank (DDP broadcasts rank 0's at wrap time); explicit inputs.
    g = torch.Generator().manual_seed(123)
    x0 = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    noise = torch.randn(8, 3, 32, 32, generator=g)
    half = slice(rank * 4, rank * 4 + 4)
    x_t = tr.schedule.q_sample(x0[half], torch.full((4,), 2), noise[half])
    loss = L.masked_l1(tr.G(x_t, tr.E(x0[half]), torch.full((4,), 2.0)), x0[half], torch.ones(4, dtype=torch.bool))
    loss.backward()
    if rank == 0:
        grads = {k: p.grad.clone() for k, p in tr.model.generator.named_parameters()}
        grads.update({"E." + k: p.grad.clone() for k, p in tr.model.encoder.named_parameters()})
        torch.save({"grads": grads, "state": tr.model.state_dict()}, result_file)
    dist.barrier()
    tr.G.zero_grad()
    tr.E.zero_grad()
    tr.train()
    dist.destroy_process_group()


def test_ddp_two_processes_gloo(tiny, tmp_path):
    import torch.multiprocessing as mp
    out, res = str(tmp_path / "run"), str(tmp_path / "grads.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), out, res), nprocs=2, join=True)
    assert sorted(p.name for p in (tmp_path / "run").glob("model*")) == ["model.json", "model.safetensors"]
    load_checkpoint(tmp_path / "run")
    # Single process on the combined batch of 8 with the same weights and inputs.
    from pdgan_infer import PDGAN
    r = torch.load(res, weights_only=True)
    m = PDGAN("tiny")
    m.load_state_dict(r["state"])
    g = torch.Generator().manual_seed(123)
    x0 = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    noise = torch.randn(8, 3, 32, 32, generator=g)
    x_t = m.schedule.q_sample(x0, torch.full((8,), 2), noise)
    L.masked_l1(m.generator(x_t, m.encoder(x0), torch.full((8,), 2.0)), x0, torch.ones(8, dtype=torch.bool)).backward()
    ref = {k: p.grad for k, p in m.generator.named_parameters()}
    ref.update({"E." + k: p.grad for k, p in m.encoder.named_parameters()})
    # Mean over 8 = average of the two ranks' means over 4: DDP's all-reduce average. fp32 sums in a
    # different order: tolerance 1e-5 relative to the largest gradient of each tensor.
    for k, v in ref.items():
        tol = 1e-5 * max(v.abs().max().item(), 1e-12) + 1e-9
        assert (r["grads"][k] - v).abs().max().item() <= tol, k


# --- bad input ------------------------------------------------------------------------------------
def test_bad_input_clear_errors(tiny, tmp_path, capsys):
    # a failed run exits with 1 (2 is for a command line argparse rejects)
    assert train_main(["--preset", "tiny", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert train_main(["--preset", "tiny", "--data", "digits", "--out", str(tmp_path / "file" / "sub")]) == 1
    assert "file is not a folder, so sub cannot be created there" in capsys.readouterr().err
    assert train_main(["--preset", "nope", "--data", "digits"]) == 1
    assert "unknown preset" in capsys.readouterr().err
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    import pickle

    import numpy as np
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(cifar / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f)
    args = ["--preset", "celebahq256", "--data", str(cifar), "--out", str(tmp_path / "o2")]
    assert train_main([*args, "--dry-run"]) == 0
    assert train_main(["--preset", "celebahq256", "--data", str(cifar), "--out", str(tmp_path / "o2"),
                       "--no-feature-loss"]) == 1
    assert "32x32" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train_main(["--max-steps", "x"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        train_main(["--version"])
    assert e.value.code == 0 and "pdgan-train (pdgan)" in capsys.readouterr().out


def test_out_inside_the_data_or_over_user_files_is_refused_before_anything_is_written(tiny, tmp_path):
    """--out equal to or inside an image-folder --data would add sample grids to the training set; --out over a
    folder of the user's files would replace their config.json."""
    from pdgan_train.config import TrainingError
    from pdgan_train.loop import Trainer

    data = tmp_path / "images"
    data.mkdir()
    for out in (data, data / "run"):
        with pytest.raises(TrainingError, match=r"--out .* (is the input|is inside the input) .*images"):
            Trainer(tiny_cfg(out, data=str(data)))
    assert sorted(p.name for p in data.iterdir()) == []
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.json").write_text('{"mine": 1}')
    with pytest.raises(TrainingError, match="holds files that pdgan did not write"):
        Trainer(tiny_cfg(user))
    assert (user / "config.json").read_text() == '{"mine": 1}' and sorted(os.listdir(user)) == ["config.json"]


def test_corrupt_resume_leaves_checkpoints_intact(tiny, tmp_path, capsys):
    from pdgan_train.loop import Trainer
    Trainer(tiny_cfg(tmp_path)).train(until=2)
    state, model = tmp_path / "train_state.pt", tmp_path / "model.safetensors"
    model_bytes = model.read_bytes()
    state.write_bytes(state.read_bytes()[:1000])
    corrupt = state.read_bytes()
    assert train_main(["--resume", str(tmp_path)]) == 1
    assert "corrupt" in capsys.readouterr().err
    assert state.read_bytes() == corrupt and model.read_bytes() == model_bytes
    load_checkpoint(model)


def test_non_finite_loss_stops_without_checkpoint(tiny, tmp_path):
    from pdgan_train.loop import Trainer, TrainingError
    tr = Trainer(tiny_cfg(tmp_path, max_steps=50))
    for key in ("lr_g", "lr_d"):  # past validation (learning rates must be in (0, 1]): a diverging run
        object.__setattr__(tr.cfg, key, 1e30)
    with pytest.raises(TrainingError, match="non-finite"):
        tr.train()
    assert not (tmp_path / "model.safetensors").exists()


def test_resume_extends_a_finished_run(tiny, tmp_path):
    """`--resume DIR --max-steps M` on a run that already finished (phase done) trains on to M, then retrains
    the latent denoiser on the new codes."""
    from pdgan_train.loop import Trainer
    Trainer(tiny_cfg(tmp_path, max_steps=2, latent_steps=5, latent_batch=16)).train()
    before = load_checkpoint(tmp_path / "model.safetensors")
    Trainer(tiny_cfg(tmp_path, max_steps=4, latent_steps=5, latent_batch=16), resume=str(tmp_path)).train()
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert state["step"] == 4 and state["phase"] == "done"
    after = load_checkpoint(tmp_path / "model.safetensors")
    assert after.latent is not None
    b, a = before.generator.state_dict(), after.generator.state_dict()
    assert any(not torch.equal(b[k], a[k]) for k in b)  # the GAN stage did run again
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert sum('"latent_step": 0,' in x for x in lines) == 2  # the latent stage ran after each GAN stage


def test_digits_run_logs_the_8x8_metrics_and_draws_curves(tiny, tmp_path):
    """eval_every on digits data: metrics.jsonl gets {"step", "eval"} records with every digits metric
    (Gaussian z_T during the GAN stage, the latent denoiser at the end) and metrics.png is drawn."""
    pytest.importorskip("matplotlib")
    import json

    from pdgan_train.digits_metrics import TARGETS
    from pdgan_train.loop import Trainer

    cfg = tiny_cfg(tmp_path / "run", max_steps=2, eval_every=1, eval_n=10, latent_steps=2, latent_batch=8)
    Trainer(cfg).train()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval" in r]
    assert [(r["step"], r["eval"]["z_T"]) for r in evals] == [(1, "gaussian"), (2, "gaussian"), (2, "latent")]
    assert set(TARGETS) <= set(evals[-1]["eval"]) and evals[-1]["eval"]["n"] == 10
    assert (tmp_path / "run" / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- progress off a terminal ---------------------------------------------------------------------------
# The tiny preset's model and training defaults registered in a fresh interpreter that runs pdgan-train's main
# with stderr a pipe (as under nohup or CI).
TRAIN_SCRIPT = """
import sys
sys.path.insert(0, {support!r})
from tiny_models import register_tiny
from pdgan_train.config import PRESET_DEFAULTS
register_tiny()
PRESET_DEFAULTS["tiny"] = dict(batch_size=4, d_ngf=8, feature_loss=False, lazy_reg=2, ema_decay=0.9, eval_every={ev},
                               eval_n=10, latent_batch=8)
from pdgan_train.cli.train import main
sys.exit(main(sys.argv[1:]))
"""


def _train_off_a_terminal(out: Path, quiet: bool, evaluate: bool) -> subprocess.CompletedProcess:
    script = TRAIN_SCRIPT.format(support=str(Path(__file__).parents[1] / "support"), ev=int(evaluate))
    argv = ["--preset", "tiny", "--data", "digits", "--out", str(out), "--max-steps", "1", "--latent-steps", "2",
            "--log-every", "1", "--sample-every", "1", "--ckpt-every", "1"] + (["-q"] if quiet else [])
    env = {**os.environ, "PDGAN_PROGRESS_INTERVAL": "0", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"done: {out / 'model.safetensors'} (load with "
                                        f"pdgan_infer.Engine.from_pretrained({str(out)!r}))"]
    return proc


PHASES = ["training", "sample grid step_0000001.png", "checkpoint of step 1", "encode dataset", "latent denoiser",
          "sample grid final.png"]


def _check_progress_lines(stderr: str, phases: list[str]) -> None:
    """Each phase: a start line, progress lines with a percentage (the interval is 0: one per update), an end
    line; every line through the command's log handler."""
    lines = stderr.splitlines()
    assert lines and all(line.startswith("pdgan-train: ") for line in lines), stderr
    for phase in phases:
        mine = [line.removeprefix(f"pdgan-train: {phase}: ") for line in lines
                if line.startswith(f"pdgan-train: {phase}: ")]
        assert mine and mine[0].startswith("started"), (phase, stderr)
        assert any("/" in line and "%)" in line for line in mine[1:-1]), (phase, stderr)
        assert mine[-1].startswith("done"), (phase, stderr)
    assert any(line.startswith("pdgan-train: step 1/1 d_real=") for line in lines), stderr  # the loss line


@pytest.mark.parametrize("quiet", [False, True])
def test_off_a_terminal_every_phase_logs_progress_and_quiet_silences_it(tmp_path, quiet):
    proc = _train_off_a_terminal(tmp_path / "run", quiet, evaluate=False)
    if quiet:
        assert proc.stderr == ""  # no INFO line (and no warning in this run)
    else:
        _check_progress_lines(proc.stderr, PHASES)


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True])
def test_off_a_terminal_the_evaluations_log_progress_too(tmp_path, quiet):
    proc = _train_off_a_terminal(tmp_path / "run", quiet, evaluate=True)
    if quiet:
        assert proc.stderr == ""
    else:
        _check_progress_lines(proc.stderr, PHASES + ["evaluation at step 1", "final evaluation"])
