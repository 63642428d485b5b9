"""The benchmark itself: every backend timed on `Engine.generate`, in this process or one process each."""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends import BACKENDS
from ..config import PRESETS
from ..device import resolve_device
from ..progress import track
from . import flops
from .environment import header
from .flops import DTYPES, add_flop_rates, conv_peak, model_flops_per_image
from .memory import PeakMemory
from .report import summary
from .timing import timed

log = logging.getLogger("pdgan")
WORKER_PREFIX = "pdgan-bench worker: "  # what starts an isolated worker's log lines

# seconds per 100 images on a V100: the paper's Table 1 / 2 for the PDGAN presets; for the ddgan-* presets (DDGAN's
# generators, 4 and 2 NFE, `pdgan-convert ddgan`) DDGAN's own published sampling times
PAPER_TARGET_S_PER_100 = {"cifar10": 0.16, "celebahq256": 2.3, "ddgan-cifar10": 0.21, "ddgan-celebahq256": 1.73}
PAPER_GPU = "V100"
REFERENCE = ("torch", "float32")
SLOW_ON_CUDA = ("compile", "tensorrt")  # only when named in --backends on CUDA
PEERS = ("onnxruntime", "openvino", "tensorrt")  # other runtimes on the project's exported sampler graph
CPU_PEER_ROWS = ("openvino:float32", "openvino:bfloat16")  # the openvino rows of the default CPU list
NO_LATENCY = ("compile", "tensorrt")  # batch 1 would cost a compilation / engine profile of its own


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What every backend is timed on (pdgan-bench's flags of the same names)."""

    preset: str = "cifar10"
    checkpoint: str | None = None  # its weights (and its preset) instead of the preset's random weights
    n: int = 100  # images per timed call
    batch_size: int | None = None  # images per sampler call; None: n
    repeats: int = 5  # timed calls, after one warm-up
    latency_repeats: int = 5  # timed batch-1 calls (0: none)
    seed: int = 0  # of the random weights and of the images
    dtype: str = "float32"  # of a backend named without :DTYPE
    threads: int | None = None  # torch CPU threads (isolated workers set them; None: torch's)

    @property
    def batch(self) -> int:
        return self.batch_size or self.n


def make_engine(backend: str, dtype: torch.dtype, device: torch.device, preset: str, checkpoint: str | None,
                seed: int):
    from ..engine import Engine
    kwargs = {"backend": backend, "device": device, "dtype": dtype}
    factory = Engine.from_checkpoint if checkpoint else Engine.from_preset
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return factory(checkpoint, **kwargs) if checkpoint else factory(preset, seed=seed, **kwargs)


def probe_backends(device: torch.device) -> dict[str, str | None]:
    """{backend: None if it can run on `device`, else why not} (`Engine.backends`)."""
    from ..engine import Engine
    found = Engine.backends(device) if inspect.signature(Engine.backends).parameters else Engine.backends()
    return dict(found) if isinstance(found, dict) else {name: None for name in found}


def time_generate(engine, n: int, batch_size: int, seed: int, repeats: int,
                  device: torch.device, progress: bool | None = None) -> tuple[list[float], Any]:
    """Seconds of one warm-up and `repeats` timed generate calls (same seed: the same images); `progress`
    counts the calls (`pdgan_infer.progress`; updated between them)."""
    times, images = [], None
    for _ in track(range(1 + repeats), f"{getattr(engine, 'backend', 'engine')}: generate({n})", "call", progress):
        dt, images = timed(lambda: engine.generate(n, seed=seed, batch_size=batch_size), device)
        times.append(dt)
    return times, images


def time_runner(engine, batch_size: int, seed: int, repeats: int, device: torch.device) -> list[float]:
    """GPU seconds of `repeats` calls of the sampler chain alone (after one untimed call) on fixed device
    noise: no latent sampler, noise drawing or host copies inside the events."""
    from ..sampler import noise_for
    c, n = engine.config, batch_size
    noise = noise_for(engine.model, range(n), device=device)
    z_T = torch.randn(n, c.generator.nz, device=device, generator=torch.Generator(device).manual_seed(seed))
    inputs = (noise.x_T, z_T, noise.z, noise.eps)
    with torch.no_grad():
        engine.runner(*inputs)
        return [timed(lambda: engine.runner(*inputs), device)[0] for _ in range(repeats)]


def time_latency(engine, seed: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds of `repeats` single-image generate calls, after one untimed call."""
    engine.generate(1, seed=seed)
    return [timed(lambda: engine.generate(1, seed=seed), device)[0] for _ in range(repeats)]


def _flop_model(checkpoint: str | None, preset: str):
    from ..networks import PDGAN
    if checkpoint:
        from ..checkpoint import load_checkpoint
        return load_checkpoint(checkpoint, device="cpu")
    with torch.random.fork_rng(devices=[]):  # the weights do not matter; the global RNG is left alone
        return PDGAN(preset, with_latent=False)


def bench_one(backend: str, dtype_name: str, settings: BenchSettings, device: torch.device,
              preset: str, progress: bool | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
    s = settings
    rec: dict[str, Any] = {"backend": backend, "dtype": dtype_name, "device": str(device), "preset": preset,
                           "n": s.n, "batch_size": s.batch, "repeats": s.repeats}
    try:
        with PeakMemory(device) as mem:
            build_s, engine = timed(lambda: make_engine(backend, DTYPES[dtype_name], device, preset,
                                                        s.checkpoint, s.seed), device)
            times, images = time_generate(engine, s.n, s.batch, s.seed, s.repeats, device, progress)
            runner_times = time_runner(engine, s.batch, s.seed, s.repeats, device) if device.type == "cuda" else None
        latency = (time_latency(engine, s.seed, s.latency_repeats, device)
                   if s.latency_repeats and backend not in NO_LATENCY else None)
        warmup_s = times.pop(0)
    except Exception as e:  # noqa: BLE001 - one backend failing must not stop the others
        rec["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        return rec, None
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    rec.update(build_s=build_s, warmup_s=warmup_s, median_s=float(med), min_s=min(times), max_s=max(times),
               iqr_s=float(q3 - q1), times_s=times, images_per_s=s.n / float(med),
               s_per_100_images=float(med) * 100 / s.n, peak_mem_mb=mem.peak_mb, device_mem_mb=mem.device_mb)
    if runner_times:
        rec.update(runner_median_s=float(np.median(runner_times)), runner_times_s=runner_times)
    rec["latency_b1_s"] = float(np.median(latency)) if latency else None
    if latency:
        rec["latency_b1_times_s"] = latency
    images = np.asarray(images.cpu() if torch.is_tensor(images) else images)
    rec["image_shape"] = list(images.shape)
    return rec, images


def run(settings: BenchSettings, device: str | torch.device = "auto", backends: Sequence[str] | None = None,
        isolate: bool | None = None, argv: Sequence[str] = (), progress: bool | None = None) -> dict[str, Any]:
    """{"header": ..., "records": [...]}: the torch float32 reference first, then each of `backends`
    (NAME or NAME:DTYPE; None: `default_backends`), each in its own process when `isolate`
    (None: on CUDA). `argv` is the command line recorded in the header. `progress`: the timed calls of a
    backend in this process as `pdgan_infer.progress.Progress(show=progress)` (between calls, untimed)."""
    device = resolve_device(device)
    preset, nfe = settings.preset, PRESETS[settings.preset].schedule.T
    if settings.checkpoint:
        from ..checkpoint import read_header
        cfg = read_header(settings.checkpoint)["config"]
        preset, nfe = cfg["preset"], cfg["schedule"]["T"]
    probed = probe_backends(device)
    wanted = list(backends) if backends is not None else default_backends(probed, device)
    runs = [REFERENCE] + [(b.split(":")[0], b.split(":")[1] if ":" in b else settings.dtype) for b in wanted]
    runs = list(dict.fromkeys(runs))  # the reference first, no duplicates
    for name, dt in runs:  # before any timing (the reference alone takes minutes)
        if name not in (*BACKENDS, *PEERS):
            known = ", ".join(dict.fromkeys((*BACKENDS, *PEERS)))
            raise ValueError(f"unknown backend {name!r}; choose from {known}")
        if dt not in DTYPES:
            raise ValueError(f"unknown dtype {dt!r}; choose one of {sorted(DTYPES)}")
    unavailable = {k: v for k, v in probed.items() if v}
    out = {"header": {**header(device, list(argv)), "unavailable": unavailable}, "records": []}
    flop_model = _flop_model(settings.checkpoint, preset)
    gflop_per_image = model_flops_per_image(flop_model) / 1e9
    del flop_model
    peaks = None
    if device.type == "cpu":
        log.info(f"3x3 conv peak {'x'.join(map(str, flops.PEAK_SHAPE))} ...")
        out["header"]["conv_peak"] = conv_peak()
        peaks = out["header"]["conv_peak"]["gflops"]
    out["header"]["gflop_per_image"] = gflop_per_image
    ref_images, ref_median = None, None
    target = PAPER_TARGET_S_PER_100.get(preset)
    for backend, dt in runs:
        log.info(f"{backend} ({dt}) ...")
        isolated = device.type == "cuda" if isolate is None else isolate
        rec, images = (bench_isolated(backend, dt, settings, device, preset) if isolated
                       else bench_one(backend, dt, settings, device, preset, progress))
        rec["reference"], rec["nfe"], rec["peer"] = (backend, dt) == REFERENCE, nfe, backend in PEERS
        if backends is None and f"{backend}:{dt}" in CPU_PEER_ROWS:
            rec["optional"] = True  # a peer of the default list: missing is reported, not a failed run
        rec["paper_target_s"] = target * settings.n / 100 if target else None
        rec["paper_target_s_per_100"], rec["paper_gpu"] = target, PAPER_GPU if target else None
        if rec["reference"] and images is not None:
            ref_images, ref_median = images, rec["median_s"]
        if "median_s" in rec:
            rec["speedup_vs_torch"] = ref_median / rec["median_s"] if ref_median else None
            same = ref_images is not None and images is not None and images.shape == ref_images.shape
            rec["max_pixel_diff_vs_torch"] = (int(np.abs(images.astype(np.int16) - ref_images).max())
                                              if same else None)
        else:
            rec.update(median_s=None, images_per_s=None, peak_mem_mb=None, speedup_vs_torch=None)
        add_flop_rates(rec, gflop_per_image, peaks)
        out["records"].append(rec)
        log.info(f"  {summary(rec)}")
    return out


def default_backends(probed: dict[str, str | None], device: torch.device) -> list[str]:
    """The backends timed without --backends: every available one, less SLOW_ON_CUDA on CUDA, and on the
    CPU the openvino peer rows (float32 and bfloat16), installed or not (a missing one says so)."""
    names = [name for name, why in probed.items() if why is None and name != "openvino"
             and not (device.type == "cuda" and name in SLOW_ON_CUDA)]
    return names + (list(CPU_PEER_ROWS) if device.type == "cpu" else [])


def _worker_argv(backend: str, dtype_name: str, settings: BenchSettings, device: torch.device,
                 out: str) -> list[str]:
    s = settings
    argv = ["--worker", out, "--backends", f"{backend}:{dtype_name}", "--device", str(device), "--preset", s.preset,
            "--n", str(s.n), "--repeats", str(s.repeats), "--seed", str(s.seed), "--dtype", dtype_name,
            "--latency-repeats", str(s.latency_repeats)]
    for flag, value in (("--batch-size", s.batch_size), ("--checkpoint", s.checkpoint), ("--threads", s.threads)):
        if value:
            argv += [flag, str(value)]
    return argv


def bench_isolated(backend: str, dtype_name: str, settings: BenchSettings, device: torch.device,
                   preset: str) -> tuple[dict[str, Any], np.ndarray | None]:
    """`bench_one` in a fresh process (`python -m pdgan_infer.bench --worker DIR ...`). The worker's progress
    lines (`worker`) are logged here as they come; its last stderr line names a failure."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="pdgan-bench-") as tmp:
        cmd = [sys.executable, "-m", "pdgan_infer.bench", *_worker_argv(backend, dtype_name, settings, device, tmp)]
        lines: list[str] = []
        with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
            for line in proc.stderr:
                lines.append(line.rstrip("\n"))
                if line.startswith(WORKER_PREFIX):
                    log.info(f"  {line[len(WORKER_PREFIX):].rstrip()}")
        rec_path, img_path = Path(tmp) / "record.json", Path(tmp) / "images.npy"
        if not rec_path.exists():
            tail = ([line for line in lines if line.strip()] or [f"exit status {proc.returncode}"])[-1]
            rec = {"backend": backend, "dtype": dtype_name, "device": str(device), "preset": preset,
                   "n": settings.n, "batch_size": settings.batch, "repeats": settings.repeats,
                   "error": f"worker process failed (exit {proc.returncode}): {tail.strip()}"[:300]}
            return {**rec, "isolated": True}, None
        rec = {**json.loads(rec_path.read_text()), "isolated": True}
        return rec, (np.load(img_path) if img_path.exists() else None)


def worker(spec: str, settings: BenchSettings, device: str | torch.device, out: str | Path) -> int:
    """The isolated worker (--worker DIR): time the one backend `spec` (NAME or NAME:DTYPE), write
    DIR/record.json (+ images.npy). Its progress goes to stderr as log lines (`bench_isolated` relays them)."""
    from .._cli import setup_logging

    setup_logging(WORKER_PREFIX.removesuffix(": "))
    device = torch.device(device)
    backend, _, dtype_name = spec.partition(":")
    preset = settings.preset
    if settings.checkpoint:
        from ..checkpoint import read_header
        preset = read_header(settings.checkpoint)["config"]["preset"]
    rec, images = bench_one(backend, dtype_name or settings.dtype, settings, device, preset, progress=True)
    out = Path(out)
    if images is not None:
        np.save(out / "images.npy", images)
    (out / "record.json").write_text(json.dumps(rec))
    return 0
