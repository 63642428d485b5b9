"""Interleaved A/B timing of `Engine.generate(n)` (2 NFE, random weights) across backends on the CPU.

    python benchmarks/bench_engine_cpu.py --preset cifar10 --n 100 --rounds 3 --threads 2 \
        torch:float32 optimized:bfloat16 native:bfloat16

The first config is the reference. Every engine is built and warmed up (one untimed call) first;
then the configs are timed in turn, round after round, so that load from other processes hits
them alike. Per config: wall-clock and process CPU seconds (min and median over rounds) and their
ratio to the reference. On a shared machine the CPU time (work done) is the steadier measure and
the minimum wall time the closest to an idle machine; the load average is recorded with each run.
Results: benchmarks/results/DATE-MACHINE-engine-cpu-<preset>-<threads>thread.json (header with versions, commit,
command); MACHINE is $PDGAN_MACHINE, a name
from MACHINES in benchmarks/results_index.py (e.g. xeon-amx); without it, unnamed-machine, which
`results_index.py --check` rejects until the file is renamed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = os.environ.get("PDGAN_MACHINE", "unnamed-machine")  # benchmarks/results_index.py


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="*", default=["torch:float32", "optimized:bfloat16"], help="BACKEND:DTYPE")
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--n", type=int, default=100, help="images per timed call (one batch)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import torch
    sys.path.insert(0, str(ROOT))
    from pdgan_infer.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [tuple(c.split(":")) if ":" in c else (c, "float32") for c in args.configs]
    engines = {}
    for backend, dtype in configs:
        t = time.perf_counter()
        e = Engine.from_preset(args.preset, seed=0, backend=backend, dtype=dtype, batch_size=args.n,
                               progress=False, verbose=False)
        e.generate(args.n, seed=0)  # warm-up: oneDNN primitives, allocator, lazy inits
        engines[(backend, dtype)] = e
        print(f"built + warmed {backend}:{dtype} in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    raw = {c: {"wall_s": [], "cpu_s": [], "load": []} for c in configs}
    images = {}
    for r in range(args.rounds):
        for c, e in engines.items():
            load = os.getloadavg()[0]
            t, cpu = time.perf_counter(), time.process_time()
            images[c] = e.generate(args.n, seed=0)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            for k, v in (("wall_s", wall), ("cpu_s", cpu), ("load", load)):
                raw[c][k].append(v)
            print(f"round {r} {':'.join(c)}: wall {wall:.2f} s, cpu {cpu:.2f} s (load {load:.1f})",
                  file=sys.stderr, flush=True)
    ref = configs[0]
    records = []
    for c in configs:
        rec = {"backend": c[0], "dtype": c[1], "n": args.n, "nfe": engines[c].model.schedule.T,
               "threads": torch.get_num_threads(), **raw[c],
               "max_pixel_diff_vs_ref": int(abs(images[c].astype(int) - images[ref]).max())}
        for k in ("wall_s", "cpu_s"):
            rec[f"{k}_min"], rec[f"{k}_median"] = min(raw[c][k]), statistics.median(raw[c][k])
            rec[f"{k}_min_ratio_vs_ref"] = min(raw[c][k]) / min(raw[ref][k])
            rec[f"{k}_median_ratio_vs_ref"] = statistics.median(raw[c][k]) / statistics.median(raw[ref][k])
        records.append(rec)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    header = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
              "git_commit": commit or None, "preset": args.preset,
              "command": " ".join(["python", "benchmarks/bench_engine_cpu.py", *argv])}
    name = (f"{datetime.date.today()}-{MACHINE}-engine-cpu-{args.preset}-"
            f"{torch.get_num_threads()}thread.json")
    out = args.out or ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"header": header, "records": records}, indent=2) + "\n")
    print("| backend | dtype | wall min s | wall median s | cpu min s | cpu median s | cpu min / ref | max px diff |")
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for rec in records:
        print(f"| {rec['backend']} | {rec['dtype']} | {rec['wall_s_min']:.2f} | {rec['wall_s_median']:.2f} | "
              f"{rec['cpu_s_min']:.2f} | {rec['cpu_s_median']:.2f} | {rec['cpu_s_min_ratio_vs_ref']:.3f} | "
              f"{rec['max_pixel_diff_vs_ref']} |")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
