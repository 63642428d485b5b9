"""Peak memory of `Engine.generate(n)` on the CPU does not grow with n beyond the result itself.

    python benchmarks/bench_memory.py                       # digits, n = 1000 and 10000, batch 100
    python benchmarks/bench_memory.py --ns 1000,10000 --batch-size 100 --backend optimized --threads 2

Every (mode, n) runs in a fresh subprocess: build the engine, one warm-up batch (allocator pools,
oneDNN primitive caches), then reset the peak-RSS counter (Linux: write 5 to /proc/self/clear_refs,
which resets VmHWM) and record the RSS; run; read VmHWM. Reported per run:

* base_rss_mb: resident memory after the warm-up (weights, libraries, caches);
* peak_rss_mb: VmHWM during the run; growth_mb = peak - base;
* result_mb: the size of the (n, H, W, 3) uint8 result (`generate` must hold it; `stream` mode
  consumes `iter_batches` and keeps nothing, so its growth must be flat in n);
* tracemalloc_peak_mb: peak of Python-level allocations (numpy included, torch's allocator not);
* seconds and images/s.

Bounded memory means: growth(generate, n) - result_mb(n) and growth(stream, n) do not grow with n.
The JSON (header + records) goes to benchmarks/results/DATE-MACHINE-memory.json; MACHINE is $PDGAN_MACHINE, a name
from MACHINES in benchmarks/results_index.py (e.g. xeon-amx); without it, unnamed-machine, which
`results_index.py --check` rejects until the file is renamed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = os.environ.get("PDGAN_MACHINE", "unnamed-machine")  # benchmarks/results_index.py


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(args: argparse.Namespace) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from pdgan_infer.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine.from_preset(args.preset, seed=0, backend=args.backend, device="cpu", dtype=args.dtype,
                                batch_size=args.batch_size, progress=False, verbose=False)
    engine.generate(args.batch_size, seed=1)  # warm-up, not measured
    resettable = _reset_peak()
    base_kb = _status_kb("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    if args.mode == "generate":
        images = engine.generate(args.n, seed=0)
        count, result_bytes = len(images), images.nbytes
    else:
        count = 0
        for batch in engine.iter_batches(args.n, seed=0):
            count += len(batch)
        result_bytes = 0
    seconds = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_kb = _status_kb("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": args.mode, "n": args.n, "images": count, "batch_size": args.batch_size,
            "backend": engine.backend, "dtype": args.dtype, "threads": torch.get_num_threads(),
            "base_rss_mb": base_kb / 1024, "peak_rss_mb": peak_kb / 1024, "growth_mb": (peak_kb - base_kb) / 1024,
            "result_mb": result_bytes / 2**20, "tracemalloc_peak_mb": py_peak / 2**20,
            "peak_resettable": resettable, "seconds": seconds, "images_per_s": count / seconds}


def header(argv: list[str]) -> dict:
    import torch
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "git_commit": commit or None, "load_average": os.getloadavg(),
            "command": " ".join(["python", "benchmarks/bench_memory.py", *argv])}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="digits")
    p.add_argument("--ns", default="1000,10000", help="comma-separated image counts")
    p.add_argument("--modes", default="generate,stream", help="generate (hold the result) and/or stream")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--backend", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/results/DATE-MACHINE-memory.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    records = []
    for mode in args.modes.split(","):
        for n in (int(v) for v in args.ns.split(",")):
            cmd = [sys.executable, __file__, "--child", "--mode", mode, "--n", str(n), "--preset", args.preset,
                   "--batch-size", str(args.batch_size), "--backend", args.backend, "--dtype", args.dtype]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print(f"bench_memory: {mode} n={n} ...", file=sys.stderr, flush=True)
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rec = json.loads(out.strip().splitlines()[-1])
            records.append(rec)
            print(f"  peak {rec['peak_rss_mb']:.1f} MB, growth {rec['growth_mb']:.1f} MB (result {rec['result_mb']:.1f}"
                  f" MB), {rec['images_per_s']:.1f} img/s", file=sys.stderr, flush=True)
    result = {"header": header(argv), "records": records}
    by = {(r["mode"], r["n"]): r for r in records}
    ns = sorted({r["n"] for r in records})
    if len(ns) >= 2:
        lo, hi = ns[0], ns[-1]
        result["summary"] = {
            mode: {"growth_minus_result_mb": {n: by[(mode, n)]["growth_mb"] - by[(mode, n)]["result_mb"] for n in ns},
                   f"extra_growth_{hi}_vs_{lo}_mb": (by[(mode, hi)]["growth_mb"] - by[(mode, hi)]["result_mb"])
                   - (by[(mode, lo)]["growth_mb"] - by[(mode, lo)]["result_mb"])}
            for mode in {r["mode"] for r in records} if (mode, lo) in by and (mode, hi) in by}
    path = args.out or ROOT / "benchmarks" / "results" / f"{datetime.date.today().isoformat()}-{MACHINE}-memory.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result.get("summary", {}), indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
