"""The GPU checks of `make gpu-check` (driver: benchmarks/gpu_check.py), one group per command:

    python benchmarks/gpu_smoke.py env        --out env.json         # GPU, driver, versions, nvcc, setuptools
    python benchmarks/gpu_smoke.py build      --out build.json       # setup.py build_ext, then the CUDA kernels load
    python benchmarks/gpu_smoke.py native                            # the built extension has its CUDA kernels
    python benchmarks/gpu_smoke.py engine     --out engine.json      # every backend vs torch fp32 (TF32 off), timings
    python benchmarks/gpu_smoke.py crosscheck --out crosscheck.json  # same seeds: CPU images vs CUDA images
    python benchmarks/gpu_smoke.py kernels    --out kernels.json     # AdaGN / posterior / noise / graph + timings
    python benchmarks/gpu_smoke.py profile    --out profile.json     # one 2-NFE forward by kernel class
    python benchmarks/gpu_smoke.py sanitize                          # small launches for compute-sanitizer memcheck
    python benchmarks/gpu_smoke.py extra      --out extra.json       # onnxruntime / tensorrt / compile on digits

Each check is one record {"check", ..., "ok": True | False | None, "error"?: str, "skipped"?: str}; a failing
check is recorded and the rest still run; ok None is a check that could not run here (not a pass). Progress
goes to stderr, one line per check. `--device cpu --quick` runs the same code on the CPU with small shapes
(the unit tests do; speed numbers are then meaningless). Shared helpers: benchmarks/gpu_timing.py; the engine,
crosscheck, profile and extra groups: benchmarks/gpu_engine.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import gpu_timing as gt  # noqa: E402
from gpu_timing import RECORDS, SETTINGS, bench, check, log, skip, timing_fields, write_records  # noqa: E402,F401

BUILD_ARCH = "9.0"  # the H100; one architecture keeps the build near 30-40 s on 16 cores
# (label, (N, C, H, W), G): AdaGN inputs that are timed (bf16 and fp32, channels_last as the engine runs them):
# the hottest cifar10 shape, a split-path shape (Cg = 12: 12288 elements per group), celebahq256's largest
# tensor, and a single-path shape larger than L2 (bf16: 105 MB)
TIMED_SHAPES = [
    ("cifar10 128x32x32", (100, 128, 32, 32), 32),
    ("cifar10 384x32x32", (100, 384, 32, 32), 32),
    ("cifar10 256x16x16", (100, 256, 16, 16), 32),
    ("celebahq256 64x256x256", (8, 64, 256, 256), 16),
    ("single > L2 128x32x32", (400, 128, 32, 32), 32),
]
# (label, shape, G, dtype, layout): correctness only (fp16 and NCHW are not what the engine times)
CORRECTNESS_CASES = [
    ("cifar10 128x32x32", (100, 128, 32, 32), 32, "fp16", "channels_last"),
    ("cifar10 384x32x32", (100, 384, 32, 32), 32, "fp16", "channels_last"),
    ("cifar10 128x32x32", (100, 128, 32, 32), 32, "bf16", "nchw"),
    ("cifar10 128x32x32", (100, 128, 32, 32), 32, "fp32", "nchw"),
    ("celebahq256 64x128x128", (8, 64, 128, 128), 16, "bf16", "nchw"),
    ("cifar10 256x4x4", (100, 256, 4, 4), 32, "bf16", "channels_last"),
]
QUICK_SHAPES = [("odd", (3, 12, 7, 5), 3), ("cg4", (2, 16, 8, 8), 4)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# fused kernels: within half an ulp of the dtype around float64, after a float32 allowance doubled for the GPU's
# approximate exp / rsqrt (tests/kernels/test_native.py, pdgan_infer.kernels.reference.adagn_silu_ulp_error)
MAX_ULPS, GPU_SLACK = 0.5, 2
POSTERIOR_SHAPES = [(100, 3, 32, 32), (100, 3, 256, 256)]
WARM_TIMEOUT_S = 45


def adagn_cases(quick: bool) -> list[tuple]:
    """(label, shape, G, dtype name, layout, timed, with the forced Triton variants) of the kernels group."""
    if quick:
        return [(label, shape, g, d, layout, True, True) for label, shape, g in QUICK_SHAPES
                for d in ("fp32", "bf16") for layout in ("nchw", "channels_last")]
    timed = [(label, shape, g, d, "channels_last", True, i == 0) for i, (label, shape, g) in enumerate(TIMED_SHAPES)
             for d in ("bf16", "fp32")]
    return timed + [(label, shape, g, d, layout, False, False) for label, shape, g, d, layout in CORRECTNESS_CASES]


# --- kernels -------------------------------------------------------------------------------------------
def kernel_checks(device: torch.device, quick: bool) -> None:
    from pdgan_infer.kernels import native
    from pdgan_infer.kernels.reference import FP32_SLACK, adagn_silu_ulp_error, adagn_silu_unfused
    impls = {}
    if native.available(device):
        impls["native"] = native.adagn_silu
    else:
        check("native available", kind="adagn")(lambda: {"ok": False, "error": native.unavailable_reason(device)})
    triton_plan = None
    if device.type == "cuda" or _triton_interpreted():  # on the CPU: Triton's interpreter (the unit tests)
        try:
            from pdgan_infer.kernels.adagn import adagn_plan as triton_plan
            from pdgan_infer.kernels.adagn import adagn_silu as triton_adagn
            impls["triton"] = triton_adagn
            impls["triton split"] = lambda x, g, b, G: triton_adagn(x, g, b, G, split=True)
            impls["triton g_block=1"] = lambda x, g, b, G: triton_adagn(x, g, b, G, g_block=1)
        except ImportError as e:
            check("triton available", kind="adagn")(lambda e=e: {"ok": False, "error": str(e)})
    cases = adagn_cases(quick)
    if device.type == "cuda" and triton_plan is not None:
        warm_triton_cache(cases, triton_plan)
    peak, peak_src = gt.hbm_bytes_per_s(device)
    l2, _ = gt.device_lookup(device, gt.L2_BYTES, gt.DEFAULT_L2)
    reps, warmup = (2, 1) if quick else (20, 3)
    for label, shape, groups, dname, layout, timed, variants in cases:
        dtype = DTYPES[dname]
        if device.type == "cpu" and dtype == torch.float16:
            continue
        cl = layout == "channels_last"
        x = (torch.randn(shape, device=device) * 2 + 0.5).to(dtype).contiguous(
            memory_format=torch.channels_last if cl else torch.contiguous_format)
        gamma = torch.randn(shape[:2], device=device) * 0.5 + 1
        beta = torch.randn(shape[:2], device=device)
        t_torch = bench(lambda x=x, g=gamma, b=beta, G=groups: adagn_silu_unfused(x, g, b, G), device, reps,
                        warmup) if timed else None
        plan = triton_plan(shape, dtype, groups, cl) if triton_plan else None
        for impl, fn in impls.items():
            # Cg <= 4 channels_last: the wide single path (G_BLOCK > 1 whole groups per program) against the
            # split path and one group per program
            if impl == "triton split" and not (variants and cl and shape[1] // groups <= 4):
                continue
            if impl == "triton g_block=1" and not (variants and plan and plan.path == "single" and plan.g_block > 1):
                continue
            interpreted = impl.startswith("triton") and device.type == "cpu"
            if interpreted and (layout, label) != ("channels_last", "cg4"):
                continue  # the interpreter is slow: on the CPU only the Cg = 4 channels_last plans
            fields, name = {}, impl
            if impl == "native":
                fields = {"path": gt.native_adagn_path(shape, x.element_size(), groups, cl)}
            elif impl == "triton split":
                fields = {"path": "split"}
            elif plan:
                fields = {"path": plan.path, "g_block": 1 if impl != "triton" else plan.g_block}
                name = f"triton {plan.path} g_block={fields['g_block']}"
            # Triton's CPU interpreter truncates float32 -> bfloat16: one ulp (tests/kernels/test_triton.py)
            tol = 1.0 if dtype == torch.bfloat16 and interpreted else MAX_ULPS
            x_bytes = x.numel() * x.element_size()

            def run(fn=fn, x=x, gamma=gamma, beta=beta, groups=groups, tol=tol, t_torch=t_torch, timed=timed,
                    path=fields.get("path"), x_bytes=x_bytes):
                y = fn(x, gamma, beta, groups)
                slack = FP32_SLACK * (GPU_SLACK if device.type == "cuda" else 1)
                err = adagn_silu_ulp_error(y, x, gamma, beta, groups, fp32_slack=slack).max().item()  # ulps
                rec = {"err": err, "tol": tol, "ok": err <= tol, "timed": timed, "x_mb": x_bytes / 2**20,
                       "larger_than_l2": x_bytes > l2}
                if timed:
                    t = bench(lambda: fn(x, gamma, beta, groups), device, reps, warmup)
                    rec.update(gt.timing_fields("us", t, 1e6), **gt.timing_fields("torch_us", t_torch, 1e6),
                               speedup_vs_torch=t_torch["p50"] / t["p50"])
                    if path:
                        nbytes = gt.adagn_bytes(x.shape, x.element_size(), path)
                        rec.update(bytes=nbytes, passes=gt.adagn_passes(path), gb_per_s=nbytes / t["p50"] / 1e9,
                                   fraction_hbm=nbytes / t["p50"] / peak, hbm_reference=peak_src)
                return rec
            check(f"adagn {name} {label} {dname} {layout}", kind="adagn", impl=impl, shape=list(shape),
                  groups=groups, dtype=dname, layout=layout, **fields)(run)
    posterior_checks(device, quick)
    noise_checks(device, quick)
    torch_path_checks(device, quick)
    if device.type == "cuda":
        graph_checks(device)


def warm_triton_cache(cases: list[tuple], triton_plan) -> None:
    """Compile every Triton specialisation the kernels group launches in a process pool first (16 cores,
    0.2-1.3 s per compile), so the checks find them in Triton's on-disk cache."""
    jobs = []
    for _, shape, groups, dname, layout, _, variants in cases:
        dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dname]
        cl = layout == "channels_last"
        jobs.append(("adagn", shape, dtype, cl, groups, {}))
        plan = triton_plan(shape, DTYPES[dname], groups, cl)
        if variants and cl and shape[1] // groups <= 4:
            jobs.append(("adagn", shape, dtype, cl, groups, {"split": True}))
        if variants and plan.path == "single" and plan.g_block > 1:
            jobs.append(("adagn", shape, dtype, cl, groups, {"g_block": 1}))
    jobs += [("posterior", shape, dtype) for shape in POSTERIOR_SHAPES for dtype in ("float32", "bfloat16", "float16")]
    check("triton compile warm-up", kind="warmup")(
        lambda: gt.warm_triton(jobs, min(16, os.cpu_count() or 4), WARM_TIMEOUT_S))


def posterior_checks(device: torch.device, quick: bool) -> None:
    """Native and Triton posterior steps (noise and seed mode) within half an ulp; timed against the torch
    expression c1 * x0 + c2 * xt + sigma * z (bf16 and fp32; fp16 correctness only)."""
    from pdgan_infer.kernels import native
    from pdgan_infer.kernels.reference import philox_normal_rows_ref, posterior_step_ulp_error
    impls = {"native": native.posterior_step} if native.available(device) else {}
    if device.type == "cuda":
        from pdgan_infer.kernels.posterior import posterior_step as triton_posterior
        impls["triton"] = triton_posterior
    reps = 5 if quick else 20
    for shape in [(2, 3, 5, 7)] if quick else POSTERIOR_SHAPES:
        for dname, dtype in DTYPES.items():
            if device.type == "cpu" and dtype == torch.float16:
                continue
            timed = dname != "fp16"
            x0, xt, z = (torch.randn(shape, device=device).to(dtype) for _ in range(3))
            nbytes = 4 * x0.numel() * x0.element_size()  # x0, xt, z read, y written
            size = "x".join(map(str, shape))
            base: dict = {}  # the torch expression's timing
            if timed:
                def run_torch(x0=x0, xt=xt, z=z, nbytes=nbytes, base=base):
                    base.update(bench(lambda: 0.7 * x0 + 0.25 * xt + 0.3 * z, device, reps, 3))
                    return {**timing_fields("us", base, 1e6), "gb_per_s": nbytes / base["p50"] / 1e9}
                check(f"posterior torch {size} {dname}", kind="posterior", impl="torch", dtype=dname)(run_torch)
            for impl, fn in impls.items():
                def run(fn=fn, x0=x0, xt=xt, z=z, shape=shape, timed=timed, nbytes=nbytes, base=base):
                    # errors in ulps of the dtype against float64; seed mode against the pure-torch Philox stream
                    y = fn(x0, xt, 0.7, 0.25, 0.3, noise=z)
                    err = posterior_step_ulp_error(y, x0, xt, 0.7, 0.25, 0.3, z).max().item()
                    seeded = fn(x0, xt, 0.7, 0.25, 0.3, seed=11, offset=5)
                    zs = philox_normal_rows_ref(torch.tensor([11], device=device), x0.numel(), 5).view(shape)
                    seed_err = posterior_step_ulp_error(seeded, x0, xt, 0.7, 0.25, 0.3, zs).max().item()
                    rec = {"err": err, "seed_err": seed_err, "tol": MAX_ULPS,
                           "ok": err <= MAX_ULPS and seed_err <= MAX_ULPS}
                    if timed:
                        t = bench(lambda: fn(x0, xt, 0.7, 0.25, 0.3, noise=z), device, reps, 3)
                        rec.update(timing_fields("us", t, 1e6), gb_per_s=nbytes / t["p50"] / 1e9)
                        if base:
                            rec["speedup_vs_torch"] = base["p50"] / t["p50"]
                    return rec
                check(f"posterior {impl} {size} {dname}", kind="posterior", impl=impl, dtype=dname)(run)


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
                    (dev.x_T, dev.z_T_noise, dev.z, dev.eps), (cpu.x_T, cpu.z_T_noise, cpu.z, cpu.eps)))
                t = bench(lambda: draw_noise(list(range(n)), 2, c, r, nz, device=device, impl=impl), device,
                          3 if quick else 10, warmup=1, flush=False)
                return {"err": err, "ok": err <= 1e-6, **timing_fields("ms", t, 1e3), "images": n}
            check(f"noise {impl} {preset} n={n}", kind="noise", impl=impl, preset=preset)(run)


def torch_path_checks(device: torch.device, quick: bool) -> None:
    """What the optimized path leaves to torch: which SDPA kernel serves FastAttnBlock's attention (one head of
    dim 256 over cifar10's 16x16 pixels) in bf16 and fp32 (TF32 off), each kernel's time and error against
    float64; whether F.group_norm keeps channels_last. A kernel that does not take the case is recorded as
    skipped (ok None) with its reason."""
    import contextlib

    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    n, length, dim = (2, 16, 8) if quick else (100, 256, 256)
    reps, warmup = (2, 1) if quick else (20, 3)
    for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        q, k, v = (torch.randn(n, 1, length, dim, device=device).to(dtype) for _ in range(3))
        ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
        tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
        backends = {"default": None, **{b.name.lower(): b for b in (
            SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH)}}
        for name, backend in backends.items():
            def run(q=q, k=k, v=v, ref=ref, tol=tol, backend=backend):
                def attend():
                    return F.scaled_dot_product_attention(q, k, v)
                with gt.tf32_off(), sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                    try:
                        out = attend()
                    except RuntimeError as e:  # this kernel does not take the case
                        return {"supported": False, "skipped": str(e).splitlines()[0][:200]}
                    err = (out.double() - ref).abs().max().item()
                    rec = {"supported": True, "err": err, "tol": tol, "ok": err <= tol, "tf32": False,
                           **timing_fields("us", bench(attend, device, reps, warmup), 1e6)}
                    if backend is None and device.type == "cuda":
                        rec["kernels"] = _cuda_kernel_names(attend)
                return rec
            check(f"sdpa {name} 1x{length}x{dim} {dname}", kind="sdpa", dtype=dname, backend=name)(run)
    shape, groups = ((2, 32, 8, 8), 8) if quick else ((100, 128, 32, 32), 32)
    for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        def run(dtype=dtype):
            x = torch.randn(shape, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
            y = F.group_norm(x, groups)
            rec = {"keeps_channels_last": y.is_contiguous(memory_format=torch.channels_last),
                   **timing_fields("us", bench(lambda: F.group_norm(x, groups), device, reps, warmup), 1e6),
                   **timing_fields("nchw_us", bench(lambda: F.group_norm(x.contiguous(), groups), device, reps,
                                                    warmup), 1e6)}
            if device.type == "cuda":
                rec["kernels"] = _cuda_kernel_names(lambda: F.group_norm(x, groups))
            return rec
        check(f"group_norm channels_last {'x'.join(map(str, shape))} {dname}", kind="layout", dtype=dname)(run)


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


def graph_checks(device: torch.device) -> None:
    """The native / Triton kernels inside a hand-made CUDA graph: replay with fresh inputs == eager; seed
    mode refused while capturing (it would freeze the noise). Philox on the CPU and on CUDA agree."""
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
            gs, bs, zs = (torch.ones(8, 128, device=device), torch.zeros(8, 128, device=device),
                          torch.randn(shape, device=device))

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
                expect = 0.5 * adagn_silu_ref(xs, gs, bs, 32) + 0.5 * xs + 0.1 * zs
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
    adagn_silu(xb, gamma, beta, groups)
    if x.shape[2] * x.shape[3] <= 1024:
        adagn_silu(xb, gamma, beta, groups, g_block=1)
    adagn_silu(xb, gamma, beta, groups, split=True)
    adagn_silu(xb.contiguous(), gamma, beta, groups)
    posterior_step(x, x, 0.5, 0.5, 0.1, seed=3, offset=5)
    philox_normal_rows(torch.tensor([1, 2, 3], device=x.device), 1001, offset=7)


# --- env, build, native --------------------------------------------------------------------------------
def _run(cmd: list[str], timeout: float = 20) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"{cmd[0]}: {type(e).__name__}: {e}"


def env_info() -> dict:
    import importlib.util
    import shutil

    def version(module):
        if importlib.util.find_spec(module) is None:
            return None
        try:
            return getattr(__import__(module), "__version__", "?")
        except Exception as e:  # noqa: BLE001 - a broken install is reported, not raised
            return f"import fails: {type(e).__name__}: {e}"[:200]
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    sanitizer = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    cuda = torch.cuda.is_available()
    return {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
            "torch_arch_list": torch.cuda.get_arch_list() if cuda else None,
            **{m: version(m) for m in ("triton", "setuptools", "numpy", "onnx", "onnxruntime", "tensorrt", "pytest")},
            "nvcc": _run([nvcc, "--version"]).splitlines()[-1:],
            "compute_sanitizer": sanitizer if Path(sanitizer).exists() else None, "cpu_count": os.cpu_count(),
            "nvidia_smi": _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                                "power.limit", "--format=csv,noheader"]).splitlines()[:4], **gt.tf32_state()}


def build_extension(arch: str) -> int:
    """setup.py build_ext --inplace for PDGAN_CUDA_ARCH=arch (its output goes to stdout; the record keeps a
    tail), then whether pdgan_infer._C loads with CUDA kernels. A failed build is recorded, not raised."""
    cmd = [sys.executable, "setup.py", "build_ext", "--inplace"]
    env = {**os.environ, "PDGAN_CUDA_ARCH": arch, "MAX_JOBS": str(os.cpu_count() or 8)}

    def build():
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", check=False)
        print(p.stdout, flush=True)
        return {"ok": p.returncode == 0, "rc": p.returncode, "build_s": time.perf_counter() - t0, "arch": arch,
                "cmd": cmd, "tail": p.stdout[-2500:], **({} if p.returncode == 0 else {"error": _last_error(p.stdout)})}
    built = check("build pdgan_infer._C", kind="build")(build)
    native = check("native extension loads with CUDA kernels", kind="build")(native_info)
    return 0 if built["ok"] and native["ok"] else 1


def _last_error(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "error" in ln.lower()]
    return (lines[-1] if lines else output.strip().splitlines()[-1] if output.strip() else "no output")[:300]


def native_info() -> dict:
    from pdgan_infer.kernels import native
    c = getattr(native, "_C", None)
    ok = native.cuda_available()
    return {"available": native.available(), "WITH_CUDA": getattr(c, "WITH_CUDA", None),
            "CUDA_ARCH_LIST": getattr(c, "CUDA_ARCH_LIST", None), "cuda_available": ok, "ok": ok,
            **({} if ok else {"error": native.unavailable_reason("cuda")})}


GROUPS = ["env", "build", "native", "engine", "crosscheck", "kernels", "profile", "sanitize", "extra"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("group", choices=GROUPS)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="small shapes (CPU unit tests)")
    p.add_argument("--out", type=Path, help="write the records here (JSON, rewritten after every check)")
    p.add_argument("--arch", default=BUILD_ARCH, help="build: PDGAN_CUDA_ARCH (default %(default)s)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    RECORDS.clear()
    SETTINGS["out"] = args.out
    if args.group == "env":
        info = check("env", kind="env")(env_info)
        print(json.dumps({k: v for k, v in info.items() if k not in ("check", "kind")}, default=str))
        return 0
    if args.group == "build":
        return build_extension(args.arch)
    if args.group == "native":
        return 0 if check("native extension loads with CUDA kernels", kind="build")(native_info)["ok"] else 1
    if args.group == "sanitize":
        sanitize_launches(device)
        return 0
    if args.group == "kernels":
        kernel_checks(device, args.quick)
    else:
        import gpu_engine
        {"engine": gpu_engine.engine_checks, "crosscheck": gpu_engine.crosscheck_checks,
         "profile": gpu_engine.profile_checks, "extra": gpu_engine.extra_checks}[args.group](device, args.quick)
    write_records()
    passed, failed, skipped = gt.counts(RECORDS)
    names = [r["check"] for r in RECORDS if r.get("ok") is False]
    log(f"{passed} passed, {failed} failed, {skipped} skipped" + (f"; failed: {names}" if names else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
