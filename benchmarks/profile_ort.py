"""Where ONNX Runtime's CPU time goes on the project's exported sampler graph: per ONNX op type, from ORT's own
profiler (`SessionOptions.enable_profiling`), one timed run after a warm-up. The counterpart of profile_cpu.py
(which sees an exported runtime as one opaque op), so pdgan's fp32 convolutions can be compared with ORT's.

    python benchmarks/profile_ort.py --preset cifar10 --n 16 --threads 2 [--out FILE]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from pdgan_infer import Engine
from pdgan_infer.bench import device_name
from pdgan_infer.export.cache import cached_onnx


def profile(preset: str, n: int, threads: int) -> tuple[float, collections.Counter, collections.Counter]:
    """(wall seconds of the timed run, microseconds per op type, calls per op type)."""
    import onnxruntime as ort

    engine = Engine.from_preset(preset, backend="torch", seed=0)
    path, _ = cached_onnx(engine.model, "float32")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"pdgan-ort-profile-{os.getpid()}")
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([n if not isinstance(d, int) else d for d in i.shape]).astype(np.float32)
             for i in session.get_inputs()}
    session.run(None, feeds)  # warm-up
    t = time.perf_counter()
    session.run(None, feeds)
    wall = time.perf_counter() - t
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    last = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][-1]
    t0, t1 = last["ts"], last["ts"] + last["dur"]
    times, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and t0 <= e["ts"] <= t1:
            op = e.get("args", {}).get("op_name", "?")
            times[op] += e["dur"]
            calls[op] += 1
    return wall, times, calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--n", type=int, default=16, help="images in the batch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--out", type=Path, help="also write the table here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    wall, times, calls = profile(args.preset, args.n, args.threads)
    total = sum(times.values())
    lines = [f"# ONNX Runtime profile: {args.preset} sampler graph (2 NFE), float32, n={args.n}, "
             f"{args.threads} threads",
             f"cpu: {device_name(torch.device('cpu'))}; {datetime.now(timezone.utc).isoformat(timespec='seconds')}; "
             f"load average {os.getloadavg()[0]:.2f}",
             f"wall of the timed run: {wall * 1e3:.0f} ms; node time {total / 1e3:.0f} ms", "",
             "| op type | ms | share | calls |", "|---|--:|--:|--:|"]
    lines += [f"| {op} | {us / 1e3:.1f} | {us / total:.1%} | {calls[op]} |" for op, us in times.most_common(args.rows)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
