"""End-to-end sampling per backend: `Engine.generate(n)` (noise, latent sampler, T generator calls,
posterior steps, uint8 images on the host), random weights of a preset.

    python -m pytest benchmarks/test_bench_e2e.py --benchmark-json=benchmarks/results/DATE-MACHINE-cpu-e2e.json

Environment: PDGAN_BENCH_PRESET (default cifar10), PDGAN_BENCH_N (images per call; default 100 on
GPU, 20 on the CPU), PDGAN_BENCH_ROUNDS (timed calls, default 3), PDGAN_BENCH_BACKENDS (comma list,
default all), PDGAN_BENCH_DTYPE (default float32). Engine construction and one warm-up call are not
timed; `pdgan-bench` reports them (and peak memory) for the same runs.
"""
from __future__ import annotations

import gc
import os
import time

import pytest
import torch

from pdgan_infer.backends import BACKENDS

DEVICE = torch.device(os.environ.get("PDGAN_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))
PRESET = os.environ.get("PDGAN_BENCH_PRESET", "cifar10")
N = int(os.environ.get("PDGAN_BENCH_N", "100" if DEVICE.type == "cuda" else "20"))
ROUNDS = int(os.environ.get("PDGAN_BENCH_ROUNDS", "3"))
DTYPE = getattr(torch, os.environ.get("PDGAN_BENCH_DTYPE", "float32"))
SELECTED = [b for b in os.environ.get("PDGAN_BENCH_BACKENDS", ",".join(BACKENDS)).split(",") if b]


def _generator(engine):
    def generate():
        images = engine.generate(N, seed=0, batch_size=N)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)
        return images
    return generate


@pytest.mark.parametrize("backend", SELECTED)
def test_generate(benchmark, backend):
    from pdgan_infer.backends import probe
    from pdgan_infer.engine import Engine
    why = probe(backend, DEVICE)
    if why is not None:
        pytest.skip(why)
    t0 = time.perf_counter()
    engine = Engine.from_preset(PRESET, seed=0, backend=backend, device=DEVICE, dtype=DTYPE)
    build_s = time.perf_counter() - t0

    generate = _generator(engine)
    t0 = time.perf_counter()
    generate()
    warmup_s = time.perf_counter() - t0
    benchmark.group = f"generate {PRESET} n={N} {str(DTYPE).replace('torch.', '')}"
    benchmark.extra_info.update(backend=backend, preset=PRESET, n=N, dtype=str(DTYPE), device=str(DEVICE),
                                build_s=build_s, warmup_s=warmup_s)
    images = benchmark.pedantic(generate, rounds=ROUNDS, iterations=1)
    assert tuple(images.shape)[0] == N
    del engine
    gc.collect()
