"""The engine-level groups of benchmarks/gpu_smoke.py: engine (every backend and dtype against torch float32),
crosscheck (same seeds on the CPU and on the GPU), profile (one 2-NFE forward by kernel class) and extra
(onnxruntime / tensorrt / compile on digits). Records and timing: benchmarks/gpu_timing.py.

Accuracy is always compared with TF32 off (gpu_timing.tf32_off); every record says whether TF32 was on.
"""
from __future__ import annotations

import gc
import re
import time

import gpu_timing as gt
import torch
from gpu_timing import bench, check, skip, timing_fields

# preset: (batch, [(backend, dtype), ...]) in order of value: a cut keeps the first rows. torch float32 comes
# first (the reference of the preset); bf16 rows before float32 rows.
BACKENDS = [("torch", "float32"), ("optimized", "bfloat16"), ("native", "bfloat16"), ("triton", "bfloat16"),
            ("torch", "bfloat16"), ("optimized", "float32"), ("native", "float32"), ("triton", "float32")]
# DDGAN's generators (pdgan-convert ddgan; random weights, no latent sampler) last: the reference and the fastest rows
DDGAN_BACKENDS = [("torch", "float32"), ("native", "bfloat16"), ("native", "float32")]
ENGINE_RUNS = {"cifar10": (100, BACKENDS), "celebahq256": (100, BACKENDS), "ddgan-cifar10": (100, DDGAN_BACKENDS),
               "ddgan-celebahq256": (100, DDGAN_BACKENDS)}
QUICK_ENGINE_RUNS = {"digits": (4, [("torch", "float32"), ("optimized", "float32"), ("native", "float32")])}
# 100 images, 2 NFE + latent sampler + noise; ddgan-*: 4 / 2 NFE + noise against DDGAN's published 0.21 s / 1.73 s
GOALS_MS = {"cifar10": 8.0, "celebahq256": 60.0, "ddgan-cifar10": 210.0, "ddgan-celebahq256": 1730.0}
ROW_TIME_S = 1.5  # timed calls per measurement: about this many seconds, at least 3 calls
CROSSCHECK_SEEDS = list(range(1000, 1008))
CROSSCHECK_GOAL = 1  # uint8 levels between a seed's CPU image and its GPU image (float32)


def _free(device: torch.device) -> None:
    """Drop unreachable engines (their CUDA-graph pools sit in reference cycles) and return cached blocks, so
    the next row's peak memory is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) * 127.5).round().clamp(0, 255)


def engine_checks(device: torch.device, quick: bool) -> None:
    """Per preset and backend (TF32 off throughout): error against the torch float32 runner on the same noise,
    replay determinism, GPU time of runner / latent sampler / noise (p10, p50, p90), generate(n) end to end,
    the row's own peak memory. At the end the first torch float32 timing is repeated (drift)."""
    from pdgan_infer.engine import Engine
    from pdgan_infer.sampler import draw_noise
    runs = QUICK_ENGINE_RUNS if quick else ENGINE_RUNS
    reps, max_s = (2, None) if quick else (10, ROW_TIME_S)  # --quick: the fewest calls that give a p10 / p90
    first_ref: dict = {}
    with gt.tf32_off():
        for preset, (n, backends) in runs.items():
            ref = None

            def measure(backend, dtype, preset=preset, n=n):
                _free(device)
                t0 = time.perf_counter()
                engine = Engine.from_preset(preset, backend=backend, device=device, dtype=dtype, batch_size=n,
                                            verbose=False)
                try:
                    c, T = engine.config, engine.model.schedule.T
                    noise = draw_noise(list(range(n)), T, c.channels, c.resolution, c.generator.nz, device=device)
                    with torch.no_grad():
                        z_T = engine._latents(noise.z_T_noise)  # as generate draws it (a CUDA graph with graph runners)
                        x0 = engine.runner(noise.x_T, z_T, noise.z, noise.eps)
                        build_s = time.perf_counter() - t0
                        again = engine.runner(noise.x_T, z_T, noise.z, noise.eps)
                        runner = bench(lambda: engine.runner(noise.x_T, z_T, noise.z, noise.eps), device, reps, 1,
                                       flush=False, max_s=max_s)
                        latent = bench(lambda: engine._latents(noise.z_T_noise), device, reps, 1, flush=False,
                                       max_s=max_s)
                        drawn = bench(lambda: draw_noise(list(range(n)), T, c.channels, c.resolution,
                                                         c.generator.nz, device=device), device, reps, 1, flush=False)
                    gen = bench(lambda: engine.generate(n, seed=0), device, min(reps, 2), 1, flush=False)
                    rec = {"n": n, "build_s": build_s, **timing_fields("runner_ms", runner, 1e3),
                           **timing_fields("latent_ms", latent, 1e3), **timing_fields("noise_ms", drawn, 1e3),
                           "ms": (runner["p50"] + latent["p50"] + drawn["p50"]) * 1e3,
                           **timing_fields("generate_ms", gen, 1e3), "deterministic": bool(torch.equal(x0, again)),
                           "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                           else None, "graph_fallback": getattr(getattr(engine.runner, "_run", None), "eager_reason",
                                                                None), **gt.tf32_state()}
                    return rec, x0.float()
                finally:
                    engine = None  # noqa: F841 - unreachable now: _free collects it
                    _free(device)

            for backend, dtype in backends:
                def run(backend=backend, dtype=dtype, preset=preset):
                    nonlocal ref
                    rec, x0 = measure(backend, dtype)
                    if (backend, dtype) == ("torch", "float32"):
                        ref = x0
                        first_ref.setdefault(preset, rec)
                    elif ref is not None:
                        diff = (x0 - ref).abs()
                        rec.update(max_err=diff.max().item(), mean_err=diff.mean().item(),
                                   max_pixel_diff=int((_pixels(x0) - _pixels(ref)).abs().max().item()))
                        # the mean error against torch float32: float32 within 1e-3, reduced precision 0.05
                        rec["tol"] = 1e-3 if dtype == "float32" else 0.05
                        rec["ok"] = rec["mean_err"] <= rec["tol"]
                    else:
                        rec.update(ok=False, error="no torch float32 reference (its row failed)")
                    goal = GOALS_MS.get(preset)
                    if goal:
                        rec.update(goal_ms=goal, meets_goal=rec["ms"] <= goal)
                    rec["ok"] = rec.get("ok", True) and rec["deterministic"]
                    return rec
                check(f"engine {preset} {backend} {dtype}", kind="engine", preset=preset, backend=backend,
                      dtype=dtype)(run)
        preset = next(iter(runs))
        if preset in first_ref:
            def rerun(preset=preset):
                rec = _measure_runner(Engine, draw_noise, preset, runs[preset][0], device, reps, max_s)
                before = first_ref[preset]["runner_ms"]
                return {**rec, "first_runner_ms": before, "drift": rec["runner_ms"] / before - 1}
            check(f"engine {preset} torch float32 rerun", kind="engine_rerun", preset=preset, backend="torch",
                  dtype="float32")(rerun)


def _measure_runner(Engine, draw_noise, preset: str, n: int, device: torch.device, reps: int, max_s: float | None):
    """Runner timing only (torch float32), for the drift check at the end of the engine group."""
    _free(device)
    engine = Engine.from_preset(preset, backend="torch", device=device, dtype="float32", batch_size=n, verbose=False)
    try:
        c, T = engine.config, engine.model.schedule.T
        noise = draw_noise(list(range(n)), T, c.channels, c.resolution, c.generator.nz, device=device)
        with torch.no_grad():
            z_T = engine._latents(noise.z_T_noise)
            t = bench(lambda: engine.runner(noise.x_T, z_T, noise.z, noise.eps), device, reps, 1, flush=False,
                      max_s=max_s)
        return {**timing_fields("runner_ms", t, 1e3), **gt.tf32_state()}
    finally:
        engine = None  # noqa: F841
        _free(device)


def crosscheck_checks(device: torch.device, quick: bool) -> None:
    """Same seeds, same weights: cifar10 images from the torch backend on the CPU against the torch and
    optimized backends on `device` in float32 with TF32 off (engine.generate(seeds=...)); the max difference
    in uint8 levels, goal <= 1. With --quick (the unit tests): digits, 4 seeds."""
    from pdgan_infer.engine import Engine
    preset, seeds = ("digits", CROSSCHECK_SEEDS[:4]) if quick else ("cifar10", CROSSCHECK_SEEDS)
    with gt.tf32_off():
        cpu = Engine.from_preset(preset, backend="torch", device="cpu", dtype="float32", batch_size=len(seeds),
                                 verbose=False)
        t0 = time.perf_counter()
        expect = cpu.generate(seeds=seeds).astype("int16")
        cpu_s = time.perf_counter() - t0
        del cpu
        for backend in ("torch", "optimized"):
            def run(backend=backend):
                engine = Engine.from_preset(preset, backend=backend, device=device, dtype="float32",
                                            batch_size=len(seeds), verbose=False)
                got = engine.generate(seeds=seeds).astype("int16")
                diff = abs(got - expect)
                worst = int(diff.max())
                return {"images": len(seeds), "seeds": seeds, "max_uint8_diff": worst,
                        "pixels_over_1": int((diff > 1).sum()), "pixels": int(diff.size),
                        "mean_uint8_diff": float(diff.mean()), "goal": CROSSCHECK_GOAL, "ok": worst <= CROSSCHECK_GOAL,
                        "cpu_s": cpu_s, "device": str(device), **gt.tf32_state()}
            check(f"crosscheck {preset} cpu torch vs {device.type} {backend} float32", kind="crosscheck",
                  preset=preset, backend=backend)(run)
            _free(device)


# --- profile ---------------------------------------------------------------------------------------------
KERNEL_CLASSES = [  # (class, pattern over the lower-cased kernel or op name); the first match wins
    ("adagn/group-norm", r"adagn|group_?norm|groupnorm|welford|rowwisemoments|computefusedparams"),
    ("attention", r"flash|fmha|attention|attn|sdpa|softmax"),
    ("convolution", r"conv|cudnn|xmma|implicit_?gemm|winograd|fprop|dgrad|wgrad|gemm|cutlass|sm\d\d_|mm\b|addmm|"
                    r"matmul|nchwtonhwc|nhwctonchw"),
    ("copies/elementwise", r"copy|memcpy|memset|elementwise|vectorized|unrolled|fill|cat|add|mul|silu|clamp|"
                           r"posterior|philox|where|index|to_copy|contiguous|reduce"),
]


def kernel_class(name: str) -> str:
    """The class of a CUDA kernel (or CPU operator) name: convolution, adagn/group-norm, attention,
    copies/elementwise, else other."""
    low = name.lower()
    for cls, pattern in KERNEL_CLASSES:
        if re.search(pattern, low):
            return cls
    return "other"


def breakdown(events: list[tuple[str, float]]) -> dict:
    """[(name, microseconds)] -> {"classes": {class: {"us", "share", "count"}}, "total_us", "top": [...]}."""
    total = sum(us for _, us in events)
    classes: dict = {}
    for name, us in events:
        c = classes.setdefault(kernel_class(name), {"us": 0.0, "share": 0.0, "count": 0})
        c["us"] += us
        c["count"] += 1
    for c in classes.values():
        c["share"] = c["us"] / total if total else 0.0
    by_name: dict = {}
    for name, us in events:
        by_name[name[:80]] = by_name.get(name[:80], 0.0) + us
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:10]
    return {"classes": dict(sorted(classes.items(), key=lambda kv: -kv[1]["us"])), "total_us": total,
            "top": [{"name": k, "us": v} for k, v in top]}


PROFILE_RUNS = [("optimized", "bfloat16"), ("native", "bfloat16")]


def profile_checks(device: torch.device, quick: bool) -> None:
    """torch.profiler over one 2-NFE forward (latent sampler excluded) of cifar10 at 100 images, eager (no
    CUDA graph, so every kernel is seen), summed by kernel class: GPU kernel time on CUDA, operator self
    time on the CPU (--quick: digits, 2 images)."""
    from torch.profiler import ProfilerActivity, profile

    from pdgan_infer.engine import Engine
    from pdgan_infer.sampler import draw_noise
    preset, n = ("digits", 2) if quick else ("cifar10", 100)
    runs = PROFILE_RUNS[:1] if quick else PROFILE_RUNS
    for backend, dtype in runs:
        def run(backend=backend, dtype=dtype):
            options = {"cuda_graph": False} if device.type == "cuda" else {}
            engine = Engine.from_preset(preset, backend=backend, device=device, dtype=dtype, batch_size=n,
                                        verbose=False, **options)
            c, T = engine.config, engine.model.schedule.T
            noise = draw_noise(list(range(n)), T, c.channels, c.resolution, c.generator.nz, device=device)
            with torch.no_grad():
                z_T = engine._latents(noise.z_T_noise)

                def forward():
                    return engine.runner(noise.x_T, z_T, noise.z, noise.eps)
                forward()  # warm-up: cuDNN algorithm choice, Triton compiles
                activities = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                with profile(activities=activities) as prof:
                    forward()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
            if device.type == "cuda":
                events = [(e.name, e.time_range.elapsed_us()) for e in prof.events()
                          if e.device_type.name == "CUDA"]
            else:
                events = [(e.name, e.self_cpu_time_total) for e in prof.events()
                          if e.name.startswith("aten::") and e.self_cpu_time_total > 0]
            if not events:
                return {"skipped": "the profiler recorded no kernels"}
            return {"n": n, "source": "cuda kernels" if device.type == "cuda" else "cpu operator self time",
                    **breakdown(events), **gt.tf32_state()}
        check(f"profile {preset} {backend} {dtype} 2-NFE forward", kind="profile", preset=preset,
              backend=backend, dtype=dtype)(run)
        _free(device)


# --- extra: the backends that run only by name -----------------------------------------------------------
EXTRA_RUNS = [("onnxruntime", "float32"), ("tensorrt", "float16"), ("compile", "float32")]


def extra_checks(device: torch.device, quick: bool) -> None:
    """onnxruntime (the providers its session really runs against the ones asked for), tensorrt (strongly
    typed parse and build of the fp16 digits sampler, build seconds) and compile (max-autotune, then CUDA-graph
    capture) on the digits preset, each against the torch fp32 runner on the same noise (TF32 off). A backend
    that cannot run here is recorded as skipped (ok None) with the reason."""
    from pdgan_infer.backends import probe
    from pdgan_infer.engine import Engine
    from pdgan_infer.sampler import draw_noise
    n = 4 if quick else 16
    with gt.tf32_off():
        ref_engine = Engine.from_preset("digits", backend="torch", device=device, dtype="float32", batch_size=n,
                                        verbose=False)
        c, T = ref_engine.config, ref_engine.model.schedule.T
        noise = draw_noise(list(range(n)), T, c.channels, c.resolution, c.generator.nz, device=device)
        with torch.no_grad():
            z_T = ref_engine.model.draw_z_T(noise.z_T_noise)
            ref = ref_engine.runner(noise.x_T, z_T, noise.z, noise.eps)
        for backend, dtype in EXTRA_RUNS:
            name = f"extra {backend} {dtype}"
            if quick and backend == "compile":
                skip(name, "compile takes minutes on a CPU (--quick)", kind="extra", backend=backend)
                continue
            why = probe(backend, device)
            if why is not None:
                skip(name, why, kind="extra", backend=backend)
                continue

            def run(backend=backend, dtype=dtype):
                t0 = time.perf_counter()
                engine = Engine.from_preset("digits", backend=backend, device=device, dtype=dtype, batch_size=n,
                                            verbose=False)
                with torch.no_grad():
                    x0 = engine.runner(noise.x_T, z_T, noise.z, noise.eps)
                    build_s = time.perf_counter() - t0
                    t = bench(lambda: engine.runner(noise.x_T, z_T, noise.z, noise.eps), device,
                              2 if quick else 10, 1, flush=False)
                diff = (x0.float() - ref).abs()
                rec = {"build_s": build_s, **timing_fields("ms", t, 1e3), "max_err": diff.max().item(),
                       "mean_err": diff.mean().item(), **gt.tf32_state()}
                if backend == "onnxruntime":  # Engine runner -> OnnxRuntimeSampler -> OnnxRunner (its session)
                    sampler = engine.runner.sampler
                    rec["providers"] = list(sampler.runner.session.get_providers())
                    rec["requested_providers"] = list(sampler.runner.requested_providers)
                rec["ok"] = rec["mean_err"] <= (1e-3 if dtype == "float32" else 0.05)
                return rec
            check(name, kind="extra", backend=backend, dtype=dtype)(run)
