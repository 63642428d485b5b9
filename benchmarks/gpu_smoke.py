"""The GPU checks of `make gpu-check` (driver: benchmarks/gpu_check.py), one group per command:

    python benchmarks/gpu_smoke.py env                           # GPU, driver, versions, nvcc, compute-sanitizer
    python benchmarks/gpu_smoke.py native                        # the built extension has its CUDA kernels
    python benchmarks/gpu_smoke.py kernels  --out kernels.json   # AdaGN / posterior / noise / graph checks + timings
    python benchmarks/gpu_smoke.py engine   --out engine.json    # every backend vs torch fp32; 2-NFE + latent timings
    python benchmarks/gpu_smoke.py sanitize                      # small launches for compute-sanitizer memcheck
    python benchmarks/gpu_smoke.py extra    --out extra.json     # onnxruntime / tensorrt / compile on digits

Each check is one record {"check", ..., "ok": bool, "error"?: str}; a failing check is recorded and the
rest still run. Progress goes to stderr, one line per check. `--device cpu --quick` runs the same code on
the CPU with small shapes (the unit tests do; speed numbers are then meaningless).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (label, (N, C, H, W), G): the real AdaGN inputs at batch 100 (cifar10) and 8 (celebahq256)
ADAGN_SHAPES = [
    ("cifar10 128x32x32", (100, 128, 32, 32), 32),
    ("cifar10 384x32x32", (100, 384, 32, 32), 32),
    ("cifar10 256x16x16", (100, 256, 16, 16), 32),
    ("cifar10 256x8x8", (100, 256, 8, 8), 32),
    ("cifar10 256x4x4", (100, 256, 4, 4), 32),
    ("celebahq256 64x256x256", (8, 64, 256, 256), 16),
    ("celebahq256 128x128x128", (8, 128, 128, 128), 32),
    ("celebahq256 64x128x128", (8, 64, 128, 128), 16),
]
QUICK_SHAPES = [("odd", (3, 12, 7, 5), 3), ("cg4", (2, 16, 8, 8), 4)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# fused kernels: within half an ulp of the dtype around float64, after a float32 allowance doubled for the GPU's
# approximate exp / rsqrt (tests/test_native_kernels.py, pdgan_infer.kernels.reference.adagn_silu_ulp_error)
MAX_ULPS, GPU_SLACK = 0.5, 2
# nominal HBM bandwidth (bytes/s) by device-name substring, for the ">= 70% of HBM" goal
HBM = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100 NVL": 3.9e12, "H100": 3.35e12, "A100-SXM4-80GB": 2.04e12,
       "A100": 1.56e12, "B200": 8.0e12}
RECORDS: list[dict] = []
SETTINGS: dict = {"out": None}  # --out: rewritten after every check, so a step killed at its limit keeps its records


def log(msg: str) -> None:
    print(f"gpu_smoke: {msg}", file=sys.stderr, flush=True)


def check(name: str, **fields):
    """Decorator-free helper: run fn() -> dict and record it (ok unless it says otherwise or raises)."""
    def run(fn):
        rec = {"check": name, **fields}
        t0 = time.perf_counter()
        try:
            rec.update(fn())
            rec.setdefault("ok", True)
        except Exception as e:  # noqa: BLE001 - recorded, the next check runs
            rec.update(ok=False, error=f"{type(e).__name__}: {e}"[:500], trace=traceback.format_exc()[-1500:])
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        RECORDS.append(rec)
        write_records()
        log(f"{'ok  ' if rec['ok'] else 'FAIL'} {name} {_short(rec)}")
        return rec
    return run


def write_records() -> None:
    out = SETTINGS["out"]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(RECORDS, indent=1, default=_json_default))
        tmp.replace(out)


def _short(rec: dict) -> str:
    keys = ("err", "tol", "us", "fraction_hbm", "ms", "max_pixel_diff", "g_block", "supported", "keeps_channels_last",
            "providers", "build_s", "skipped", "error")
    return " ".join(f"{k}={rec[k]:.3g}" if isinstance(rec.get(k), float) else f"{k}={rec[k]}"
                    for k in keys if k in rec)


def gpu_time(fn, device: torch.device, reps: int = 20, warmup: int = 3) -> float:
    """Median seconds of fn() (CUDA events on `device`; perf_counter on the CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        with torch.cuda.device(device):
            for _ in range(reps):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def hbm_bytes_per_s(device: torch.device) -> tuple[float, str]:
    """Nominal HBM bandwidth of the device (by name), else a measured 1 GiB device copy (read + write)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, bw in HBM.items():
            if key in name:
                return bw, f"nominal {key}"
        a = torch.empty(1 << 28, device=device)
        b = torch.empty_like(a)
        t = gpu_time(lambda: b.copy_(a), device, reps=5)
        return 2 * a.numel() * 4 / t, "measured copy"
    return float("nan"), "cpu"


# --- kernels -------------------------------------------------------------------------------------------
def kernel_checks(device: torch.device, quick: bool) -> None:
    from pdgan_infer.kernels import native
    from pdgan_infer.kernels.reference import FP32_SLACK, adagn_silu_ulp_error, adagn_silu_unfused
    impls = {}
    if native.available(device):
        impls["native"] = native.adagn_silu
    else:
        RECORDS.append({"check": "native available", "ok": False, "error": native.unavailable_reason(device)})
    triton_plan = None
    if device.type == "cuda" or _triton_interpreted():  # on the CPU: Triton's interpreter (the unit tests)
        try:
            from pdgan_infer.kernels.adagn import adagn_plan as triton_plan
            from pdgan_infer.kernels.adagn import adagn_silu as triton_adagn
            impls["triton"] = triton_adagn
            impls["triton split"] = lambda x, g, b, G: triton_adagn(x, g, b, G, split=True)
            impls["triton g_block=1"] = lambda x, g, b, G: triton_adagn(x, g, b, G, g_block=1)
        except ImportError as e:
            RECORDS.append({"check": "triton available", "ok": False, "error": str(e)})
    peak, peak_src = hbm_bytes_per_s(device)
    reps, warmup = (2, 1) if quick else (20, 3)
    for label, shape, groups in (QUICK_SHAPES if quick else ADAGN_SHAPES):
        for dname, dtype in DTYPES.items():
            if device.type == "cpu" and dtype == torch.float16:
                continue
            for layout in ("nchw", "channels_last"):
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                x = (torch.randn(shape, device=device) * 2 + 0.5).to(dtype).contiguous(memory_format=fmt)
                gamma = torch.randn(shape[:2], device=device) * 0.5 + 1
                beta = torch.randn(shape[:2], device=device)
                nbytes = 2 * x.numel() * x.element_size()
                t_torch = gpu_time(lambda x=x, g=gamma, b=beta, G=groups: adagn_silu_unfused(x, g, b, G), device, reps,
                                   warmup)
                plan = triton_plan(shape, dtype, groups, layout == "channels_last") if triton_plan else None
                for impl, fn in impls.items():
                    # the review's question (2.2): Cg = 4 in channels_last, where the single path covers
                    # G_BLOCK > 1 whole groups per program; against the split path and one group per program
                    if impl == "triton split" and not (layout == "channels_last" and shape[1] // groups <= 4):
                        continue
                    if impl == "triton g_block=1" and not (plan and plan.path == "single" and plan.g_block > 1):
                        continue
                    interpreted = impl.startswith("triton") and device.type == "cpu"
                    if interpreted and (layout, label) != ("channels_last", "cg4"):
                        continue  # the interpreter is slow: on the CPU only the Cg = 4 channels_last plans
                    fields, name = {}, impl
                    if plan and impl in ("triton", "triton g_block=1"):
                        fields = {"path": plan.path, "g_block": 1 if impl != "triton" else plan.g_block}
                        name = f"triton {plan.path} g_block={fields['g_block']}"

                    # Triton's CPU interpreter truncates float32 -> bfloat16: one ulp (tests/test_triton_kernels.py)
                    tol = 1.0 if dtype == torch.bfloat16 and interpreted else MAX_ULPS

                    def run(fn=fn, x=x, gamma=gamma, beta=beta, groups=groups, tol=tol, t_torch=t_torch,
                            nbytes=nbytes):
                        y = fn(x, gamma, beta, groups)
                        slack = FP32_SLACK * (GPU_SLACK if device.type == "cuda" else 1)
                        err = adagn_silu_ulp_error(y, x, gamma, beta, groups, fp32_slack=slack).max().item()  # ulps
                        t = gpu_time(lambda: fn(x, gamma, beta, groups), device, reps, warmup)
                        return {"err": err, "tol": tol, "ok": err <= tol, "us": t * 1e6, "torch_us": t_torch * 1e6,
                                "speedup_vs_torch": t_torch / t, "gb_per_s": nbytes / t / 1e9,
                                "fraction_hbm": nbytes / t / peak, "hbm_reference": peak_src}
                    check(f"adagn {name} {label} {dname} {layout}", kind="adagn", impl=impl, shape=list(shape),
                          groups=groups, dtype=dname, layout=layout, **fields)(run)
    posterior_checks(device, quick)
    noise_checks(device, quick)
    torch_path_checks(device, quick)
    if device.type == "cuda":
        graph_checks(device)


def torch_path_checks(device: torch.device, quick: bool) -> None:
    """Review 3.7, what the optimized path leaves to torch: which SDPA kernel serves FastAttnBlock's attention
    (one head of dim 256 over cifar10's 16x16 pixels) in bf16 and fp32, each kernel's time and error against
    float64; whether F.group_norm keeps channels_last (else layout copies around every torch-path norm).
    Informational: a kernel that does not support the case is recorded (supported: false), not failed."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    n, length, dim = (2, 16, 8) if quick else (100, 256, 256)
    reps, warmup = (2, 1) if quick else (20, 3)
    for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        q, k, v = (torch.randn(n, 1, length, dim, device=device).to(dtype) for _ in range(3))
        ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-3  # fp32 may run TF32 matmuls
        backends = {"default": None, **{b.name.lower(): b for b in (
            SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH)}}
        for name, backend in backends.items():
            def run(q=q, k=k, v=v, ref=ref, tol=tol, backend=backend):
                def attend():
                    return F.scaled_dot_product_attention(q, k, v)
                ctx = sdpa_kernel(backend) if backend is not None else _nullcontext()
                with ctx:
                    try:
                        out = attend()
                    except RuntimeError as e:  # this kernel does not take the case
                        return {"supported": False, "note": str(e).splitlines()[0][:200]}
                    err = (out.double() - ref).abs().max().item()
                    rec = {"supported": True, "err": err, "tol": tol, "ok": err <= tol,
                           "us": gpu_time(attend, device, reps, warmup) * 1e6}
                    if backend is None and device.type == "cuda":
                        rec["kernels"] = _cuda_kernel_names(attend)
                return rec
            check(f"sdpa {name} 1x{length}x{dim} {dname}", kind="sdpa", dtype=dname, backend=name)(run)
    shape = (2, 32, 8, 8) if quick else (100, 128, 32, 32)
    for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        def run(dtype=dtype):
            x = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
            y = F.group_norm(x, 32 if not quick else 8)
            rec = {"keeps_channels_last": y.is_contiguous(memory_format=torch.channels_last),
                   "us": gpu_time(lambda: F.group_norm(x, 32 if not quick else 8), device, reps, warmup) * 1e6,
                   "nchw_us": gpu_time(lambda: F.group_norm(x.contiguous(), 32 if not quick else 8), device, reps,
                                       warmup) * 1e6}
            if device.type == "cuda":
                rec["kernels"] = _cuda_kernel_names(lambda: F.group_norm(x, 32 if not quick else 8))
            return rec
        check(f"group_norm channels_last {'x'.join(map(str, shape))} {dname}", kind="layout", dtype=dname)(run)


def _nullcontext():
    import contextlib
    return contextlib.nullcontext()


def _cuda_kernel_names(fn) -> list[str]:
    """The CUDA kernels fn() launches (torch.profiler), in order, names cut to 80 characters."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.name[:80] for e in prof.events() if e.device_type.name == "CUDA"][:12]


def _triton_interpreted() -> bool:
    from pdgan_infer.kernels import _triton
    return _triton.HAS_TRITON and _triton.interpreting()


def posterior_checks(device: torch.device, quick: bool) -> None:
    from pdgan_infer.kernels import native
    from pdgan_infer.kernels.reference import philox_normal_rows_ref, posterior_step_ulp_error
    impls = {"native": native.posterior_step} if native.available(device) else {}
    if device.type == "cuda":
        from pdgan_infer.kernels.posterior import posterior_step as triton_posterior
        impls["triton"] = triton_posterior
    shapes = [(2, 3, 5, 7)] if quick else [(100, 3, 32, 32), (100, 3, 256, 256)]
    for shape in shapes:
        for dname, dtype in DTYPES.items():
            if device.type == "cpu" and dtype == torch.float16:
                continue
            x0, xt, z = (torch.randn(shape, device=device).to(dtype) for _ in range(3))
            for impl, fn in impls.items():
                def run(fn=fn, x0=x0, xt=xt, z=z, dtype=dtype, shape=shape):
                    # errors in ulps of the dtype against float64; seed mode against the pure-torch Philox stream
                    y = fn(x0, xt, 0.7, 0.25, 0.3, noise=z)
                    err = posterior_step_ulp_error(y, x0, xt, 0.7, 0.25, 0.3, z).max().item()
                    seeded = fn(x0, xt, 0.7, 0.25, 0.3, seed=11, offset=5)
                    zs = philox_normal_rows_ref(torch.tensor([11], device=device), x0.numel(), 5).view(shape)
                    seed_err = posterior_step_ulp_error(seeded, x0, xt, 0.7, 0.25, 0.3, zs).max().item()
                    tol = MAX_ULPS
                    return {"err": err, "seed_err": seed_err, "tol": tol, "ok": err <= tol and seed_err <= tol,
                            "us": gpu_time(lambda: fn(x0, xt, 0.7, 0.25, 0.3, noise=z), device, 5 if quick else 20)
                            * 1e6}
                check(f"posterior {impl} {'x'.join(map(str, shape))} {dname}", kind="posterior", impl=impl)(run)


def noise_checks(device: torch.device, quick: bool) -> None:
    """draw_noise on the device against the CPU (same seeds: same noise up to float rounding) and its cost."""
    from pdgan_infer.sampler import draw_noise
    impls = ["reference", "native"] + (["triton"] if device.type == "cuda" else [])
    for preset, (c, r, nz) in {"cifar10": (3, 32, 256), "celebahq256": (3, 256, 256)}.items():
        n = 4 if quick else 100
        if quick and preset == "celebahq256":
            continue
        cpu = draw_noise(list(range(n)), 2, c, r, nz)
        for impl in impls:
            def run(impl=impl, n=n, c=c, r=r, nz=nz, cpu=cpu):
                dev = draw_noise(list(range(n)), 2, c, r, nz, device=device, impl=impl)
                err = max((a.cpu() - b).abs().max().item() for a, b in zip(
                    (dev.x_T, dev.latent, dev.z, dev.eps), (cpu.x_T, cpu.latent, cpu.z, cpu.eps)))
                t = gpu_time(lambda: draw_noise(list(range(n)), 2, c, r, nz, device=device, impl=impl), device,
                             3 if quick else 10, warmup=1)
                return {"err": err, "ok": err <= 1e-6, "ms": t * 1e3, "images": n}
            check(f"noise {impl} {preset} n={n}", kind="noise", impl=impl, preset=preset)(run)


def graph_checks(device: torch.device) -> None:
    """The native / Triton kernels inside a hand-made CUDA graph: replay with fresh inputs == eager; seed
    mode refused while capturing (it would freeze the noise)."""
    from pdgan_infer.kernels import native
    from pdgan_infer.kernels.reference import adagn_silu_ref
    ops = {}
    if native.available(device):
        ops["native"] = (native.adagn_silu, native.posterior_step)
    from pdgan_infer.kernels.adagn import adagn_silu as t_adagn
    from pdgan_infer.kernels.posterior import posterior_step as t_post
    ops["triton"] = (t_adagn, t_post)
    for impl, (adagn, post) in ops.items():
        def run(adagn=adagn, post=post):
            shape = (8, 128, 32, 32)
            xs = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
            gs, bs, zs = torch.ones(8, 128, device=device), torch.zeros(8, 128, device=device), torch.randn(
                shape, device=device)

            def body():
                h = adagn(xs, gs, bs, 32)
                return post(h.contiguous(), xs.contiguous(), 0.5, 0.5, 0.1, noise=zs)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                body()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = body()
            errs = []
            for _ in range(3):  # fresh inputs each replay
                xs.copy_(torch.randn(shape, device=device))
                gs.copy_(torch.rand(8, 128, device=device) + 0.5)
                zs.copy_(torch.randn(shape, device=device))
                graph.replay()
                h = adagn_silu_ref(xs, gs, bs, 32)
                expect = 0.5 * h + 0.5 * xs + 0.1 * zs
                errs.append((out - expect).abs().max().item())
            refused = False
            try:
                g2 = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g2):
                    post(xs.contiguous(), xs.contiguous(), 0.5, 0.5, 0.1, seed=3)
            except RuntimeError as e:
                refused = "CUDA graph" in str(e)
            return {"err": max(errs), "ok": max(errs) < 1e-4 and refused, "seed_mode_refused_in_capture": refused}
        check(f"cuda graph {impl} adagn+posterior replay", kind="graph", impl=impl)(run)

    def philox_agree():
        cpu = native.philox_normal(100_003, 77, offset=11)
        gpu = native.philox_normal(100_003, 77, offset=11, device=device).cpu()
        err = (cpu - gpu).abs().max().item()
        return {"err": err, "ok": err <= 2e-7}
    if native.available(device):
        check("philox cpu vs cuda", kind="noise")(philox_agree)


# --- engine ------------------------------------------------------------------------------------------
ENGINE_RUNS = {  # preset: (batch, [(backend, dtype), ...]); torch fp32 is the reference of each preset
    "cifar10": (100, [("torch", "float32"), ("optimized", "float32"), ("optimized", "bfloat16"),
                      ("native", "float32"), ("native", "bfloat16"), ("triton", "float32"), ("triton", "bfloat16")]),
    "celebahq256": (100, [("torch", "float32"), ("native", "bfloat16"), ("triton", "bfloat16"),
                          ("optimized", "bfloat16")]),
}
QUICK_ENGINE_RUNS = {"digits": (4, [("torch", "float32"), ("optimized", "float32"), ("native", "float32")])}
GOALS_MS = {"cifar10": 8.0, "celebahq256": 60.0}  # issue 15: 100 images, 2 NFE + latent sampler


def engine_checks(device: torch.device, quick: bool) -> None:
    """Per preset and backend: error against the torch fp32 runner on the same device noise, replay
    determinism, runner-only GPU time, the latent sampler's time, generate(n) end to end, peak memory."""
    from pdgan_infer.engine import Engine
    from pdgan_infer.sampler import draw_noise
    runs = QUICK_ENGINE_RUNS if quick else ENGINE_RUNS
    for preset, (n, backends) in runs.items():
        ref = None
        for backend, dtype in backends:
            def run(backend=backend, dtype=dtype, preset=preset, n=n):
                nonlocal ref
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                t0 = time.perf_counter()
                engine = Engine.from_preset(preset, backend=backend, device=device, dtype=dtype, batch_size=n,
                                            verbose=False)
                c, T = engine.config, engine.model.schedule.T
                noise = draw_noise(list(range(n)), T, c.channels, c.resolution, c.generator.nz, device=device)
                with torch.no_grad():
                    z_T = engine._latents(noise.latent)  # as generate draws it (a CUDA graph with graph runners)
                    x0 = engine.runner(noise.x_T, z_T, noise.z, noise.eps)
                    build_s = time.perf_counter() - t0
                    again = engine.runner(noise.x_T, z_T, noise.z, noise.eps)
                    reps = 2 if quick else 10
                    runner_s = gpu_time(lambda: engine.runner(noise.x_T, z_T, noise.z, noise.eps), device, reps, 1)
                    latent_s = gpu_time(lambda: engine._latents(noise.latent), device, reps, 1)
                    noise_s = gpu_time(lambda: draw_noise(list(range(n)), T, c.channels, c.resolution,
                                                          c.generator.nz, device=device), device, reps, 1)
                generate_s = gpu_time(lambda: engine.generate(n, seed=0), device, 1 if quick else 3, 1)
                rec = {"n": n, "build_s": build_s, "runner_ms": runner_s * 1e3, "latent_ms": latent_s * 1e3,
                       "noise_ms": noise_s * 1e3, "ms": (runner_s + latent_s + noise_s) * 1e3,
                       "generate_ms": generate_s * 1e3, "deterministic": bool(torch.equal(x0, again)),
                       "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
                       "graph_fallback": getattr(getattr(engine.runner, "_run", None), "eager_reason", None)}
                if (backend, dtype) == ("torch", "float32"):
                    ref = x0
                elif ref is not None:
                    diff = (x0 - ref).abs()
                    pixels = ((x0 + 1) * 127.5).round().clamp(0, 255) - ((ref + 1) * 127.5).round().clamp(0, 255)
                    rec.update(max_err=diff.max().item(), mean_err=diff.mean().item(),
                               max_pixel_diff=int(pixels.abs().max().item()))
                    # flash-attention style rule on the mean error: fp32 within 1e-3, reduced precision 0.05
                    rec["ok"] = rec["mean_err"] <= (1e-3 if dtype == "float32" else 0.05)
                goal = GOALS_MS.get(preset)
                if goal and backend != "torch":
                    rec.update(goal_ms=goal, meets_goal=rec["ms"] <= goal)
                rec["ok"] = rec.get("ok", True) and rec["deterministic"]
                return rec
            check(f"engine {preset} {backend} {dtype}", kind="engine", preset=preset, backend=backend,
                  dtype=dtype)(run)


# --- extra: the backends that run only by name -----------------------------------------------------------
EXTRA_RUNS = [("onnxruntime", "float32"), ("tensorrt", "float16"), ("compile", "float32")]


def extra_checks(device: torch.device, quick: bool) -> None:
    """Review 4.5, 4.7, 5 and 7: onnxruntime (the providers its session really runs against the ones asked
    for), tensorrt (strongly typed parse and build of the fp16 digits sampler, build seconds) and compile
    (max-autotune, then CUDA-graph capture) on the digits preset, each against the torch fp32 runner on the
    same noise. A backend that is not installed is recorded as skipped (ok)."""
    from pdgan_infer.backends import probe
    from pdgan_infer.engine import Engine
    from pdgan_infer.sampler import draw_noise
    n = 4 if quick else 16
    runs = [r for r in EXTRA_RUNS if not (quick and r[0] == "compile")]  # compiling takes minutes on a CPU
    ref_engine = Engine.from_preset("digits", backend="torch", device=device, dtype="float32", batch_size=n,
                                    verbose=False)
    c, T = ref_engine.config, ref_engine.model.schedule.T
    noise = draw_noise(list(range(n)), T, c.channels, c.resolution, c.generator.nz, device=device)
    with torch.no_grad():
        z_T = ref_engine.model.draw_z_T(noise.latent)
        ref = ref_engine.runner(noise.x_T, z_T, noise.z, noise.eps)
    for backend, dtype in runs:
        why = probe(backend, device)
        if why is not None:
            RECORDS.append({"check": f"extra {backend} {dtype}", "kind": "extra", "backend": backend, "ok": True,
                            "skipped": why})
            log(f"skip {backend}: {why}")
            continue

        def run(backend=backend, dtype=dtype):
            t0 = time.perf_counter()
            engine = Engine.from_preset("digits", backend=backend, device=device, dtype=dtype, batch_size=n,
                                        verbose=False)
            with torch.no_grad():
                x0 = engine.runner(noise.x_T, z_T, noise.z, noise.eps)
                build_s = time.perf_counter() - t0
                ms = gpu_time(lambda: engine.runner(noise.x_T, z_T, noise.z, noise.eps), device, 2 if quick else 10,
                              1) * 1e3
            diff = (x0.float() - ref).abs()
            rec = {"build_s": build_s, "ms": ms, "max_err": diff.max().item(), "mean_err": diff.mean().item()}
            if backend == "onnxruntime":  # Engine runner -> OnnxRuntimeSampler -> OnnxRunner (its session)
                sampler = engine.runner.sampler
                rec["providers"] = list(sampler.runner.session.get_providers())
                rec["requested_providers"] = list(sampler.runner.requested_providers)
            rec["ok"] = rec["mean_err"] <= (1e-3 if dtype == "float32" else 0.05)
            return rec
        check(f"extra {backend} {dtype}", kind="extra", backend=backend, dtype=dtype)(run)


# --- sanitize ------------------------------------------------------------------------------------------
def sanitize_launches(device: torch.device) -> None:
    """Small launches covering every CUDA code path (fused / split plans, packed / scalar loads, Cg = 6 and
    12, an unaligned view, Philox with an offset, noise rows) for compute-sanitizer's memcheck."""
    from pdgan_infer.kernels import native
    from pdgan_infer.sampler import draw_noise
    shapes = [((2, 384, 32, 32), 32), ((1, 64, 128, 128), 16), ((3, 12, 7, 5), 3), ((2, 192, 16, 16), 32)]
    for shape, groups in shapes:
        for dtype in DTYPES.values():
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=fmt)
                native.adagn_silu(x, torch.ones(shape[:2], device=device), torch.zeros(shape[:2], device=device),
                                  groups)
    base = torch.randn(2 * 12 * 7 * 5 + 1, device=device)[1:].view(2, 12, 7, 5)  # 4-byte aligned only
    native.adagn_silu(base, torch.ones(2, 12, device=device), torch.zeros(2, 12, device=device), 3)
    for shape, groups in ((2, 128, 32, 32), 32), ((1, 64, 128, 128), 16):  # gamma/beta rows read in place, 2C apart
        gamma, beta = torch.randn(shape[0], 2 * shape[1], device=device).chunk(2, dim=1)
        x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
        native.adagn_silu(x, gamma, beta, groups)
        if device.type == "cuda":
            _sanitize_triton(x, gamma, beta, groups)
    x = torch.randn(1_000_003, device=device)
    native.posterior_step(x, x, 0.5, 0.5, 0.1, seed=3, offset=5)
    native.posterior_step(x[1:], x[1:], 0.5, 0.5, 0.1, noise=x[:-1].contiguous())
    native.philox_normal_rows([1, 2, 3], 1001, offset=7, device=device)
    draw_noise(list(range(3)), 2, 3, 32, 32, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    log("sanitize launches done")


def _sanitize_triton(x, gamma, beta, groups) -> None:
    """The Triton kernels' paths under memcheck: wide single (channels_last Cg = 4), g_block=1, split, and the
    NCHW single path, in bf16; posterior seed mode; noise rows."""
    try:
        from pdgan_infer.kernels.adagn import adagn_silu
        from pdgan_infer.kernels.philox import philox_normal_rows
        from pdgan_infer.kernels.posterior import posterior_step
    except ImportError as e:
        log(f"sanitize: no Triton launches ({e})")
        return
    xb = x.bfloat16()
    single = x.shape[2] * x.shape[3] <= 1024
    adagn_silu(xb, gamma, beta, groups)
    if single:
        adagn_silu(xb, gamma, beta, groups, g_block=1)
    adagn_silu(xb, gamma, beta, groups, split=True)
    adagn_silu(xb.contiguous(), gamma, beta, groups)
    posterior_step(x, x, 0.5, 0.5, 0.1, seed=3, offset=5)
    philox_normal_rows(torch.tensor([1, 2, 3], device=x.device), 1001, offset=7)


def print_env() -> int:
    import importlib.util
    import shutil
    import subprocess
    for cmd in (["nvidia-smi"], [shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc", "--version"]):
        try:
            subprocess.run(cmd, check=False, timeout=20)
        except (OSError, subprocess.SubprocessError) as e:
            print(f"{cmd[0]}: {e}")

    def version(module):
        return getattr(__import__(module), "__version__", "?") if importlib.util.find_spec(module) else None
    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "capability": torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None,
            "torch_arch_list": torch.cuda.get_arch_list() if torch.cuda.is_available() else None,
            "triton": version("triton"), "tensorrt": version("tensorrt"), "onnxruntime": version("onnxruntime"),
            "compute_sanitizer": shutil.which("compute-sanitizer") or (
                "/usr/local/cuda/bin/compute-sanitizer" if Path("/usr/local/cuda/bin/compute-sanitizer").exists()
                else None), "cpu_count": __import__("os").cpu_count()}
    print(json.dumps(info))
    return 0


def check_native() -> int:
    from pdgan_infer.kernels import native
    c = getattr(native, "_C", None)
    print(json.dumps({"available": native.available(), "reason": native.unavailable_reason("cuda"),
                      "WITH_CUDA": getattr(c, "WITH_CUDA", None), "CUDA_ARCH_LIST": getattr(c, "CUDA_ARCH_LIST", None),
                      "cuda_available": native.cuda_available()}))
    return 0 if native.cuda_available() else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("group", choices=["env", "native", "kernels", "engine", "sanitize", "extra"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="small shapes (CPU unit tests)")
    p.add_argument("--out", type=Path, help="write the records here (JSON)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    RECORDS.clear()
    SETTINGS["out"] = args.out
    if args.group == "env":
        return print_env()
    if args.group == "native":
        return check_native()
    if args.group == "sanitize":
        sanitize_launches(device)
        return 0
    {"kernels": kernel_checks, "engine": engine_checks, "extra": extra_checks}[args.group](device, args.quick)
    write_records()
    failed = [r["check"] for r in RECORDS if not r["ok"]]
    log(f"{len(RECORDS) - len(failed)}/{len(RECORDS)} checks passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


def _json_default(v):
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
