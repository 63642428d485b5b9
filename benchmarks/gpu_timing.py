"""Shared pieces of the gpu_smoke groups (benchmarks/gpu_smoke.py, gpu_engine.py): the check records, GPU
timing, AdaGN byte counts, the TF32 switch and the Triton compile warm-up.

Records: every check is one dict {"check", ..., "ok": True | False | None}; ok None marks a skipped check
(field "skipped": the reason), which counts neither as passed nor as failed. `--out FILE` is rewritten
(temp file + replace) after every check, so a step killed at its limit keeps what it finished.

Timing (`bench`): launches are queued back to back between CUDA events (one event pair per repetition,
one synchronize at the end), with a 256 MB buffer zeroed before each repetition when flush=True, so no input
stays in L2 and the GPU never idles waiting for the host. Every timing is reported as p10 / p50 / p90.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

import torch

RECORDS: list[dict] = []
SETTINGS: dict = {"out": None}  # --out: rewritten after every check
FLUSH_BYTES = 256 * 2**20  # larger than any GPU's L2 (H100: 50 MB, H200: 60 MB, B200: 126 MB)
# nominal HBM bandwidth (bytes/s) and L2 size (bytes) by device-name substring (first match wins)
HBM = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100 NVL": 3.9e12, "H100": 3.35e12, "A100-SXM4-80GB": 2.04e12,
       "A100": 1.56e12, "B200": 8.0e12}
L2_BYTES = {"H200": 60 * 2**20, "H100": 50 * 2**20, "A100": 40 * 2**20, "B200": 126 * 2**20}
DEFAULT_L2 = 50 * 2**20
_FLUSH: dict = {}


def log(msg: str) -> None:
    print(f"gpu_smoke: {msg}", file=sys.stderr, flush=True)


def check(name: str, **fields):
    """check(name, **fields)(fn): run fn() -> dict and record it (ok unless it says otherwise or raises;
    a dict with "skipped" and no "ok" is a skip, ok None)."""
    def run(fn):
        rec = {"check": name, **fields}
        t0 = time.perf_counter()
        try:
            rec.update(fn())
            rec.setdefault("ok", None if "skipped" in rec else True)
        except Exception as e:  # noqa: BLE001 - recorded, the next check runs
            rec.update(ok=False, error=f"{type(e).__name__}: {e}"[:500], trace=traceback.format_exc()[-1500:])
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        RECORDS.append(rec)
        write_records()
        state = {True: "ok  ", False: "FAIL", None: "skip"}[rec["ok"]]
        log(f"{state} {name} {_short(rec)}")
        return rec
    return run


def skip(name: str, reason: str, **fields) -> dict:
    """Record a check that did not run (ok None, excluded from the pass / fail counts)."""
    rec = {"check": name, **fields, "ok": None, "skipped": reason}
    RECORDS.append(rec)
    write_records()
    log(f"skip {name}: {reason}")
    return rec


def write_records() -> None:
    out = SETTINGS["out"]
    if out is not None:
        atomic_write(Path(out), json.dumps(RECORDS, indent=1, default=str))


def atomic_write(path: Path, text: str) -> None:
    """Write text to path through a temp file in the same folder and os.replace: a reader (or a cut) sees
    the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def counts(records: list[dict]) -> tuple[int, int, int]:
    """(passed, failed, skipped) among records that carry "ok"."""
    oks = [r.get("ok") for r in records if isinstance(r, dict) and "ok" in r]
    return sum(o is True for o in oks), sum(o is False for o in oks), sum(o is None for o in oks)


def _short(rec: dict) -> str:
    keys = ("err", "tol", "us", "fraction_hbm", "ms", "max_pixel_diff", "max_uint8_diff", "g_block", "tf32",
            "supported", "keeps_channels_last", "providers", "build_s", "skipped", "error")
    return " ".join(f"{k}={rec[k]:.3g}" if isinstance(rec.get(k), float) else f"{k}={rec[k]}"
                    for k in keys if k in rec)


# --- timing ------------------------------------------------------------------------------------------------
def percentiles(samples: list[float]) -> dict:
    """{"p10", "p50", "p90", "n"} of the samples (nearest-rank on the sorted samples)."""
    if not samples:
        raise ValueError("percentiles: no samples")
    s = sorted(samples)
    n = len(s)

    def rank(q: float) -> float:
        return s[min(n - 1, max(0, int(round(q * (n - 1)))))]
    return {"p10": rank(0.1), "p50": rank(0.5), "p90": rank(0.9), "n": n}


def _flush_buffer(device: torch.device) -> torch.Tensor:
    key = str(device)
    if key not in _FLUSH:
        _FLUSH[key] = torch.empty(FLUSH_BYTES, dtype=torch.int8, device=device)
    return _FLUSH[key]


def bench(fn, device: torch.device, reps: int = 20, warmup: int = 3, flush: bool = True,
          max_s: float | None = None) -> dict:
    """Seconds per fn() call as percentiles(...). CUDA: all repetitions queued back to back, each between its
    own pair of events (after zeroing a 256 MB buffer when flush=True, which clears L2), one synchronize at
    the end. max_s caps the repetitions at about max_s seconds of calls (at least 3), estimated from the
    warm-up. CPU: perf_counter around each call."""
    t0 = time.perf_counter()
    for _ in range(max(warmup, 1 if max_s else 0)):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if max_s and warmup:
        per_call = (time.perf_counter() - t0) / max(warmup, 1)
        reps = max(3, min(reps, int(max_s / max(per_call, 1e-9))))
    if device.type != "cuda":
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return percentiles(times)
    with torch.cuda.device(device):
        cache = _flush_buffer(device) if flush else None
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for start, end in zip(starts, ends):
            if cache is not None:
                cache.zero_()
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return percentiles([s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)])


def timing_fields(prefix: str, t: dict, scale: float) -> dict:
    """{prefix: p50, prefix_p10, prefix_p90} in the unit `scale` (1e3: ms, 1e6: us)."""
    return {prefix: t["p50"] * scale, f"{prefix}_p10": t["p10"] * scale, f"{prefix}_p90": t["p90"] * scale}


def device_lookup(device: torch.device, table: dict, default):
    if device.type != "cuda":
        return default, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, value in table.items():
        if key in name:
            return value, f"nominal {key}"
    return default, "unknown device: default"


def hbm_bytes_per_s(device: torch.device) -> tuple[float, str]:
    """Nominal HBM bandwidth of the device (by name), else a measured 1 GiB device copy (read + write)."""
    bw, src = device_lookup(device, HBM, None)
    if bw is not None:
        return bw, src
    if device.type != "cuda":
        return float("nan"), "cpu"
    a = torch.empty(1 << 28, device=device)
    b = torch.empty_like(a)
    t = bench(lambda: b.copy_(a), device, reps=5)["p50"]
    return 2 * a.numel() * 4 / t, "measured copy"


# --- AdaGN memory traffic ----------------------------------------------------------------------------------
def adagn_passes(path: str) -> int:
    """Full passes over an x-sized tensor: the single (fused) path reads x once and writes y (2); the split
    path reads x for the statistics, again to apply, and writes y (3)."""
    if path not in ("single", "split"):
        raise ValueError(f"adagn_passes: path must be 'single' or 'split', got {path!r}")
    return 2 if path == "single" else 3


def adagn_bytes(shape, element_size: int, path: str) -> int:
    """Bytes an AdaGN + SiLU call must move at least: adagn_passes(path) passes over x, plus gamma and beta
    (float32, N x C each)."""
    n, c, h, w = shape
    return adagn_passes(path) * n * c * h * w * element_size + 2 * n * c * 4


def native_adagn_path(shape, element_size: int, num_groups: int, channels_last: bool) -> str:
    """The plan csrc/adagn/adagn_cuda.cu (make_plan) takes for 16-byte aligned x and y: "single" (fused)
    when a group's Cg * H * W elements fit the fused cap (256 threads x pack x packs per thread), else
    "split". The pack: 16 bytes, else 8, that never straddles a channel (NCHW) or a group (NHWC), or in NHWC a
    16-byte pack of two whole groups (G even, a pair's slab within the cap unless one group's is above it)."""
    _, c, h, w = shape
    cg, hw = c // num_groups, h * w
    m = cg * hw

    def cap(vec: int) -> int:
        return 256 * vec * min(32 // vec, 8)
    vec = 1
    for nbytes in (16, 8):
        v = nbytes // element_size
        if v == 1:
            continue
        if cg % v == 0 if channels_last else hw % v == 0:
            vec = v
            break
        if (channels_last and nbytes == 16 and v == 2 * cg and num_groups % 2 == 0
                and (m > cap(v) or 2 * m <= cap(v))):
            vec = v
            break
    return "single" if m <= cap(vec) else "split"


# --- TF32 ------------------------------------------------------------------------------------------------
def tf32_state() -> dict:
    """Whether float32 convolutions (cuDNN) and matmuls (cuBLAS) may run in TF32 right now."""
    b = torch.backends
    state = {}
    try:
        state["tf32_conv"] = bool(b.cudnn.allow_tf32)
    except RuntimeError:  # the per-operator API set conv and rnn differently
        state["tf32_conv"] = getattr(b.cudnn.conv, "fp32_precision", "?") == "tf32"
    state["tf32_matmul"] = bool(b.cuda.matmul.allow_tf32)
    state["tf32"] = state["tf32_conv"] or state["tf32_matmul"]
    return state


@contextlib.contextmanager
def tf32_off():
    """float32 convolutions and matmuls in full float32 (no TF32) inside the block. Through the allow_tf32
    flags: torch's per-operator fp32_precision setters make `torch.backends.cudnn.allow_tf32` raise when
    read afterwards, and the engine's CUDA-graph capture reads it (pdgan_infer/optimize.py)."""
    b = torch.backends
    before = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
    b.cudnn.allow_tf32 = False
    b.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = before


# --- Triton compile warm-up ---------------------------------------------------------------------------------
def warm_job(job: tuple) -> str:
    """One Triton launch per job, in a worker process, so its compile lands in Triton's on-disk cache:
    ("adagn", shape, dtype, channels_last, groups, kwargs) or ("posterior", shape, dtype)."""
    kind, shape, dtype = job[0], tuple(job[1]), getattr(torch, job[2])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "adagn":
        from pdgan_infer.kernels.adagn import adagn_silu
        channels_last, groups, kwargs = job[3], job[4], job[5]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.zeros(shape, device=device, dtype=dtype).contiguous(memory_format=fmt)
        gamma = torch.ones(shape[:2], device=device)
        adagn_silu(x, gamma, torch.zeros_like(gamma), groups, **kwargs)
    elif kind == "posterior":
        from pdgan_infer.kernels.posterior import posterior_step
        x = torch.zeros(shape, device=device, dtype=dtype)
        posterior_step(x, x, 0.5, 0.5, 0.1, noise=x)
        posterior_step(x, x, 0.5, 0.5, 0.1, seed=11, offset=5)
    else:
        raise ValueError(f"warm_job: unknown kind {kind!r}")
    if device == "cuda":
        torch.cuda.synchronize()
    return kind


def warm_triton(jobs: list[tuple], workers: int, timeout_s: float) -> dict:
    """Compile the jobs' Triton kernels in a pool of spawned processes (Triton's cache is on disk and shared),
    so the timed checks after it find them compiled. Returns {"jobs", "failed", "seconds", "errors"}."""
    import concurrent.futures as cf
    import multiprocessing
    t0, errors = time.perf_counter(), []
    ex = cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [ex.submit(warm_job, job) for job in jobs]
        done, pending = cf.wait(futures, timeout=timeout_s)
        for f in done:
            if f.exception() is not None:
                errors.append(f"{type(f.exception()).__name__}: {f.exception()}"[:200])
    finally:
        ex.shutdown(wait=False, cancel_futures=True)  # a hung compile does not hold the step
    return {"jobs": len(jobs), "failed": len(errors), "not_done": len(pending),
            "seconds": round(time.perf_counter() - t0, 1), "errors": errors[:5]}
