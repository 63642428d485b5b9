"""`make gpu-check`: everything the GPU has to settle (gpu-review.md), in one command of at most 8 minutes
on one H100/H200 without network (torch 2.11 + CUDA 13, triton 3.6; nothing is pip-installed).

    python benchmarks/gpu_check.py            # on a GPU machine: run the steps, write the results
    python benchmarks/gpu_check.py --plan     # print the steps and their commands only

Steps (each a subprocess with its own time limit inside a global budget; a failing or timed-out step is
recorded and the next one runs):

    env        nvidia-smi, torch / CUDA / cuDNN / triton / TensorRT / ONNX Runtime versions, nvcc, compute-sanitizer
    build      setup.py build_ext --inplace with PDGAN_CUDA_ARCH="8.0;9.0" (two architectures: the comma that
               broke every default build), torch's own flags; then _C.WITH_CUDA and _C.CUDA_ARCH_LIST
    kernels    gpu_smoke.py kernels: native / Triton AdaGN at the real cifar10 / celebahq256 shapes, fp32 / bf16 /
               fp16, NCHW and channels_last, within half an ulp of float64, time against the unfused torch
               sequence and as a fraction of HBM bandwidth (Triton: its plan, and g_block=1 beside the wide
               kernel); posterior step (noise and seed mode); draw_noise on the GPU against the CPU; the SDPA
               kernel of the attention block and F.group_norm's layout; the kernels in a CUDA graph replayed
               with fresh inputs
    engine     gpu_smoke.py engine: every runner backend against torch fp32 on the same noise (cifar10 and
               celebahq256, 100 images), replay determinism, GPU time of the 2-NFE chain + latent sampler + noise
               against the goals (cifar10 <= 8 ms, celebahq256 <= 60 ms), generate() end to end, peak memory
    sanitize   compute-sanitizer --tool memcheck over gpu_smoke.py sanitize (every native and Triton code path)
    train      20 training steps of the cifar10 preset (batch 64, bf16 autocast) on the bundled digits upscaled
    pytest     the GPU-marked tests of the kernel, noise and optimisation test files (on a GPU every Triton test
               is GPU-marked: they run on CUDA, bf16 held to half an ulp), CUDA-graph replay with fresh inputs
    extra      gpu_smoke.py extra: onnxruntime (requested vs the session's providers), tensorrt fp16 and compile
               on the digits preset against torch fp32 (last: runs when the budget has time left)

Results: benchmarks/results/gpu-<date>.json (every step: command, exit status, seconds, output tail, parsed
records) and gpu-<date>.md (a summary with the goals). Without a GPU the plan is printed and the exit
status is 0.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUDGET_S = 470  # the whole check, under the 8 minutes
MIN_STEP_S = 15  # a step with less time left is skipped
BUILD_ARCH = "8.0;9.0"
GOALS = {"cifar10_ms": 8.0, "celebahq256_ms": 60.0, "adagn_fraction_hbm": 0.70}


@dataclass
class Step:
    name: str
    cmd: list[str]
    timeout_s: int
    what: str
    env: dict[str, str] = field(default_factory=dict)
    records: str | None = None  # JSON file the step writes (gpu_smoke --out)


def steps(py: str, work: Path) -> list[Step]:
    """The steps in order of value (most important first, so a short budget drops the least)."""
    smoke = str(ROOT / "benchmarks" / "gpu_smoke.py")
    sanitizer = shutil.which("compute-sanitizer") or _cuda_tool("compute-sanitizer") or "compute-sanitizer"
    train_out = work / "train-cifar10"
    return [
        Step("env", [py, smoke, "env"], 20, "nvidia-smi, versions (torch, CUDA, cuDNN, triton, TensorRT, "
             "ONNX Runtime), nvcc, compute-sanitizer"),
        Step("build", [py, "setup.py", "build_ext", "--inplace"], 150,
             f"build pdgan_infer._C with torch's flags for PDGAN_CUDA_ARCH={BUILD_ARCH!r}",
             env={"PDGAN_CUDA_ARCH": BUILD_ARCH, "MAX_JOBS": str(os.cpu_count() or 8)}),
        Step("native", [py, smoke, "native"], 15, "the built extension loads with CUDA kernels (_C.WITH_CUDA, "
             "_C.CUDA_ARCH_LIST)"),
        Step("kernels", [py, smoke, "kernels", "--out", str(work / "kernels.json")], 100,
             "AdaGN / posterior / noise / CUDA-graph checks and timings at the real shapes",
             records=str(work / "kernels.json")),
        Step("engine", [py, smoke, "engine", "--out", str(work / "engine.json")], 100,
             "every backend vs torch fp32, 2-NFE + latent timings for cifar10 and celebahq256 (100 images)",
             records=str(work / "engine.json")),
        Step("sanitize", [sanitizer, "--tool", "memcheck", "--error-exitcode", "1", py, smoke, "sanitize"], 75,
             "compute-sanitizer memcheck over every CUDA code path, native and Triton (torch's caching allocator "
             "off, so an access past a tensor is past an allocation)", env={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}),
        Step("train", [py, "-m", "pdgan_train.cli", "--preset", "cifar10", "--data", "digits", "--allow-upscale",
                       "--max-steps", "20", "--batch-size", "64", "--amp", "bf16", "--no-feature-loss",
                       "--latent-steps", "0", "--log-every", "5", "--sample-every", "1000", "--ckpt-every", "1000",
                       "--out", str(train_out), "--overwrite"], 60,  # a rerun replaces the last check's run
             "20 cifar10-preset training steps, batch 64, bf16 autocast, digits upscaled (no data sets offline)",
             records=str(train_out / "metrics.jsonl")),
        Step("pytest", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu and not slow",
                        "tests/test_native_kernels.py", "tests/test_noise.py", "tests/test_optimize.py",
                        "tests/test_triton_kernels.py"], 90,
             "the GPU-marked unit tests (CUDA and Triton kernels within half an ulp of float64, bf16 included; "
             "CPU/GPU noise; CUDA-graph replay with fresh inputs and two batch sizes for optimized/native/triton)"),
        Step("extra", [py, smoke, "extra", "--out", str(work / "extra.json")], 120,
             "the backends run only by name, on digits: onnxruntime (the providers its session runs), tensorrt fp16 "
             "(parse + build), compile (max-autotune + graph capture), each vs torch fp32 (skipped when absent)",
             records=str(work / "extra.json")),
    ]


def _cuda_tool(name: str) -> str | None:
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / name).exists():
            return str(Path(home) / "bin" / name)
    return None


def run_step(step: Step, time_left: float) -> dict:
    """Run one step (stdout + stderr streamed with a prefix and kept), never raising."""
    rec = {"name": step.name, "what": step.what, "cmd": step.cmd, "env": step.env}
    if step.records and step.records.endswith(".json"):  # a previous check's records are never read as this one's
        Path(step.records).unlink(missing_ok=True)  # (the train run's metrics.jsonl: --overwrite deletes them)
    limit = min(step.timeout_s, int(time_left))
    if limit < MIN_STEP_S:
        print(f"gpu-check: [{step.name}] skipped: {int(time_left)} s of the budget left, the step needs "
              f"at least {MIN_STEP_S} s", flush=True)
        return {**rec, "status": "skipped", "rc": None, "seconds": 0.0, "tail": ""}
    print(f"gpu-check: [{step.name}] {step.what} (limit {limit} s)", flush=True)
    env = {**os.environ, **step.env, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), "PYTHONUNBUFFERED": "1"}
    t0, lines = time.perf_counter(), []
    try:
        proc = subprocess.Popen(step.cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
    except OSError as e:
        print(f"gpu-check: [{step.name}] failed: cannot start: {e}", flush=True)
        return {**rec, "status": "failed", "rc": None, "seconds": 0.0, "tail": f"cannot start: {e}"}

    def pump():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            print(f"  {step.name}| {lines[-1]}", flush=True)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    status = "ok"
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        status = "timeout"
        _kill(proc)
    reader.join(timeout=5)
    rc = proc.returncode
    if status == "ok" and rc != 0:
        status = "failed"
    seconds = round(time.perf_counter() - t0, 1)
    print(f"gpu-check: [{step.name}] {status} (exit {rc}) in {seconds} s", flush=True)
    return {**rec, "status": status, "rc": rc, "seconds": seconds, "tail": "\n".join(lines[-60:])}


def _kill(proc: subprocess.Popen) -> None:
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the step's whole process group (it was started in its own session)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def load_records(step: Step) -> list | None:
    if not step.records or not Path(step.records).exists():
        return None
    text = Path(step.records).read_text()
    try:
        if step.records.endswith(".jsonl"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def summarize(results: list[dict]) -> dict:
    """The goals of issue 15 from the step records."""
    by = {r["name"]: r for r in results}
    out: dict = {"goals": GOALS}
    engine = [r for r in (by.get("engine", {}).get("records") or []) if r.get("kind") == "engine"]
    for preset in ("cifar10", "celebahq256"):
        timed = [r for r in engine if r.get("preset") == preset and r.get("ms") and r.get("backend") != "torch"]
        if timed:
            best = min(timed, key=lambda r: r["ms"])
            out[f"{preset}_best"] = {k: best.get(k) for k in ("backend", "dtype", "ms", "runner_ms", "latent_ms",
                                                               "noise_ms", "generate_ms", "max_pixel_diff")}
            out[f"{preset}_meets_goal"] = best["ms"] <= GOALS[f"{preset}_ms"]
    adagn = [r for r in (by.get("kernels", {}).get("records") or []) if r.get("kind") == "adagn" and
             r.get("fraction_hbm") and r.get("impl") in ("native", "triton")]  # not the forced variants
    if adagn:
        big = [r for r in adagn if r["shape"][0] * r["shape"][1] * r["shape"][2] * r["shape"][3] >= 2**24]
        best = max(big or adagn, key=lambda r: r["fraction_hbm"])
        out["adagn_best"] = {k: best.get(k) for k in ("impl", "shape", "dtype", "layout", "us", "fraction_hbm")}
        out["adagn_meets_goal"] = best["fraction_hbm"] >= GOALS["adagn_fraction_hbm"]
    train = by.get("train", {}).get("records") or []
    ips = [r["images_per_s"] for r in train if "images_per_s" in r][1:]  # the first interval includes warm-up
    if ips:
        out["train_images_per_s"] = sorted(ips)[len(ips) // 2]
    checks = [c for r in results for c in (r.get("records") or []) if isinstance(c, dict) and "ok" in c]
    out["checks_passed"], out["checks_failed"] = (sum(c["ok"] for c in checks),
                                                  [c["check"] for c in checks if not c["ok"]])
    out["steps"] = {r["name"]: r["status"] for r in results}
    return out


def markdown(header: dict, results: list[dict], summary: dict) -> str:
    lines = [f"# gpu-check {header['date']}", "", f"GPU: {header.get('gpu')}; commit {header.get('commit')}; "
             f"total {header.get('seconds')} s", "", "| step | status | exit | s | what |", "|---|---|--:|--:|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['status']} | {r['rc']} | {r['seconds']} | {r['what']} |")
    lines += ["", "## Goals (issue 15)", "", "| goal | target | measured | met |", "|---|--:|---|---|"]
    for preset in ("cifar10", "celebahq256"):
        best = summary.get(f"{preset}_best")
        lines.append(f"| {preset}, 100 images, 2 NFE + latent + noise (GPU ms) | {GOALS[preset + '_ms']} | "
                     + (f"{best['ms']:.2f} ({best['backend']} {best['dtype']}) | {summary[preset + '_meets_goal']} |"
                        if best else "not measured | - |"))
    best = summary.get("adagn_best")
    lines.append("| fused AdaGN, fraction of HBM bandwidth | 0.70 | "
                 + (f"{best['fraction_hbm']:.2f} ({best['impl']} {best['dtype']} {best['layout']}) | "
                    f"{summary['adagn_meets_goal']} |" if best else "not measured | - |"))
    if "train_images_per_s" in summary:
        lines.append(f"| cifar10 training, batch 64 bf16 (img/s, informational) | - | "
                     f"{summary['train_images_per_s']:.0f} | - |")
    lines += ["", f"Checks passed: {summary['checks_passed']}; failed: {summary['checks_failed'] or 'none'}", ""]
    for r in results:
        recs = [c for c in (r.get("records") or []) if isinstance(c, dict) and "check" in c]
        if recs:
            lines += [f"## {r['name']}", "", "| check | ok | err | tol | us / ms | vs torch | HBM | note |",
                      "|---|---|--:|--:|--:|--:|--:|---|"]
            for c in recs:
                t = f"{c['us']:.1f} us" if "us" in c else f"{c['ms']:.2f} ms" if "ms" in c else "-"
                lines.append(f"| {c['check']} | {c['ok']} | {_g(c.get('err', c.get('mean_err')))} | {_g(c.get('tol'))} "
                             f"| {t} | {_g(c.get('speedup_vs_torch'))} | {_g(c.get('fraction_hbm'))} "
                             f"| {(c.get('error') or '')[:120]} |")
            lines.append("")
    for r in results:
        if r["status"] != "ok":
            lines += [f"## {r['name']}: {r['status']}", "", "```", r["tail"][-3000:], "```", ""]
    return "\n".join(lines)


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def write_results(header: dict, results: list[dict], out_dir: Path = RESULTS) -> tuple[Path, Path]:
    summary = summarize(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"gpu-{header['date'][:10]}"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps({"header": header, "summary": summary, "steps": results}, indent=1,
                                    default=str) + "\n")
    md_path.write_text(markdown(header, results, summary) + "\n")
    return json_path, md_path


def print_plan(plan: list[Step], why: str) -> None:
    print(f"gpu-check: {why}; it would run these steps (budget {BUDGET_S} s, each step in its own process):")
    for s in plan:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in s.env.items())
        cmd = shlex.join(s.cmd)  # as a shell would take it
        print(f"  [{s.name}] {s.what} (limit {s.timeout_s} s)\n      {env + ' ' if env else ''}"
              f"{cmd if len(cmd) < 400 else cmd[:400] + ' ...'}")
    print(f"gpu-check: results would go to {RESULTS}/gpu-<date>.json and .md")


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", action="store_true", help="print the steps and exit")
    p.add_argument("--only", help="comma-separated step names (default: all)")
    p.add_argument("--budget", type=int, default=BUDGET_S, help="seconds for all steps together")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    work = Path(os.environ.get("PDGAN_GPU_CHECK_WORK", "/tmp/pdgan-gpu-check"))
    plan = steps(sys.executable, work)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        unknown = wanted - {s.name for s in plan}
        if unknown:
            p.error(f"unknown steps {sorted(unknown)}; choose from {[s.name for s in plan]}")
        plan = [s for s in plan if s.name in wanted]
    try:
        import torch
        gpu = torch.cuda.is_available()
        why = "no CUDA GPU here (torch.cuda.is_available() is False)"
    except ImportError as e:
        gpu, why = False, f"torch does not import ({e})"
    if args.plan or not gpu:
        print_plan(plan, "--plan" if args.plan else why)
        return 0
    work.mkdir(parents=True, exist_ok=True)
    header = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": _git_commit(),
              "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
              "budget_s": args.budget}
    t0, results = time.perf_counter(), []
    for step in plan:
        rec = run_step(step, args.budget - (time.perf_counter() - t0))
        rec["records"] = load_records(step)
        results.append(rec)
    header["seconds"] = round(time.perf_counter() - t0, 1)
    json_path, md_path = write_results(header, results, args.out_dir)
    summary = summarize(results)
    print(f"gpu-check: steps {summary['steps']}; checks passed {summary['checks_passed']}, failed "
          f"{len(summary['checks_failed'])}")
    print(f"gpu-check: wrote {json_path} and {md_path}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
