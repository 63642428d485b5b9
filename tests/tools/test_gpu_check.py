"""`make gpu-check` (benchmarks/gpu_check.py, gpu_smoke.py, gpu_timing.py, gpu_engine.py, gpu_report.py), tested
as far as a CPU allows: the plan (order, limits, the no-GPU path), the step runner with fake steps (results
written after every step, a SIGTERM mid-step, output kept out of stdout), the summary's choices (only correct
rows count, skips are not passes), the byte counts and percentiles against numbers worked out by hand, and the
smoke groups on the CPU with small shapes."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402
import gpu_engine  # noqa: E402
import gpu_report  # noqa: E402
import gpu_smoke  # noqa: E402
import gpu_timing  # noqa: E402

PY = sys.executable


def _plan(tmp_path: Path) -> dict:
    return {s.name: s for s in gpu_check.steps(PY, tmp_path / "work", tmp_path / "out")}


# --- the plan ---------------------------------------------------------------------------------------------
def test_default_plan_order_fits_five_minutes_and_optional_steps_need_only(tmp_path):
    plan = gpu_check.default_plan(gpu_check.steps(PY, tmp_path / "work", tmp_path / "out"))
    assert [s.name for s in plan] == ["env", "build", "engine", "crosscheck", "kernels", "profile", "pytest"]
    assert sum(s.timeout_s for s in plan) <= 300
    by = _plan(tmp_path)
    assert set(by) == set(plan_names := [s.name for s in plan]) | {"sanitize", "train", "extra"}, plan_names
    build = by["build"].cmd
    assert build[build.index("--arch") + 1] == "9.0"  # one architecture
    sanitize = by["sanitize"].cmd
    assert sanitize[sanitize.index("--error-exitcode") + 1] == "86"  # not Python's 1
    assert "gpu and not slow" in by["pytest"].cmd
    for s in by.values():  # every script, module and test file a step names is there and imports
        for arg in s.cmd:
            if arg.endswith(".py"):
                assert (ROOT / arg).exists() or Path(arg).exists(), arg
        if "-m" in s.cmd and s.cmd[s.cmd.index("-m") + 1] != "gpu and not slow":
            assert importlib.util.find_spec(s.cmd[s.cmd.index("-m") + 1]) is not None
        if "gpu_smoke.py" in " ".join(s.cmd):
            group = s.cmd[s.cmd.index(next(a for a in s.cmd if a.endswith("gpu_smoke.py"))) + 1]
            assert group in gpu_smoke.GROUPS
    # the records that a step writes while it runs land in the out dir, the rest in the work dir
    assert {n for n, s in by.items() if s.records and s.records.startswith(str(tmp_path / "out"))} == {
        "engine", "crosscheck", "kernels", "profile", "extra"}
    # at most 8 files come back: gpu-check.json + .md + one records file per step
    assert 2 + len({n for n, s in by.items() if s.records and str(tmp_path / "out") in s.records}) <= 8


def test_only_takes_any_step_in_plan_order_and_rejects_unknown_ones(capsys):
    assert gpu_check.main(["--plan", "--only", "extra,env,train"]) == 0
    out = capsys.readouterr().out
    assert out.index("[env]") < out.index("[train]") < out.index("[extra]") and "[engine]" not in out
    with pytest.raises(SystemExit):
        gpu_check.main(["--plan", "--only", "engine,bogus"])


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None or shutil.which("make") is None,
                    reason="the no-GPU path, through make")
def test_make_gpu_check_without_a_gpu_prints_the_limits_and_exits_0(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["make", "-s", "gpu-check", f"GPU_PY={PY}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    plan = gpu_check.default_plan(gpu_check.steps(PY, tmp_path, tmp_path))
    for step in plan:
        assert f"[{step.name}] limit {step.timeout_s} s" in proc.stdout
    assert f"sum to {sum(s.timeout_s for s in plan)} s" in proc.stdout
    assert "no CUDA GPU" in proc.stdout and str(tmp_path / "out" / "gpu-check.json") in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_out_dir_defaults_to_OUT_when_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OUT", str(tmp_path / "o"))
    assert gpu_check.default_out_dir() == tmp_path / "o"
    assert gpu_check.main(["--plan"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'o' / 'engine.json'}" in out and f"{tmp_path / 'o' / 'gpu-check.json'}" in out
    monkeypatch.delenv("OUT")
    assert gpu_check.default_out_dir() == ROOT / "benchmarks" / "results"


def test_commit_comes_from_PDGAN_COMMIT(monkeypatch):
    monkeypatch.setenv("PDGAN_COMMIT", "feedbeef")
    assert gpu_check.commit() == ("feedbeef", "PDGAN_COMMIT")


# --- the runner, with fake steps ---------------------------------------------------------------------------
def _py(code: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code)]


def test_results_exist_after_the_first_step_and_are_rewritten_after_each(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    # the second step checks, while it runs, that the files already hold the first step
    probe = f"""
        import json, sys
        d = json.load(open({str(out / 'gpu-check.json')!r}))
        assert [s['name'] for s in d['steps']] == ['one'] and d['steps'][0]['status'] == 'ok', d['steps']
        assert '| one | ok |' in open({str(out / 'gpu-check.md')!r}).read()
        """
    plan = [gpu_check.Step("one", _py("print('first')"), 30, "first"),
            gpu_check.Step("two", _py(probe), 30, "sees the first"),
            gpu_check.Step("three", _py("raise SystemExit(3)"), 30, "fails")]
    rc = gpu_check.execute(plan, out, work, {"date": "d"}, 100)
    data = json.loads((out / "gpu-check.json").read_text())
    assert [(s["name"], s["status"]) for s in data["steps"]] == [("one", "ok"), ("two", "ok"), ("three", "failed")]
    assert rc == 1 and data["steps"][2]["rc"] == 3
    assert not list(out.glob(".*.tmp"))  # temp files were replaced


def test_child_output_goes_to_its_log_not_to_stdout(tmp_path, capsys):
    plan = [gpu_check.Step("chatty", _py("for i in range(500): print(f'line {i}')\nraise SystemExit(2)"), 30,
                           "talks")]
    gpu_check.execute(plan, tmp_path / "out", tmp_path / "work", {"date": "d"}, 100)
    stdout = capsys.readouterr().out
    assert "line 100" not in stdout and "line 499" in stdout  # the last lines of a failed step only
    assert stdout.count("chatty| line") <= 3
    assert (tmp_path / "work" / "chatty.log").read_text().count("line ") == 500
    data = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert "line 499" in data["steps"][0]["tail"] and "line 0\n" not in data["steps"][0]["tail"]


def test_a_timed_out_step_is_stopped_and_the_next_one_runs(tmp_path):
    plan = [gpu_check.Step("hangs", _py("import time; print('start', flush=True); time.sleep(60)"), 2, "hangs"),
            gpu_check.Step("missing", ["/nonexistent/tool"], 30, "cannot start"),
            gpu_check.Step("ok", _py("print('fine')"), 30, "ok")]
    gpu_check.execute(plan, tmp_path / "out", tmp_path / "work", {"date": "d"}, 100)
    steps = json.loads((tmp_path / "out" / "gpu-check.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["timeout", "failed", "ok"]
    assert "start" in steps[0]["tail"] and steps[0]["seconds"] < 30


def test_a_failed_build_runs_the_later_steps_without_the_extension(tmp_path):
    flag = tmp_path / "flag"
    plan = [gpu_check.Step("build", _py("raise SystemExit(1)"), 30, "build"),
            gpu_check.Step("engine", _py(f"import os; open({str(flag)!r}, 'w').write(os.environ.get("
                                         "'PDGAN_SKIP_EXT', 'unset'))"), 30, "engine")]
    gpu_check.execute(plan, tmp_path / "out", tmp_path / "work", {"date": "d"}, 100)
    assert flag.read_text() == "1"
    data = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert "PDGAN_SKIP_EXT=1" in data["header"]["skip_ext"]


def test_sigterm_mid_step_keeps_the_finished_steps_and_prints_a_summary(tmp_path):
    out, work, marker = tmp_path / "out", tmp_path / "work", tmp_path / "running"
    records = out / "slow.json"
    slow = f"""
        import json, time
        json.dump([{{"check": "first half", "ok": True}}], open({str(records)!r}, "w"))
        open({str(marker)!r}, "w").close()
        time.sleep(120)
        """
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(BENCH)!r})
        import gpu_check as g
        plan = [g.Step("fast", [sys.executable, "-c", "print('done')"], 30, "fast"),
                g.Step("slow", [sys.executable, "-c", {textwrap.dedent(slow)!r}], 200, "slow",
                       records={str(records)!r}),
                g.Step("later", [sys.executable, "-c", "print('never')"], 30, "later")]
        sys.exit(g.execute(plan, __import__("pathlib").Path({str(out)!r}), __import__("pathlib").Path({str(work)!r}),
                           {{"date": "d"}}, 300))
        """))
    proc = subprocess.Popen([PY, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stdout
    data = json.loads((out / "gpu-check.json").read_text())
    assert [(s["name"], s["status"]) for s in data["steps"]] == [("fast", "ok"), ("slow", "cut"), ("later", "not run")]
    assert data["steps"][1]["records"] == [{"check": "first half", "ok": True}]  # the cut step's records folded in
    assert "SIGTERM" in data["header"]["cut"] and "| slow | cut |" in (out / "gpu-check.md").read_text()
    assert "CUT by SIGTERM" in stdout and "steps: fast ok, slow cut, later not run" in stdout


def test_pytest_log_becomes_failure_records_and_totals():
    log = ("....F.s\nFAILED tests/test_noise.py::test_a - AssertionError: x\nERROR tests/test_b.py::test_c\n"
           "== 1 failed, 5 passed, 1 skipped, 1 error in 3.2s ==\n")
    recs = gpu_check.pytest_records(log)
    assert [r["check"] for r in recs if r.get("ok") is False] == ["pytest tests/test_noise.py::test_a",
                                                                   "pytest tests/test_b.py::test_c"]
    totals = recs[-1]
    assert (totals["passed"], totals["failed"], totals["skipped"], totals["errors"]) == (5, 1, 1, 1)
    assert "ok" not in totals  # not a check of its own


# --- the summary ----------------------------------------------------------------------------------------------
def _result(name: str, records: list[dict]) -> dict:
    return {"name": name, "what": name, "cmd": [], "status": "ok", "rc": 0, "seconds": 1.0, "tail": "",
            "records": records}


def test_best_backend_is_chosen_among_correct_rows_only():
    engine = [{"check": "a", "kind": "engine", "preset": "cifar10", "backend": "triton", "dtype": "bfloat16",
               "ms": 5.0, "ok": False, "mean_err": 0.4},
              {"check": "b", "kind": "engine", "preset": "cifar10", "backend": "native", "dtype": "bfloat16",
               "ms": 9.5, "ok": True},
              {"check": "c", "kind": "engine", "preset": "cifar10", "backend": "optimized", "dtype": "float32",
               "ms": 7.0, "ok": True},  # fast enough, but not bf16
              {"check": "d", "kind": "engine", "preset": "celebahq256", "backend": "native", "dtype": "bfloat16",
               "ms": 40.0, "ok": False}]
    goals = {g["goal"]: g for g in gpu_report.summarize([_result("engine", engine)])["goals"]}
    assert (goals["cifar10_ms"]["measured"], goals["cifar10_ms"]["met"]) == (9.5, False)
    assert "native" in goals["cifar10_ms"]["detail"]
    assert goals["celebahq256_ms"]["measured"] is None and goals["celebahq256_ms"]["met"] is None


def test_skipped_checks_are_recorded_at_once_and_not_counted_as_passed(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_timing.SETTINGS, "out", tmp_path / "x.json")
    monkeypatch.setattr(gpu_timing, "RECORDS", [])
    gpu_timing.check("runs", kind="x")(lambda: {"err": 0.0})
    gpu_timing.skip("tensorrt", "not installed", kind="extra")
    gpu_timing.check("sdpa flash", kind="sdpa")(lambda: {"supported": False, "skipped": "no kernel"})
    on_disk = json.loads((tmp_path / "x.json").read_text())
    assert [(r["check"], r["ok"]) for r in on_disk] == [("runs", True), ("tensorrt", None), ("sdpa flash", None)]
    assert gpu_timing.counts(on_disk) == (1, 0, 2)
    s = gpu_report.summarize([_result("extra", on_disk)])
    assert s["checks_passed"] == 1 and s["checks_failed"] == [] and len(s["checks_skipped"]) == 2
    assert "tensorrt: not installed" in s["checks_skipped"][0]


def test_adagn_bytes_count_passes_by_plan():
    assert (gpu_timing.adagn_passes("single"), gpu_timing.adagn_passes("split")) == (2, 3)
    # (400, 128, 32, 32) bf16: 52,428,800 elements x 2 B = 104,857,600 B per pass; gamma + beta 2 x 51,200 floats
    assert gpu_timing.adagn_bytes((400, 128, 32, 32), 2, "single") == 2 * 104_857_600 + 409_600
    assert gpu_timing.adagn_bytes((8, 64, 256, 256), 2, "split") == 3 * 67_108_864 + 4_096
    # csrc make_plan: Cg = 12 bf16 channels_last packs of 4 (8 B) -> 256 x 4 x 8 = 8192 < 12 x 1024: split
    assert gpu_timing.native_adagn_path((100, 384, 32, 32), 2, 32, True) == "split"
    assert gpu_timing.native_adagn_path((100, 128, 32, 32), 2, 32, True) == "single"  # 4 x 1024 <= 8192
    assert gpu_timing.native_adagn_path((100, 128, 32, 32), 4, 32, False) == "single"  # fp32 NCHW: 16 B packs
    assert gpu_timing.native_adagn_path((3, 12, 7, 5), 4, 3, False) == "single"  # HW = 35: scalar, 140 <= 2048


def test_hbm_goal_takes_correct_rows_larger_than_l2_only():
    common = {"kind": "adagn", "dtype": "bf16", "layout": "channels_last"}
    rows = [{**common, "check": "l2", "impl": "native", "ok": True, "larger_than_l2": False, "fraction_hbm": 1.4,
             "path": "single", "shape": [8], "passes": 2},
            {**common, "check": "bad", "impl": "triton", "ok": False, "larger_than_l2": True, "fraction_hbm": 0.95,
             "path": "single", "shape": [9], "passes": 2},
            {**common, "check": "forced", "impl": "triton split", "ok": True, "larger_than_l2": True,
             "fraction_hbm": 0.9, "path": "split", "shape": [7], "passes": 3},
            {**common, "check": "good", "impl": "triton", "ok": True, "larger_than_l2": True, "fraction_hbm": 0.66,
             "path": "split", "shape": [6], "passes": 3}]
    goal = {g["goal"]: g for g in gpu_report.summarize([_result("kernels", rows)])["goals"]}["adagn_fraction_hbm"]
    assert (goal["measured"], goal["met"]) == (0.66, False) and "3 passes" in goal["detail"]


def test_percentiles_and_cpu_bench():
    p = gpu_timing.percentiles([float(v) for v in (7, 1, 11, 3, 5, 9, 2, 4, 6, 8, 10)])
    assert (p["p10"], p["p50"], p["p90"], p["n"]) == (2.0, 6.0, 10.0, 11)
    t = gpu_timing.bench(lambda: sum(range(1000)), torch.device("cpu"), reps=7, warmup=1)
    assert t["n"] == 7 and 0 < t["p10"] <= t["p50"] <= t["p90"]


def test_tf32_off_switches_off_and_restores_and_stays_readable():
    b = torch.backends
    before = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
    b.cudnn.allow_tf32 = True
    try:
        assert gpu_timing.tf32_state()["tf32"] is True
        with gpu_timing.tf32_off():
            assert gpu_timing.tf32_state() == {"tf32_conv": False, "tf32_matmul": False, "tf32": False}
            assert b.cudnn.allow_tf32 is False  # still readable (pdgan_infer/optimize.py reads it while capturing)
        assert b.cudnn.allow_tf32 is True
    finally:
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = before


def test_kernel_classes():
    names = {"sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
             "cutlass__5x_cudnn::Kernel<cutlass_tensorop_bf16_s16816fprop_optimized>": "convolution",
             "_adagn_fused_wide_kernel": "adagn/group-norm",
             "void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<float>": "adagn/group-norm",
             "pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<256>>": "attention",
             "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>":
                 "copies/elementwise",
             "Memcpy DtoD (Device -> Device)": "copies/elementwise", "aten::native_group_norm": "adagn/group-norm"}
    assert {n: gpu_engine.kernel_class(n) for n in names} == names
    b = gpu_engine.breakdown([("conv_x", 30.0), ("_adagn_k", 10.0), ("elementwise_add", 10.0)])
    assert b["total_us"] == 50.0 and b["classes"]["convolution"]["share"] == pytest.approx(0.6)


# --- the smoke groups on the CPU ------------------------------------------------------------------------------
def test_smoke_kernel_checks_run_on_the_cpu(tmp_path):
    out = tmp_path / "k.json"
    rc = gpu_smoke.main(["kernels", "--device", "cpu", "--quick", "--out", str(out)])
    records = json.loads(out.read_text())
    kinds = {r.get("kind") for r in records}
    assert {"adagn", "posterior", "noise", "sdpa", "layout"} <= kinds, records
    assert rc == 0 and not [r for r in records if r["ok"] is False]
    torch_posterior = [r for r in records if r.get("kind") == "posterior" and r["impl"] == "torch"]
    assert torch_posterior and all(r["us"] > 0 and r["us_p10"] <= r["us"] <= r["us_p90"] for r in torch_posterior)
    single = next(r for r in records if r["check"] == "adagn native cg4 fp32 channels_last")
    assert single["path"] == "single" and single["bytes"] == 2 * (2 * 16 * 8 * 8 * 4) + 2 * 2 * 16 * 4
    from pdgan_infer.kernels import _triton
    if _triton.HAS_TRITON and _triton.interpreting():  # the Triton rows say which plan ran
        cg4 = {(r["impl"], r["dtype"]): r for r in records if r.get("kind") == "adagn" and r["shape"] == [2, 16, 8, 8]
               and r["layout"] == "channels_last"}
        for dtype in ("fp32", "bf16"):
            assert (cg4[("triton", dtype)]["path"], cg4[("triton", dtype)]["g_block"]) == ("single", 4)
            assert cg4[("triton split", dtype)]["passes"] == 3 and cg4[("triton", dtype)]["passes"] == 2


def test_smoke_engine_checks_run_on_the_cpu_with_tf32_stated(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_engine, "QUICK_ENGINE_RUNS", {"digits": (2, [("torch", "float32"),
                                                                         ("optimized", "float32")])})
    out = tmp_path / "e.json"
    assert gpu_smoke.main(["engine", "--device", "cpu", "--quick", "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [(r["backend"], r["kind"]) for r in records] == [("torch", "engine"), ("optimized", "engine"),
                                                            ("torch", "engine_rerun")]
    assert records[1]["max_pixel_diff"] <= 2 and records[1]["deterministic"] and records[1]["ms"] > 0
    assert all(r["tf32"] is False for r in records)
    assert records[0]["runner_ms_p10"] <= records[0]["runner_ms"] <= records[0]["runner_ms_p90"]
    assert "drift" in records[2] and records[2]["first_runner_ms"] == records[0]["runner_ms"]


def test_smoke_crosscheck_and_profile_run_on_the_cpu(tmp_path):
    out = tmp_path / "c.json"
    assert gpu_smoke.main(["crosscheck", "--device", "cpu", "--quick", "--out", str(out)]) == 0
    torch_row = next(r for r in json.loads(out.read_text()) if r["backend"] == "torch")
    assert torch_row["max_uint8_diff"] == 0 and torch_row["images"] == 4  # the CPU against itself
    out = tmp_path / "p.json"
    assert gpu_smoke.main(["profile", "--device", "cpu", "--quick", "--out", str(out)]) == 0
    prof = json.loads(out.read_text())[0]
    assert prof["ok"] is True and prof["classes"]["convolution"]["us"] > 0
    assert sum(c["share"] for c in prof["classes"].values()) == pytest.approx(1.0)


def test_smoke_extra_backends_run_on_the_cpu(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "x.json"
    assert gpu_smoke.main(["extra", "--device", "cpu", "--quick", "--out", str(out)]) == 0
    records = {r["backend"]: r for r in json.loads(out.read_text())}
    ort = records["onnxruntime"]
    assert ort["providers"] == ["CPUExecutionProvider"] and ort["requested_providers"] and ort["mean_err"] <= 1e-3
    assert records["tensorrt"]["ok"] is None and "CUDA" in records["tensorrt"]["skipped"]


def test_smoke_env_records_setuptools(tmp_path):
    import setuptools
    out = tmp_path / "env.json"
    assert gpu_smoke.main(["env", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())[0]
    assert rec["setuptools"] == setuptools.__version__ and rec["torch"] == torch.__version__


def test_smoke_sanitize_launches_run_on_the_cpu():
    from pdgan_infer.kernels import native
    if not native.available():
        pytest.skip(native.unavailable_reason())
    assert gpu_smoke.main(["sanitize", "--device", "cpu"]) == 0
