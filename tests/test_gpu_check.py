"""`make gpu-check` (benchmarks/gpu_check.py + gpu_smoke.py), tested as far as a CPU allows: the no-GPU path,
the step list (every command exists and imports), the step runner (a failing or timed-out step does not stop
the next one; the budget skips steps), the result files and their goal summary, and the smoke checks
themselves on the CPU with small shapes."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_check = _load("gpu_check")
gpu_smoke = _load("gpu_smoke")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU path")
def test_make_gpu_check_without_a_gpu_prints_the_plan_and_exits_0():
    proc = subprocess.run(["make", "-s", "gpu-check"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False) if shutil.which("make") else None
    if proc is None:
        pytest.skip("make not installed")
    assert proc.returncode == 0, proc.stderr
    for step in gpu_check.steps(sys.executable, Path("/tmp/w")):
        assert f"[{step.name}]" in proc.stdout
    assert "no CUDA GPU" in proc.stdout and not list((ROOT / "benchmarks" / "results").glob("gpu-*-never"))


def test_steps_cover_the_issue_and_their_commands_exist():
    plan = gpu_check.steps(sys.executable, Path("/tmp/w"))
    names = [s.name for s in plan]
    assert names == ["env", "build", "native", "kernels", "engine", "sanitize", "train", "pytest", "extra"]
    assert gpu_check.BUDGET_S <= 8 * 60  # the global budget caps the sum of the steps
    first = sum(s.timeout_s for s in plan if s.name in ("env", "build", "native", "kernels", "engine"))
    assert first <= gpu_check.BUDGET_S  # the most valuable steps always get their full limit
    by = {s.name: s for s in plan}
    assert ";" in by["build"].env["PDGAN_CUDA_ARCH"]  # a multi-architecture build: the comma case
    assert by["sanitize"].cmd[1:3] == ["--tool", "memcheck"]
    for s in plan:  # every script, module and test file a step names is there and imports
        for arg in s.cmd:
            if arg.endswith(".py") and "/" in arg:
                assert (ROOT / arg).exists() or Path(arg).exists(), arg
        if "-m" in s.cmd:
            module = s.cmd[s.cmd.index("-m") + 1]
            assert importlib.util.find_spec(module) is not None, module
        if "gpu_smoke.py" in " ".join(s.cmd):
            group = s.cmd[s.cmd.index(next(a for a in s.cmd if a.endswith("gpu_smoke.py"))) + 1]
            assert group in ("env", "native", "kernels", "engine", "sanitize", "extra")
    train = by["train"].cmd
    from pdgan_train.cli import build_parser
    args = build_parser().parse_args(train[train.index("pdgan_train.cli") + 1:])
    assert args.batch_size == 64 and args.amp == "bf16" and args.max_steps == 20 and args.data == "digits"


def test_a_rerun_in_the_same_work_folder_is_not_refused_nor_reads_old_records(tmp_path, monkeypatch):
    """The train step's --out survives from the last check: pdgan-train refuses an --out holding a run unless
    --overwrite (deletes it); gpu_smoke's records of the last check are removed before the step runs."""
    from pdgan_train import rundir
    from pdgan_train.cli import build_parser
    from pdgan_train.config import TrainingError
    train = {s.name: s for s in gpu_check.steps(sys.executable, tmp_path)}["train"]
    args = build_parser().parse_args(train.cmd[train.cmd.index("pdgan_train.cli") + 1:])
    out = Path(args.out)
    out.mkdir(parents=True)
    (out / "train_state.pt").write_bytes(b"last check's run")
    with pytest.raises(TrainingError):  # what a rerun without --overwrite got
        rundir.claim_out(out, False)
    assert args.overwrite and rundir.claim_out(out, args.overwrite)
    old = tmp_path / "kernels.json"
    old.write_text(json.dumps([{"check": "last time", "ok": True}]))
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 1)
    step = gpu_check.Step("kernels", [sys.executable, "-c", "raise SystemExit(1)"], 30, "k", records=str(old))
    assert gpu_check.run_step(step, 100)["status"] == "failed" and gpu_check.load_records(step) is None


def test_a_failing_or_hanging_step_does_not_stop_the_next(capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 1)
    py = sys.executable
    steps = [gpu_check.Step("fails", [py, "-c", "print('boom'); raise SystemExit(3)"], 30, "fails"),
             gpu_check.Step("hangs", [py, "-c", "import time; print('start', flush=True); time.sleep(60)"], 2, "hangs"),
             gpu_check.Step("missing", ["/nonexistent/tool"], 30, "cannot start"),
             gpu_check.Step("ok", [py, "-c", "print('fine')"], 30, "ok")]
    results = [gpu_check.run_step(s, 100) for s in steps]
    assert [r["status"] for r in results] == ["failed", "timeout", "failed", "ok"]
    assert results[0]["rc"] == 3 and "boom" in results[0]["tail"] and "start" in results[1]["tail"]
    assert results[1]["seconds"] < 10
    assert gpu_check.run_step(steps[3], 0.5)["status"] == "skipped"  # under MIN_STEP_S of budget left
    assert "  ok| fine" in capsys.readouterr().out  # progress is streamed


def test_results_and_goal_summary_are_written(tmp_path):
    kernels = [{"check": "adagn native cifar10 128x32x32 bf16 channels_last", "kind": "adagn", "impl": "native",
                "shape": [100, 128, 32, 32], "dtype": "bf16", "layout": "channels_last", "us": 10.0,
                "fraction_hbm": 0.81, "err": 0.01, "tol": 0.05, "ok": True},
               {"check": "adagn triton x", "kind": "adagn", "impl": "triton", "shape": [2, 4, 4, 4], "dtype": "fp32",
                "layout": "nchw", "us": 3.0, "fraction_hbm": 0.05, "ok": False, "error": "mismatch"},
               {"check": "adagn triton single g_block=1 y", "kind": "adagn", "impl": "triton g_block=1",  # forced
                "shape": [100, 128, 32, 32], "dtype": "fp32", "layout": "channels_last", "us": 1.0,
                "fraction_hbm": 0.95, "ok": True}]
    engine = [{"check": "engine cifar10 native bfloat16", "kind": "engine", "preset": "cifar10", "backend": "native",
               "dtype": "bfloat16", "ms": 6.5, "runner_ms": 5.0, "latent_ms": 1.2, "noise_ms": 0.3, "ok": True},
              {"check": "engine celebahq256 native bfloat16", "kind": "engine", "preset": "celebahq256",
               "backend": "native", "dtype": "bfloat16", "ms": 75.0, "ok": True}]
    results = [{"name": "kernels", "what": "k", "cmd": [], "status": "ok", "rc": 0, "seconds": 1.0, "tail": "",
                "records": kernels},
               {"name": "engine", "what": "e", "cmd": [], "status": "ok", "rc": 0, "seconds": 1.0, "tail": "",
                "records": engine},
               {"name": "train", "what": "t", "cmd": [], "status": "timeout", "rc": -9, "seconds": 60.0,
                "tail": "killed", "records": [{"step": 5, "images_per_s": 50.0}, {"step": 10, "images_per_s": 900.0}]}]
    header = {"date": "2030-01-02T03:04:05+00:00", "gpu": "NVIDIA H200", "commit": "abc", "seconds": 62.0}
    json_path, md_path = gpu_check.write_results(header, results, tmp_path)
    assert json_path.name == "gpu-2030-01-02.json" and md_path.name == "gpu-2030-01-02.md"
    data = json.loads(json_path.read_text())
    s = data["summary"]
    assert s["cifar10_meets_goal"] is True and s["celebahq256_meets_goal"] is False
    assert s["adagn_meets_goal"] is True and s["train_images_per_s"] == 900.0
    assert s["adagn_best"]["impl"] == "native"  # a forced variant (split, g_block=1) is not what the engine runs
    assert s["checks_failed"] == ["adagn triton x"] and s["steps"]["train"] == "timeout"
    md = md_path.read_text()
    assert "| cifar10, 100 images" in md and "6.50 (native bfloat16)" in md and "## train: timeout" in md


def test_smoke_kernel_checks_run_on_the_cpu(tmp_path):
    out = tmp_path / "k.json"
    rc = gpu_smoke.main(["kernels", "--device", "cpu", "--quick", "--out", str(out)])
    records = json.loads(out.read_text())
    kinds = {r.get("kind") for r in records}
    assert {"adagn", "posterior", "noise", "sdpa", "layout"} <= kinds, records
    assert rc == 0 and all(r["ok"] for r in records), [r for r in records if not r["ok"]]
    from pdgan_infer.kernels import _triton
    if _triton.HAS_TRITON and _triton.interpreting():  # review 2.2: the table shows Triton's wide single path
        cg4 = {(r["impl"], r["dtype"]): r for r in records if r.get("kind") == "adagn" and r["shape"] == [2, 16, 8, 8]
               and r["layout"] == "channels_last"}
        for dtype in ("fp32", "bf16"):
            assert (cg4[("triton", dtype)]["path"], cg4[("triton", dtype)]["g_block"]) == ("single", 4)
            assert cg4[("triton g_block=1", dtype)]["g_block"] == 1 and ("triton split", dtype) in cg4


def test_smoke_records_survive_a_step_killed_at_its_limit(tmp_path, monkeypatch):
    """gpu_check kills a step at its time limit; the records of the checks done so far are on disk already."""
    monkeypatch.setitem(gpu_smoke.SETTINGS, "out", tmp_path / "k.json")
    monkeypatch.setattr(gpu_smoke, "RECORDS", [])
    gpu_smoke.check("first", kind="x")(lambda: {"err": 0.0})
    assert [r["check"] for r in json.loads((tmp_path / "k.json").read_text())] == ["first"]
    gpu_smoke.check("second", kind="x")(lambda: 1 / 0)
    records = json.loads((tmp_path / "k.json").read_text())
    assert [r["ok"] for r in records] == [True, False] and "ZeroDivisionError" in records[1]["error"]


def test_smoke_engine_checks_run_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_smoke, "QUICK_ENGINE_RUNS", {"digits": (2, [("torch", "float32"),
                                                                        ("optimized", "float32")])})
    out = tmp_path / "e.json"
    assert gpu_smoke.main(["engine", "--device", "cpu", "--quick", "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["backend"] for r in records] == ["torch", "optimized"]
    assert records[1]["max_pixel_diff"] <= 2 and records[1]["deterministic"] and records[1]["ms"] > 0


def test_smoke_extra_backends_run_on_the_cpu(tmp_path):
    """Review 4.5 / 4.7: the exported backends against torch fp32, ONNX Runtime's providers as its session
    reports them; TensorRT (CUDA only) is recorded as skipped with the reason."""
    pytest.importorskip("onnxruntime")
    out = tmp_path / "x.json"
    assert gpu_smoke.main(["extra", "--device", "cpu", "--quick", "--out", str(out)]) == 0
    records = {r["backend"]: r for r in json.loads(out.read_text())}
    ort = records["onnxruntime"]
    assert ort["providers"] == ["CPUExecutionProvider"] and ort["requested_providers"]
    assert ort["mean_err"] <= 1e-3 and ort["ms"] > 0
    assert records["tensorrt"]["ok"] and "CUDA" in records["tensorrt"]["skipped"]


def test_smoke_sanitize_launches_run_on_the_cpu():
    from pdgan_infer.kernels import native
    if not native.available():
        pytest.skip(native.unavailable_reason())
    assert gpu_smoke.main(["sanitize", "--device", "cpu"]) == 0
