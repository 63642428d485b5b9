"""Load benchmark of pdgan-serve (NVIDIA Triton Inference Server) next to the in-process Engine.

    .venv/bin/python benchmarks/bench_serve.py                       # bundled digits, concurrency 1, 4, 16
    .venv/bin/python benchmarks/bench_serve.py --backend native --requests 128 --json out.json

Starts `pdgan-serve digits` from the serving environment (.venv-serve, `make serve-env`) on free ports, then for
each concurrency c keeps c HTTP requests of one seed each in flight (tritonclient.http async_infer, each client
slot sends its next request when its previous one returned) and reports requests/s (= images/s), p50 and p99
latency, and the server's executions per request (dynamic batching). Next to it, in this process, the same model
and backend: `Engine.generate(seeds=[s])` one image at a time (the c=1 counterpart without HTTP) and
`Engine.generate(seeds=range(max_batch))` in one batch (the throughput bound). Warm-up requests are not timed.
Writes JSON (default benchmarks/results/DATE-MACHINE-serve-digits-BACKEND.json) and prints a Markdown table;
MACHINE is $PDGAN_MACHINE, a name
from MACHINES in benchmarks/results_index.py (e.g. xeon-amx); without it, unnamed-machine, which
`results_index.py --check` rejects until the file is renamed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from pdgan_infer import Engine
from pdgan_infer.bench import device_name
from pdgan_infer.serve.process import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
MACHINE = os.environ.get("PDGAN_MACHINE", "unnamed-machine")  # benchmarks/results_index.py


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def load(url: str, concurrency: int, requests: int, first_seed: int) -> dict:
    """`requests` one-seed requests, `concurrency` in flight at a time; latencies in ms."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url, concurrency=concurrency, network_timeout=600)
    latencies, lock, seeds = [], threading.Lock(), iter(range(first_seed, first_seed + requests))

    def worker() -> None:
        while True:
            with lock:
                seed = next(seeds, None)
            if seed is None:
                return
            x = httpclient.InferInput("SEED", [1, 1], "INT64")
            x.set_data_from_numpy(np.array([[seed]], np.int64))
            t0 = time.perf_counter()
            image = client.infer("pdgan", [x]).as_numpy("IMAGE")
            dt = time.perf_counter() - t0
            assert image.shape[0] == 1
            with lock:
                latencies.append(dt * 1e3)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    client.close()
    return {"concurrency": concurrency, "requests": requests, "wall_s": round(wall, 3),
            "requests_per_s": round(requests / wall, 3), "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1)}


def counters(text: str) -> dict[str, float]:
    return {name: float(re.search(rf'^{name}{{model="pdgan",version="1"}} (\S+)$', text, re.M).group(1))
            for name in ("nv_inference_exec_count", "nv_inference_request_success", "nv_inference_count")}


def in_process(backend: str, max_batch: int, requests: int) -> list[dict]:
    engine = Engine.from_pretrained("digits", backend=backend, batch_size=max_batch)
    engine.generate(seeds=[0])  # warm-up
    engine.generate(seeds=range(max_batch))
    times = []
    for s in range(requests):
        t0 = time.perf_counter()
        engine.generate(seeds=[10_000 + s])
        times.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    engine.generate(seeds=range(20_000, 20_000 + max_batch))
    batch_s = time.perf_counter() - t0
    return [{"what": "Engine.generate, one image per call", "images_per_s": round(1e3 / statistics.mean(times), 3),
             "p50_ms": round(percentile(times, 50), 1), "p99_ms": round(percentile(times, 99), 1),
             "backend": engine.backend},
            {"what": f"Engine.generate, {max_batch} images in one call", "images_per_s": round(max_batch / batch_s, 3),
             "call_ms": round(batch_s * 1e3, 1), "backend": engine.backend}]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="torch", help="Engine backend, for the server and in-process")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=64, help="timed requests per concurrency level")
    p.add_argument("--serve-python", default=str(ROOT / ".venv-serve" / "bin" / "python"))
    p.add_argument("--note", default="", help="recorded in the JSON (e.g. what else ran on the machine)")
    p.add_argument("--json", type=Path, help="default benchmarks/results/DATE-MACHINE-serve-digits-BACKEND.json")
    args = p.parse_args(argv)
    cpu = device_name(torch.device("cpu"))
    out = args.json or ROOT / "benchmarks" / "results" / (
        f"{date.today().isoformat()}-{MACHINE}-serve-digits-{args.backend}.json")
    load_before = os.getloadavg()
    rows = []
    with ServeProcess(["digits", "--backend", args.backend, "--max-batch-size", str(args.max_batch_size)],
                      python=args.serve_python, log=Path(tempfile.gettempdir()) / "bench_serve.server.log",
                      cwd=ROOT) as server:
        load(server.url, 1, 4, 0)  # warm-up, not timed
        for i, c in enumerate(args.concurrency):
            before = counters(server.metrics_text())
            row = load(server.url, c, args.requests, 1_000 * (i + 1))
            after = counters(server.metrics_text())
            executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
            row["server_executions"] = int(executions)
            row["images_per_execution"] = round(args.requests / max(executions, 1), 2)
            rows.append(row)
            print(f"pdgan-serve c={c}: {row}", flush=True)
    engine_rows = in_process(args.backend, args.max_batch_size, min(args.requests, 32))
    result = {"benchmark": "bench_serve", "date": date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
              "model": "digits (bundled, 32x32)", "backend": args.backend, "max_batch_size": args.max_batch_size,
              "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
              "torch": torch.__version__, "load_average_before": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()], "note": args.note,
              "command": " ".join(["benchmarks/bench_serve.py", *(sys.argv[1:] if argv is None else argv)]),
              "pdgan_serve": rows, "in_process": engine_rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return 0


def table(result: dict) -> str:
    lines = ["| what | concurrency | requests/s (images/s) | p50 ms | p99 ms | images per execution |",
             "|---|--:|--:|--:|--:|--:|"]
    for r in result["pdgan_serve"]:
        lines.append(f"| pdgan-serve (HTTP, 1 seed per request) | {r['concurrency']} | {r['requests_per_s']:.2f} | "
                     f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['images_per_execution']:.2f} |")
    for r in result["in_process"]:
        p50 = f"{r['p50_ms']:.0f}" if "p50_ms" in r else f"{r['call_ms']:.0f} (call)"
        p99 = f"{r['p99_ms']:.0f}" if "p99_ms" in r else ""
        lines.append(f"| {r['what']} | | {r['images_per_s']:.2f} | {p50} | {p99} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
