"""pdgan-bench: the command line of `pdgan_infer.bench` (what it times and reports: that package's doc)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from .. import _cli, bench
from .._cli import ArgumentParser, add_common_arguments, block_seed, check_outputs, int_range, model_files, run_cli
from .._cli import positive_int as _positive
from ..config import PRESETS
from ..device import resolve_device
from ..hub import resolve_model
from ..seeds import SEED_STRIDE

log = logging.getLogger("pdgan")

MAX_THREADS = os.cpu_count() or 1  # --threads: more threads than CPUs only slows the timing down
EXAMPLES = _cli.examples(
    "pdgan-bench --preset digits --n 64 --repeats 3   # every backend available here",
    "pdgan-bench --preset cifar10 --n 100 --backends torch,native,native:bfloat16 --json bench.json",
    "pdgan-bench --checkpoint runs/digits/model.safetensors --backends native,onnxruntime",
    "pdgan-bench --device cuda --backends torch:float16,tensorrt --isolate   # a GPU")


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-bench", description=bench.__doc__.split("\n\n")[0], epilog=EXAMPLES)
    p.add_argument("--backends", help="comma-separated NAME or NAME:DTYPE (default: every backend available "
                   "here); the torch float32 reference always runs first")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cifar10", help="model size (random weights)")
    p.add_argument("--checkpoint", help="time a model's weights instead (its preset is used): a bundled name such "
                   "as digits, a checkpoint file or a model folder")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=sorted(bench.DTYPES), default="float32",
                   help="compute dtype (NAME:DTYPE overrides)")
    p.add_argument("--n", type=int_range(1, SEED_STRIDE), default=100, help=f"images per timed call (at most "
                   f"{SEED_STRIDE})")
    p.add_argument("--batch-size", type=_positive, default=None, help="images per sampler call (default: n, "
                   "one batch, as the paper's per-100-images timing)")
    p.add_argument("--repeats", type=int_range(1, 1000), default=5, help="timed calls per backend, after one warm-up")
    p.add_argument("--latency-repeats", type=int_range(0, 1000), default=5, help="single-image generate calls "
                   "timed per backend for the batch-1 latency (after one untimed call; 0: none)")
    p.add_argument("--seed", type=block_seed, default=0, help="seed of the random weights and of the images")
    p.add_argument("--threads", type=int_range(1, MAX_THREADS), default=None,
                   help=f"torch CPU threads, at most {MAX_THREADS} (the CPUs here; default: torch's)")
    p.add_argument("--json", type=Path, help="write the header and records here")
    p.add_argument("--png", type=Path, help="write a bar chart of images/s (with error bars) here; needs "
                   "matplotlib: pip install 'pdgan[plot]'")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="time each backend in its own process (default: on for CUDA)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one backend, results to this folder
    _cli.add_overwrite_argument(p)
    add_common_arguments(p)
    return p


def settings(args: argparse.Namespace) -> bench.BenchSettings:
    """The run's settings; --checkpoint resolved to a path (`hub.resolve_model`: a bundled name, a file or folder)."""
    checkpoint = None if args.checkpoint is None else str(resolve_model(args.checkpoint))
    return bench.BenchSettings(preset=args.preset, checkpoint=checkpoint, n=args.n, batch_size=args.batch_size,
                               repeats=args.repeats, latency_repeats=args.latency_repeats, seed=args.seed,
                               dtype=args.dtype, threads=args.threads)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:  # internal: one backend of an isolated run (bench.bench_isolated)
        return bench.worker(args.backends, settings(args), args.device, args.worker)
    return run_cli("pdgan-bench", args, lambda: _main(args, argv))


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    # Everything that can be checked is checked before minutes of benchmarking, not after.
    resolve_device(args.device)
    check_outputs({"--json": args.json, "--png": args.png}, model_files(args.checkpoint), overwrite=args.overwrite)
    if args.png:
        bench.require_matplotlib()
    if args.checkpoint:  # a damaged checkpoint is one error, not one "unavailable" per backend
        from ..checkpoint import load_checkpoint
        load_checkpoint(resolve_model(args.checkpoint))
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    result = bench.run(settings(args), args.device, backends, args.isolate, argv, progress=not args.quiet)
    print(bench.table(result))
    if args.json:
        bench.write_json(result, args.json)
        log.info(f"wrote {args.json}")
    if args.png:
        bench.write_png(result, args.png)
        log.info(f"wrote {args.png}")
    failed = [r for r in result["records"] if not r.get("median_s") and not r.get("optional")]
    if failed:  # a backend that was asked for and did not run is a failed run, even if the reference ran
        log.error(f"error: {len(failed)} of {len(result['records'])} runs failed: "
                  + "; ".join(f"{r['backend']} {r['dtype']}: {r.get('error', 'no timing')}" for r in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
