"""`make gpu-check`: the GPU checks and timings of pdgan in one command, a default plan of at most 5 minutes on
one H100 without network (torch + CUDA, triton; nothing is pip-installed).

    python benchmarks/gpu_check.py                     # on a GPU machine: run the default plan
    python benchmarks/gpu_check.py --plan              # print the steps, their limits and commands only
    python benchmarks/gpu_check.py --only engine,train # some steps (any step, in plan order)
    python benchmarks/gpu_check.py --out-dir DIR       # where the results go (default: $OUT, else benchmarks/results)
    make gpu-check GPU_CHECK_ARGS="--only kernels"

Default plan (each step a subprocess in its own session with its own time limit; the limits sum to <= 300 s;
a failing, timed-out or skipped step is recorded and the next one runs):

    env         nvidia-smi, versions (torch, CUDA, cuDNN, triton, setuptools, numpy, ONNX Runtime, TensorRT), nvcc
    build       setup.py build_ext --inplace with PDGAN_CUDA_ARCH="9.0", then pdgan_infer._C loads with CUDA kernels;
                when it fails, the later steps run with PDGAN_SKIP_EXT=1 (native rows fail, saying why)
    engine      cifar10 and celebahq256 at 100 images, torch / optimized / native / triton x float32 / bfloat16:
                images against torch float32 with TF32 off, replay determinism, GPU time of the 2-NFE chain +
                latent sampler + noise (p10 / p50 / p90) against the goals, generate() end to end, each row's own
                peak memory; then DDGAN's generators (ddgan-cifar10 4 NFE, ddgan-celebahq256 2 NFE: torch float32,
                native bf16 / float32) against DDGAN's published 0.21 s / 1.73 s; torch float32 timed again (drift)
    crosscheck  8 cifar10 images of the same seeds from the CPU (torch backend) and the GPU (torch, optimized;
                float32, TF32 off): the max difference in uint8 levels (goal <= 1)
    kernels     fused AdaGN (native, Triton) at the shapes that matter, bf16 / fp32 channels_last timed against
                the unfused torch sequence and as a fraction of HBM bandwidth (bytes by plan: single path 2 passes,
                split 3; L2 flushed between repetitions), fp16 / NCHW for correctness; posterior step against
                c1*x0 + c2*xt + s*z; draw_noise against the CPU; SDPA and group_norm kernels; CUDA-graph replay.
                Triton's compiles run first in a process pool.
    profile     torch.profiler over one cifar10 2-NFE forward (100 images, optimized and native bf16, eager):
                time and share per kernel class (convolution, AdaGN/group-norm, attention, copies/elementwise,
                other)
    pytest      the GPU-marked tests (-m "gpu and not slow") of the kernel, noise and optimisation test files

Only with --only: sanitize (compute-sanitizer memcheck, --error-exitcode 86, over small launches of every CUDA
code path), train (20 cifar10-preset training steps, batch 64, bf16, on digits), extra (onnxruntime, tensorrt
and compile on digits; a backend that cannot run is recorded as skipped).

Results, rewritten (temp file + replace) after every step, so a run cut at any point keeps what it finished:
OUT_DIR/gpu-check.json (header, summary with the goals, every step's command, status, seconds, output tail and
records) and OUT_DIR/gpu-check.md; the steps that record while they run (engine, crosscheck, kernels, profile,
extra) write OUT_DIR/<step>.json themselves. Child logs and the training run go to $PDGAN_GPU_CHECK_WORK
(default /tmp/pdgan-gpu-check). Standard output gets one line per step start and end and a summary at the end,
also after SIGTERM / SIGINT (the files are written, the exit status is 128 + the signal). The commit is
$PDGAN_COMMIT, else `git rev-parse`, else null. Without a GPU (no `nvidia-smi -L` device) the plan is printed and
the exit status is 0. A run that is kept is committed to benchmarks/results/ under the results naming scheme,
e.g. DATE-h100-gpu-check.json and .md (benchmarks/results_index.py).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from gpu_report import markdown, print_summary, summarize  # noqa: E402
from gpu_timing import atomic_write  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PLAN_LIMIT_S = 300  # the default plan's step limits sum to at most this
MIN_STEP_S = 5  # a step with less of the budget left is skipped
STOP_GRACE_S = 5  # a stopped step gets SIGINT, then SIGKILL after this
TAIL_LINES = 60
BUILD_ARCH = "9.0"
SANITIZER_EXIT = 86  # compute-sanitizer's exit status when memcheck finds an error (not a Python failure's 1)
DEFAULT_PLAN = ["env", "build", "engine", "crosscheck", "kernels", "profile", "pytest"]
ALL_STEPS = DEFAULT_PLAN + ["sanitize", "train", "extra"]
JSON_NAME, MD_NAME = "gpu-check.json", "gpu-check.md"


@dataclass
class Step:
    name: str
    cmd: list[str]
    timeout_s: int
    what: str
    env: dict[str, str] = field(default_factory=dict)
    records: str | None = None  # the file the step writes its records to (JSON list, .jsonl, or pytest's log)


class Cut(Exception):
    """SIGTERM / SIGINT reached the parent."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def steps(py: str, work: Path, out_dir: Path) -> list[Step]:
    """Every step in plan order (ALL_STEPS). Records that a step writes while it runs go to out_dir; the
    rest (env, build, train) to the work folder, folded into gpu-check.json after the step."""
    smoke = str(HERE / "gpu_smoke.py")
    sanitizer = shutil.which("compute-sanitizer") or _cuda_tool("compute-sanitizer") or "compute-sanitizer"
    train_out = work / "train-cifar10"

    def group(name: str, limit: int, what: str, live: bool, *extra: str) -> Step:
        rec = str((out_dir if live else work) / f"{name}.json")
        return Step(name, [py, smoke, name, "--out", rec, *extra], limit, what, records=rec)
    by = {
        "env": group("env", 15, "nvidia-smi, versions (torch, CUDA, cuDNN, triton, setuptools, ONNX Runtime, "
                     "TensorRT), nvcc", False),
        "build": group("build", 70, f"setup.py build_ext --inplace for PDGAN_CUDA_ARCH={BUILD_ARCH!r}, then the "
                       "extension loads with CUDA kernels", False, "--arch", BUILD_ARCH),
        "engine": group("engine", 95, "cifar10 + celebahq256 at 100 images, every backend x float32/bfloat16 vs torch "
                        "float32 (TF32 off), 2-NFE + latent + noise timings, drift", True),
        "crosscheck": group("crosscheck", 20, "same seeds, CPU vs GPU images (float32, TF32 off), max uint8 "
                            "difference", True),
        "kernels": group("kernels", 45, "fused AdaGN / posterior / noise / SDPA / graph checks, do_bench-style "
                         "timings, fraction of HBM", True),
        "profile": group("profile", 20, "torch.profiler: one cifar10 2-NFE forward by kernel class", True),
        "pytest": Step("pytest", [py, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", "-m", "gpu and not slow",
                                  "tests/kernels/test_adagn.py", "tests/kernels/test_posterior.py",
                                  "tests/kernels/test_philox.py", "tests/kernels/test_triton.py",
                                  "tests/kernels/test_native.py", "tests/infer/test_sampler.py",
                                  "tests/infer/test_optimize.py"], 35,
                       "the GPU-marked tests (CUDA and Triton kernels, noise, CUDA-graph replay)",
                       records="pytest-log"),
        "sanitize": Step("sanitize", [sanitizer, "--tool", "memcheck", "--error-exitcode", str(SANITIZER_EXIT), py,
                                      smoke, "sanitize"], 90,
                         f"compute-sanitizer memcheck over every CUDA code path (exit {SANITIZER_EXIT}: an error "
                         "found; torch's caching allocator off)", env={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}),
        "train": Step("train", [py, "-m", "pdgan_train", "--preset", "cifar10", "--data", "digits",
                                "--allow-upscale", "--max-steps", "20", "--batch-size", "64", "--amp", "bf16",
                                "--no-feature-loss", "--latent-steps", "0", "--log-every", "5", "--sample-every",
                                "1000", "--ckpt-every", "1000", "--out", str(train_out), "--overwrite"], 90,
                      "20 cifar10-preset training steps, batch 64, bf16 autocast, digits upscaled",
                      records=str(train_out / "metrics.jsonl")),
        "extra": group("extra", 180, "onnxruntime / tensorrt fp16 / compile on digits vs torch float32 (skipped when "
                       "they cannot run)", True),
    }
    return [by[name] for name in ALL_STEPS]


def default_plan(all_steps: list[Step]) -> list[Step]:
    return [s for s in all_steps if s.name in DEFAULT_PLAN]


def _cuda_tool(name: str) -> str | None:
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / name).exists():
            return str(Path(home) / "bin" / name)
    return None


def default_out_dir() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS


def work_dir() -> Path:
    return Path(os.environ.get("PDGAN_GPU_CHECK_WORK", "/tmp/pdgan-gpu-check"))


# --- running --------------------------------------------------------------------------------------------
def run_step(step: Step, time_left: float, log_path: Path, extra_env: dict | None = None) -> dict:
    """Run one step with its output in log_path (not on stdout); never raises, except Cut (SIGTERM / SIGINT
    while the step runs), which stops the child first and carries the step's record (status "cut") as
    `Cut.record`."""
    rec = {"name": step.name, "what": step.what, "cmd": step.cmd, "env": step.env, "log": str(log_path)}
    if step.records and step.records.endswith((".json", ".jsonl")):  # never read the last run's records as these
        Path(step.records).unlink(missing_ok=True)
    limit = min(step.timeout_s, time_left)
    if limit < min(MIN_STEP_S, step.timeout_s):  # the budget, not the step, is too short
        print(f"gpu-check: [{step.name}] skipped: {time_left:.0f} s of the budget left", flush=True)
        return {**rec, "status": "skipped", "rc": None, "seconds": 0.0, "limit_s": round(limit), "tail": ""}
    limit = int(limit)
    print(f"gpu-check: [{step.name}] start (limit {limit} s): {step.what}", flush=True)
    env = {**os.environ, **(extra_env or {}), **step.env, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen(step.cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            log.write(f"cannot start: {e}\n")
            print(f"gpu-check: [{step.name}] failed: cannot start: {e}", flush=True)
            return {**rec, "status": "failed", "rc": None, "seconds": 0.0, "limit_s": limit,
                    "tail": f"cannot start: {e}"}
        status, cut = "ok", None
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            status = "timeout"
            _stop(proc)
        except Cut as c:
            status, cut = "cut", c
            _stop(proc)
    rc = proc.returncode
    if status == "ok" and rc != 0:
        status = "failed"
    seconds = round(time.perf_counter() - t0, 1)
    out = {**rec, "status": status, "rc": rc, "seconds": seconds, "limit_s": limit, "tail": _tail(log_path)}
    print(f"gpu-check: [{step.name}] {status} (exit {rc}) in {seconds} s", flush=True)
    if status != "ok":
        for line in out["tail"].splitlines()[-3:]:
            print(f"    {step.name}| {line[:200]}", flush=True)
    if cut is not None:
        cut.record = out
        raise cut
    return out


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the step's process group (pytest prints its summary, Python steps unwind), SIGKILL after
    STOP_GRACE_S."""
    for sig, wait in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            if sig == signal.SIGKILL:
                proc.kill()
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = TAIL_LINES, chars: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])[-chars:]


def load_records(step: Step, log_path: Path | None = None) -> list | None:
    """The records a step wrote (JSON list, JSON lines), or for pytest the failures and totals of its log."""
    if step.records == "pytest-log":
        return pytest_records(log_path.read_text(errors="replace")) if log_path and log_path.exists() else None
    if not step.records or not Path(step.records).exists():
        return None
    text = Path(step.records).read_text()
    try:
        if step.records.endswith(".jsonl"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)
    except json.JSONDecodeError:
        return None


_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def pytest_records(log: str) -> list[dict]:
    """A record per failed or erroring test (pytest -rfE lines) and one totals record (no "ok": not a check)."""
    recs = []
    for line in log.splitlines():
        m = re.match(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", line.strip())
        if m:
            recs.append({"check": f"pytest {m.group(2)}", "kind": "pytest", "ok": False,
                         "error": (m.group(3) or m.group(1))[:300]})
    totals = {}
    for line in reversed(log.splitlines()):
        if re.search(r"\d+ (passed|failed|error)", line) and (" in " in line or "=" in line):
            totals = {("errors" if k.startswith("error") else k): int(n) for n, k in _PYTEST_COUNT.findall(line)}
            break
    recs.append({"check": "pytest totals", "kind": "pytest_totals", **totals,
                 "interrupted": "KeyboardInterrupt" in log})
    return recs


# --- the run --------------------------------------------------------------------------------------------
def commit() -> tuple[str | None, str]:
    """(commit, where it came from): $PDGAN_COMMIT set by the caller, else git in the source tree, else None."""
    if os.environ.get("PDGAN_COMMIT"):
        return os.environ["PDGAN_COMMIT"], "PDGAN_COMMIT"
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        return (out or None), "git"
    except (OSError, subprocess.SubprocessError):
        return None, "none: PDGAN_COMMIT unset and no git checkout"


def gpu_name() -> str | None:
    """The first GPU `nvidia-smi -L` lists (None: no GPU, or no nvidia-smi)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = [line.strip() for line in out.splitlines() if line.startswith("GPU ")]
    return gpus[0] if gpus else None


def write_results(out_dir: Path, header: dict, results: list[dict]) -> tuple[Path, Path, dict]:
    """gpu-check.json and gpu-check.md in out_dir, each through a temp file and os.replace."""
    summary = summarize(results)
    json_path, md_path = out_dir / JSON_NAME, out_dir / MD_NAME
    atomic_write(json_path, json.dumps({"header": header, "summary": summary, "steps": results}, indent=1,
                                       default=str) + "\n")
    atomic_write(md_path, markdown(header, results, summary) + "\n")
    return json_path, md_path, summary


def execute(plan: list[Step], out_dir: Path, work: Path, header: dict, budget: float) -> int:
    """Run the plan; after every step fold its records in and rewrite the results. SIGTERM / SIGINT stop the
    running step, write the results with what finished, print the summary; the return value is then
    128 + the signal."""
    def on_signal(signum, frame):
        for s in (signal.SIGTERM, signal.SIGINT):  # one cut: the results are written once, not interrupted
            signal.signal(s, signal.SIG_IGN)
        raise Cut(signum)
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    t0, results, extra_env, cut = time.perf_counter(), [], {}, None
    header = {**header, "plan": [s.name for s in plan], "budget_s": budget, "out_dir": str(out_dir),
              "work_dir": str(work)}
    try:
        for step in plan:
            try:
                rec = run_step(step, budget - (time.perf_counter() - t0), work / f"{step.name}.log", extra_env)
            except Cut as c:
                cut, rec = c, getattr(c, "record", None)
            if rec is not None:
                rec["records"] = load_records(step, work / f"{step.name}.log")
                results.append(rec)
            if step.name == "build" and rec is not None and rec["status"] != "ok":
                extra_env["PDGAN_SKIP_EXT"] = "1"  # the later steps run without the extension, saying so
                header["skip_ext"] = f"build {rec['status']}: later steps ran with PDGAN_SKIP_EXT=1"
            if cut is not None:
                break
            header["seconds"] = round(time.perf_counter() - t0, 1)
            write_results(out_dir, header, results)
    except Cut as c:  # between steps, while writing
        cut = c
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_IGN if cut is not None else handler)
        done = {r["name"] for r in results}
        for step in plan:
            if step.name not in done:
                results.append({"name": step.name, "what": step.what, "cmd": step.cmd, "env": step.env,
                                "status": "not run", "rc": None, "seconds": 0.0, "tail": "", "records": None})
        header["seconds"] = round(time.perf_counter() - t0, 1)
        if cut is not None:
            header["cut"] = f"{cut} after {header['seconds']} s"
        json_path, md_path, summary = write_results(out_dir, header, results)
        print_summary(header, summary, json_path, md_path)
    if cut is not None:
        return 128 + cut.signum
    return 0 if all(r["status"] == "ok" for r in results) else 1


def print_plan(plan: list[Step], why: str, out_dir: Path) -> None:
    total = sum(s.timeout_s for s in plan)
    print(f"gpu-check: {why}; the plan ({len(plan)} steps, each in its own process):")
    for s in plan:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in s.env.items())
        cmd = shlex.join(s.cmd)
        print(f"  [{s.name}] limit {s.timeout_s} s: {s.what}\n      {env + ' ' if env else ''}"
              f"{cmd if len(cmd) < 300 else cmd[:300] + ' ...'}")
    print(f"gpu-check: step limits sum to {total} s; results would go to {out_dir}/{JSON_NAME} and {MD_NAME}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--plan", action="store_true", help="print the steps, their limits and commands, and exit 0")
    p.add_argument("--only", help=f"comma-separated steps, any of {','.join(ALL_STEPS)} (run in that order)")
    p.add_argument("--out-dir", type=Path, default=None, help="results folder (default: $OUT when set, else "
                   f"{RESULTS.relative_to(ROOT)})")
    p.add_argument("--budget", type=float, default=None, help="seconds for all steps together (default: the sum "
                   "of the chosen steps' limits)")
    args = p.parse_args(argv)
    out_dir = args.out_dir or default_out_dir()
    work = work_dir()
    every = steps(sys.executable, work, out_dir)
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(ALL_STEPS))
        if unknown or not wanted:
            p.error(f"unknown steps {unknown}; choose from {ALL_STEPS}")
        plan = [s for s in every if s.name in wanted]
    else:
        plan = default_plan(every)
    gpu = None if args.plan else gpu_name()
    if args.plan or gpu is None:
        print_plan(plan, "--plan" if args.plan else "no CUDA GPU here (nvidia-smi -L lists none)", out_dir)
        return 0
    sha, source = commit()
    header = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": sha,
              "commit_source": source, "gpu": gpu, "python": sys.executable, "argv": sys.argv[1:]}
    budget = args.budget if args.budget is not None else sum(s.timeout_s for s in plan)
    return execute(plan, out_dir, work, header, budget)


if __name__ == "__main__":
    sys.exit(main())
