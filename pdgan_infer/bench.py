"""pdgan-bench: the 2-NFE sampler on every available backend, side by side in one process.

    pdgan-bench --preset cifar10 --n 100                          # all backends available here
    pdgan-bench --preset digits --n 20 --backends torch,onnxruntime --json out.json --png out.png
    pdgan-bench --checkpoint runs/cifar10 --backends torch,native:bfloat16,onnxruntime:float16

Weights are random unless --checkpoint is given (speed does not depend on the weights). Each backend
is timed on `Engine.generate(n, seed, batch_size)`, i.e. end to end: noise, latent sampler, the T
generator calls and posterior steps, and the uint8 images on the host. Per backend:

* build_s:   Engine construction (export, engine build, compilation that happens at construction);
* warmup_s:  the first generate call (lazy compilation, autotuning, allocator warm-up), not counted;
* median_s, min_s, max_s, iqr_s over --repeats timed calls; images_per_s = n / median_s;
  on CUDA each call is timed with CUDA events (on the engine's device) after a synchronisation, on the
  CPU with perf_counter. `generate` returns host arrays, so this is end-to-end time, host work included;
* runner_median_s (CUDA): GPU time of the sampler chain alone (`engine.runner` on device noise, CUDA
  events, no host work inside), the number to hold against the paper's per-100-images times;
* peak_mem_mb: CUDA: torch.cuda.max_memory_allocated over build + runs (memory that ONNX Runtime or
  TensorRT allocate outside torch is not in it; device_mem_mb has the change in device memory in use,
  from cudaMemGetInfo). CPU: the peak resident set size over build + runs minus the RSS before the
  build (Linux: VmHWM after resetting it through /proc/self/clear_refs; elsewhere ru_maxrss, which
  cannot be reset, so later backends may show 0);
* speedup_vs_torch: the eager `torch` float32 reference's median over this one's (the reference is
  always run, first); max_pixel_diff_vs_torch: largest uint8 difference from its images (same seeds);
* latency_b1_s: batch-1 latency, the median of --latency-repeats `generate(1)` calls after one
  untimed call (not for compile / tensorrt, whose batch 1 is a new compilation / engine profile);
* gflop_per_image: the generator's FLOPs per image (convolutions and matrix products, counted by
  torch.utils.flop_counter.FlopCounterMode on one batch-1 generator call) times the NFE;
  achieved_gflops: gflop_per_image * n / median_s; CPU only: fraction_of_conv_peak = achieved_gflops
  over conv_peak_gflops, the measured peak of a 3x3 convolution (PEAK_SHAPE, in the row's dtype: the
  float32 peak for float32 rows, the bfloat16 peak for bfloat16 rows; best of NCHW and channels-last)
  measured in this process with the same threads (header["conv_peak"]);
* peer: True for the rows of other runtimes on the project's exported sampler graph (`onnxruntime`,
  `tensorrt`, and `openvino`: float32 and bfloat16 inference precision over the float32 ONNX graph,
  `pdgan_infer.backends.openvino`, extra `pdgan[openvino]`); pdgan's own backends are False. On the CPU
  the default list has both openvino rows; without openvino installed they are listed as unavailable
  (with the pip command) and do not fail the run, unless named in --backends.

The paper's targets (V100, per 100 images): 0.16 s on CIFAR-10 and 2.3 s on CelebA-HQ 256. JSON:
{"header": {device, versions, git commit, date, load average, command}, "records": [...]}.

To time a CPU without AMX on one that has it, cap oneDNN's instruction set for torch and OpenVINO
alike: `ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 pdgan-bench ...` (AVX-512 with avx512_bf16, as a Zen 4).

On CUDA the default backend list leaves out `compile` (minutes of max-autotune per batch size) and
`tensorrt` (an engine build); name them in --backends to time them. Each backend runs in its own
process there (--isolate, the CUDA default): one sticky CUDA fault would otherwise poison every
backend timed after it.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import gc
import importlib.util
import inspect
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._cli import ArgumentParser, add_common_arguments, block_seed, check_outputs, int_range, model_files, run_cli
from ._cli import positive_int as _positive
from .checkpoint import atomic_write_bytes
from .config import PRESETS
from .device import resolve_device
from .seeds import SEED_STRIDE

log = logging.getLogger("pdgan")

PAPER_TARGET_S_PER_100 = {"cifar10": 0.16, "celebahq256": 2.3}  # Table 1 / 2, V100
PAPER_GPU = "V100"
REFERENCE = ("torch", "float32")
SLOW_ON_CUDA = ("compile", "tensorrt")  # only when named in --backends on CUDA
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PEERS = ("onnxruntime", "openvino", "tensorrt")  # other runtimes on the project's exported sampler graph
CPU_PEER_ROWS = ("openvino:float32", "openvino:bfloat16")  # peers that are not Engine backends, default on CPU
NO_LATENCY = ("compile", "tensorrt")  # batch 1 would cost a compilation / engine profile of its own
PEAK_SHAPE = (64, 256, 16, 16)  # conv peak micro-benchmark: N, C (in = out), H, W of a 3x3 conv, padding 1
MAX_THREADS = os.cpu_count() or 1  # --threads: more threads than CPUs only slows the timing down


# --- environment -----------------------------------------------------------------------------
def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return getattr(__import__(module), "__version__", "?")
    except Exception as e:  # noqa: BLE001 - a broken optional install must not stop the benchmark
        return f"unimportable ({type(e).__name__})"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                             check=False)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def header(device: torch.device, argv: list[str]) -> dict[str, Any]:
    return {"device": str(device), "device_name": device_name(device), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "triton": _version("triton"), "onnxruntime": _version("onnxruntime"),
                         "onnx": _version("onnx"), "openvino": _version("openvino"),
                         "tensorrt": _version("tensorrt"), "numpy": np.__version__,
                         "cuda": torch.version.cuda},
            "git_commit": git_commit(), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "platform": platform.platform(), "command": "pdgan-bench " + " ".join(argv),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA")}


# --- memory ------------------------------------------------------------------------------------
class PeakMemory:
    """Peak memory over a block: CUDA allocator peak on GPU, peak-RSS delta on the CPU (see module doc)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.free0 = torch.cuda.mem_get_info(self.device)[0]
        else:
            _release_free_heap()
            self.hwm_reset = _reset_hwm()
            self.base = _rss_kb() if self.hwm_reset else _maxrss_kb()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
            self.device_mb = (self.free0 - torch.cuda.mem_get_info(self.device)[0]) / 2**20
        else:
            peak = _status_kb("VmHWM") if self.hwm_reset else _maxrss_kb()
            self.peak_mb, self.device_mb = max(0, peak - self.base) / 1024, None


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _release_free_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc malloc_trim) so that a block's allocations show up in
    its RSS peak: memory freed by earlier work (an earlier backend's batches) is otherwise reused without
    raising the RSS, and the block would look smaller than it is. No-op without glibc."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_kb() -> int:
    return _status_kb("VmRSS")


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


# --- timing ------------------------------------------------------------------------------------
def timed(fn, device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of fn(), synchronised; CUDA events on GPU, recorded on `device`'s stream."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, out
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def make_engine(backend: str, dtype: torch.dtype, device: torch.device, preset: str, checkpoint: str | None,
                seed: int):
    from .engine import Engine
    if backend == "openvino":  # a peer, not an Engine backend: the reference engine with OpenVINO's runner
        from .backends.openvino import OpenVinoRunner
        engine = make_engine("torch", torch.float32, device, preset, checkpoint, seed)
        engine.runner, engine.backend = OpenVinoRunner(engine.model, device, dtype), "openvino"
        return engine
    kwargs = {"backend": backend, "device": device, "dtype": dtype}
    factory = Engine.from_checkpoint if checkpoint else Engine.from_preset
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return factory(checkpoint, **kwargs) if checkpoint else factory(preset, seed=seed, **kwargs)


def probe_backends(device: torch.device) -> dict[str, str | None]:
    """{backend: None if it can run on `device`, else why not} (`Engine.backends`)."""
    from .engine import Engine
    found = Engine.backends(device) if inspect.signature(Engine.backends).parameters else Engine.backends()
    return dict(found) if isinstance(found, dict) else {name: None for name in found}


def _time_generate(engine, args: argparse.Namespace, device: torch.device) -> tuple[list[float], Any]:
    """Seconds of one warm-up and `repeats` timed generate calls (same seed: the same images)."""
    times, images = [], None
    for _ in range(1 + args.repeats):
        dt, images = timed(lambda: engine.generate(args.n, seed=args.seed, batch_size=args.batch_size or args.n),
                           device)
        times.append(dt)
    return times, images


def _time_runner(engine, args: argparse.Namespace, device: torch.device) -> list[float]:
    """GPU seconds of `repeats` calls of the sampler chain alone (after one untimed call) on fixed device
    noise: no latent sampler, noise drawing or host copies inside the events."""
    from .sampler import noise_for
    c, n = engine.config, args.batch_size or args.n
    noise = noise_for(engine.model, range(n), device=device)
    z_T = torch.randn(n, c.generator.nz, device=device, generator=torch.Generator(device).manual_seed(args.seed))
    inputs = (noise.x_T, z_T, noise.z, noise.eps)
    with torch.no_grad():
        engine.runner(*inputs)
        return [timed(lambda: engine.runner(*inputs), device)[0] for _ in range(args.repeats)]


def _time_latency(engine, args: argparse.Namespace, device: torch.device) -> list[float]:
    """Seconds of `latency_repeats` single-image generate calls, after one untimed call."""
    engine.generate(1, seed=args.seed)
    return [timed(lambda: engine.generate(1, seed=args.seed), device)[0] for _ in range(args.latency_repeats)]


def count_flops(fn, *inputs, only: str | None = None) -> int:
    """FLOPs of fn(*inputs) as torch.utils.flop_counter.FlopCounterMode counts them (convolutions and
    matrix products, 2 per multiply-add; elementwise work and norms are not counted); `only`: just the
    ops whose name contains it (e.g. "conv")."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*inputs)
    if only is None:
        return counter.get_total_flops()
    return sum(v for op, v in counter.get_flop_counts().get("Global", {}).items() if only in str(op))


def model_flops_per_image(model, only: str | None = None) -> int:
    """FLOPs of one image through the whole sampler: one batch-1 generator call times the NFE (T)."""
    c = model.config
    x = torch.zeros(1, c.channels, c.resolution, c.resolution)
    z, t = torch.zeros(1, c.generator.nz), torch.full((1,), float(model.schedule.T))
    generator = model.generator.to("cpu").eval()
    return count_flops(generator, x, z, t, only=only) * model.schedule.T


def conv_peak_gflops(dtype: torch.dtype, shape: tuple[int, int, int, int] | None = None, repeats: int = 3) -> float:
    """GFLOP/s of a 3x3 convolution (padding 1, C -> C channels) on the CPU with torch's threads: the best
    of NCHW and channels-last, the median of `repeats` calls after one warm-up each."""
    n, ch, h, w = shape or PEAK_SHAPE
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, ch, h, w, generator=gen).to(dtype)
    weight = (torch.randn(ch, ch, 3, 3, generator=gen) / (3 * ch ** 0.5)).to(dtype)
    flops = 2 * n * ch * ch * 9 * h * w
    best = 0.0
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last):
            conv = functools.partial(torch.nn.functional.conv2d, x.contiguous(memory_format=fmt),
                                     weight.contiguous(memory_format=fmt), padding=1)
            conv()
            times = [timed(conv, torch.device("cpu"))[0] for _ in range(repeats)]
            best = max(best, flops / float(np.median(times)) / 1e9)
    return best


def conv_peak(shape: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
    """header["conv_peak"]: the measured float32 and bfloat16 3x3-conv peaks (GFLOP/s) on this CPU."""
    shape = shape or PEAK_SHAPE
    return {"shape": list(shape), "kernel": [3, 3], "threads": torch.get_num_threads(),
            "gflops": {name: conv_peak_gflops(DTYPES[name], shape) for name in ("float32", "bfloat16")}}


def _flop_model(args: argparse.Namespace, preset: str):
    from .networks import PDGAN
    if args.checkpoint:
        from .checkpoint import load_checkpoint
        return load_checkpoint(args.checkpoint, device="cpu")
    with torch.random.fork_rng(devices=[]):  # the weights do not matter; the global RNG is left alone
        return PDGAN(preset, with_latent=False)


def add_flop_rates(rec: dict[str, Any], gflop_per_image: float | None, peaks: dict[str, float] | None) -> None:
    """achieved_gflops and fraction_of_conv_peak of one record (see the module doc)."""
    rec["gflop_per_image"] = gflop_per_image
    rec["achieved_gflops"] = rec["conv_peak_gflops"] = rec["fraction_of_conv_peak"] = None
    if gflop_per_image and rec.get("median_s"):
        rec["achieved_gflops"] = gflop_per_image * rec["n"] / rec["median_s"]
        peak = (peaks or {}).get(rec["dtype"])
        if peak:
            rec["conv_peak_gflops"], rec["fraction_of_conv_peak"] = peak, rec["achieved_gflops"] / peak


def bench_one(backend: str, dtype_name: str, args: argparse.Namespace, device: torch.device,
              preset: str) -> tuple[dict[str, Any], np.ndarray | None]:
    rec: dict[str, Any] = {"backend": backend, "dtype": dtype_name, "device": str(device), "preset": preset,
                           "n": args.n, "batch_size": args.batch_size or args.n, "repeats": args.repeats}
    try:
        with PeakMemory(device) as mem:
            build_s, engine = timed(lambda: make_engine(backend, DTYPES[dtype_name], device, preset,
                                                        args.checkpoint, args.seed), device)
            times, images = _time_generate(engine, args, device)
            runner_times = _time_runner(engine, args, device) if device.type == "cuda" else None
        latency = (_time_latency(engine, args, device) if args.latency_repeats and backend not in NO_LATENCY
                   else None)
        warmup_s = times.pop(0)
    except Exception as e:  # noqa: BLE001 - one backend failing must not stop the others
        rec["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        return rec, None
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    rec.update(build_s=build_s, warmup_s=warmup_s, median_s=float(med), min_s=min(times), max_s=max(times),
               iqr_s=float(q3 - q1), times_s=times, images_per_s=args.n / float(med),
               s_per_100_images=float(med) * 100 / args.n, peak_mem_mb=mem.peak_mb, device_mem_mb=mem.device_mb)
    if runner_times:
        rec.update(runner_median_s=float(np.median(runner_times)), runner_times_s=runner_times)
    rec["latency_b1_s"] = float(np.median(latency)) if latency else None
    if latency:
        rec["latency_b1_times_s"] = latency
    images = np.asarray(images.cpu() if torch.is_tensor(images) else images)
    rec["image_shape"] = list(images.shape)
    return rec, images


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    device = resolve_device(args.device)
    preset, nfe = args.preset, PRESETS[args.preset].schedule.T
    if args.checkpoint:
        from .checkpoint import read_header
        cfg = read_header(args.checkpoint)["config"]
        preset, nfe = cfg["preset"], cfg["schedule"]["T"]
    probed = probe_backends(device)
    from .backends import openvino
    peer_probe = {"openvino": openvino.probe(device)}
    if args.backends:
        wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    else:
        wanted = default_backends(probed, device)
    runs = [REFERENCE] + [(b.split(":")[0], b.split(":")[1] if ":" in b else args.dtype) for b in wanted]
    runs = list(dict.fromkeys(runs))  # the reference first, no duplicates
    for _, dt in runs:
        if dt not in DTYPES:
            raise ValueError(f"unknown dtype {dt!r}; choose one of {sorted(DTYPES)}")
    unavailable = {k: v for k, v in {**probed, **peer_probe}.items() if v}
    out = {"header": {**header(device, argv), "unavailable": unavailable}, "records": []}
    flop_model = _flop_model(args, preset)
    gflop_per_image = model_flops_per_image(flop_model) / 1e9
    del flop_model
    peaks = None
    if device.type == "cpu":
        log.info(f"3x3 conv peak {'x'.join(map(str, PEAK_SHAPE))} ...")
        out["header"]["conv_peak"] = conv_peak()
        peaks = out["header"]["conv_peak"]["gflops"]
    out["header"]["gflop_per_image"] = gflop_per_image
    ref_images, ref_median = None, None
    target = PAPER_TARGET_S_PER_100.get(preset)
    for backend, dt in runs:
        log.info(f"{backend} ({dt}) ...")
        isolate = device.type == "cuda" if args.isolate is None else args.isolate
        rec, images = (bench_isolated if isolate else bench_one)(backend, dt, args, device, preset)
        rec["reference"], rec["nfe"], rec["peer"] = (backend, dt) == REFERENCE, nfe, backend in PEERS
        if not args.backends and backend in peer_probe:
            rec["optional"] = True  # a peer of the default list: missing is reported, not a failed run
        rec["paper_target_s"] = target * args.n / 100 if target else None
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
        log.info(f"  {_summary(rec)}")
    return out


def default_backends(probed: dict[str, str | None], device: torch.device) -> list[str]:
    """The backends timed without --backends: every available one, less SLOW_ON_CUDA on CUDA, and on the
    CPU the openvino peer rows (float32 and bfloat16), installed or not (a missing one says so)."""
    names = [name for name, why in probed.items()
             if why is None and not (device.type == "cuda" and name in SLOW_ON_CUDA)]
    return names + (list(CPU_PEER_ROWS) if device.type == "cpu" else [])


def _worker_argv(backend: str, dtype_name: str, args: argparse.Namespace, device: torch.device, out: str) -> list[str]:
    argv = ["--worker", out, "--backends", f"{backend}:{dtype_name}", "--device", str(device), "--preset", args.preset,
            "--n", str(args.n), "--repeats", str(args.repeats), "--seed", str(args.seed), "--dtype", dtype_name,
            "--latency-repeats", str(args.latency_repeats)]
    for flag, value in (("--batch-size", args.batch_size), ("--checkpoint", args.checkpoint),
                        ("--threads", args.threads)):
        if value:
            argv += [flag, str(value)]
    return argv


def bench_isolated(backend: str, dtype_name: str, args: argparse.Namespace, device: torch.device,
                   preset: str) -> tuple[dict[str, Any], np.ndarray | None]:
    """`bench_one` in a fresh process (`python -m pdgan_infer.bench --worker DIR ...`)."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="pdgan-bench-") as tmp:
        cmd = [sys.executable, "-m", "pdgan_infer.bench", *_worker_argv(backend, dtype_name, args, device, tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        rec_path, img_path = Path(tmp) / "record.json", Path(tmp) / "images.npy"
        if not rec_path.exists():
            tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            rec = {"backend": backend, "dtype": dtype_name, "device": str(device), "preset": preset, "n": args.n,
                   "batch_size": args.batch_size or args.n, "repeats": args.repeats,
                   "error": f"worker process failed (exit {proc.returncode}): {tail}"[:300]}
            return {**rec, "isolated": True}, None
        rec = {**json.loads(rec_path.read_text()), "isolated": True}
        return rec, (np.load(img_path) if img_path.exists() else None)


def _worker(args: argparse.Namespace) -> int:
    """--worker DIR: time the one backend of --backends, write DIR/record.json (+ images.npy)."""
    device = torch.device(args.device)
    backend, _, dtype_name = args.backends.partition(":")
    preset = args.preset
    if args.checkpoint:
        from .checkpoint import read_header
        preset = read_header(args.checkpoint)["config"]["preset"]
    rec, images = bench_one(backend, dtype_name or args.dtype, args, device, preset)
    out = Path(args.worker)
    if images is not None:
        np.save(out / "images.npy", images)
    (out / "record.json").write_text(json.dumps(rec))
    return 0


def _summary(rec: dict[str, Any]) -> str:
    if rec.get("error"):
        return f"unavailable: {rec['error']}"
    latency = f", batch-1 {rec['latency_b1_s'] * 1e3:.0f} ms" if rec.get("latency_b1_s") else ""
    return (f"median {rec['median_s']:.3f} s ({rec['min_s']:.3f}-{rec['max_s']:.3f}), {rec['images_per_s']:.1f} img/s, "
            f"build {rec['build_s']:.1f} s, warm-up {rec['warmup_s']:.1f} s, peak {rec['peak_mem_mb']:.0f} MB"
            + latency)


# --- output --------------------------------------------------------------------------------------
def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(result: dict[str, Any]) -> str:
    """The records as a Markdown table (also the printed form)."""
    h = result["header"]
    lines = [f"{h['device_name']} ({h['device']}), torch {h['versions']['torch']}, {h['torch_threads']} threads, "
             f"{h['date']}, commit {h['git_commit'] or '?'}"]
    if h.get("onednn_max_cpu_isa"):
        lines.append(f"ONEDNN_MAX_CPU_ISA={h['onednn_max_cpu_isa']}")
    if h.get("conv_peak"):
        p = h["conv_peak"]
        lines.append(f"3x3 conv peak ({'x'.join(map(str, p['shape']))}): "
                     + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in p["gflops"].items())
                     + (f"; the model: {h['gflop_per_image']:.2f} GFLOP per image" if h.get("gflop_per_image") else ""))
    lines += ["", "| backend | dtype | n | batch | build s | warm-up s | median s | min-max s | img/s | s/100 img "
              "| paper s/100 (V100) | peak MB | speedup | max px diff | batch-1 ms | GFLOP/s | of conv peak |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in result["records"]:
        name = f"{r['backend']} (peer)" if r.get("peer") else r["backend"]
        if r.get("error"):
            lines.append(f"| {name} | {r['dtype']} | {r['n']} | {r['batch_size']} | "
                         f"unavailable: {r['error']} ||||||||||||")
            continue
        latency = r.get("latency_b1_s")
        lines.append(
            f"| {name} | {r['dtype']} | {r['n']} | {r['batch_size']} | {_fmt(r['build_s'], '.2f')} "
            f"| {_fmt(r['warmup_s'], '.2f')} | {_fmt(r['median_s'], '.3f')} | {r['min_s']:.3f}-{r['max_s']:.3f} "
            f"| {_fmt(r['images_per_s'], '.1f')} | {_fmt(r['s_per_100_images'], '.3f')} "
            f"| {_fmt(r['paper_target_s_per_100'], '.2f')} | {_fmt(r['peak_mem_mb'], '.0f')} "
            f"| {_fmt(r['speedup_vs_torch'], '.2f')}x | {_fmt(r.get('max_pixel_diff_vs_torch'), 'd')} "
            f"| {_fmt(latency * 1e3 if latency else None, '.1f')} | {_fmt(r.get('achieved_gflops'), '.1f')} "
            f"| {_fmt(r.get('fraction_of_conv_peak'), '.0%')} |")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | os.PathLike) -> None:
    atomic_write_bytes(path, (json.dumps(result, indent=2) + "\n").encode())


PLOT_MISSING = "--png needs matplotlib: pip install 'pdgan[plot]' (or pip install matplotlib)"


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError(PLOT_MISSING)


def bar_chart(result: dict[str, Any]):
    """A matplotlib Figure: images/s per backend (the median call), with error bars from the fastest
    to the slowest timed call (n / max_s .. n / min_s)."""
    require_matplotlib()
    from matplotlib.figure import Figure  # no pyplot: the caller's matplotlib backend is left alone

    recs = [r for r in result["records"] if r.get("images_per_s")]
    # the reference on top; peers marked
    labels = [f"{r['backend']} {r['dtype']}{' (peer)' if r.get('peer') else ''}" for r in recs][::-1]
    values = [r["images_per_s"] for r in recs][::-1]
    low = [r["images_per_s"] - r["n"] / r["max_s"] for r in recs][::-1]
    high = [r["n"] / r["min_s"] - r["images_per_s"] for r in recs][::-1]
    fig = Figure(figsize=(8, 0.5 * len(values) + 1.6))
    ax = fig.add_subplot()
    ax.barh(labels, values, xerr=[low, high], capsize=4, color="#4c72b0", ecolor="black")
    for i, v in enumerate(values):
        ax.text(v + high[i], i, f" {v:.1f}", va="center")
    ax.set_xlabel("images / s of the median call (error bars: slowest to fastest call; higher is better)")
    preset = recs[0]["preset"] if recs else ""
    ax.set_title(f"pdgan-bench {preset}: {result['header']['device_name']}", fontsize=9)
    ax.margins(x=0.15)
    fig.tight_layout()
    return fig


def write_png(result: dict[str, Any], path: str | os.PathLike) -> None:
    """The bar chart as a PNG (atomic); ImportError naming the `plot` extra without matplotlib."""
    fig = bar_chart(result)
    from .checkpoint import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# --- command line ----------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-bench", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backends", help="comma-separated NAME or NAME:DTYPE (default: every backend available "
                   "here); the torch float32 reference always runs first")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cifar10", help="model size (random weights)")
    p.add_argument("--checkpoint", help="time a checkpoint's weights instead (its preset is used)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="compute dtype (NAME:DTYPE overrides)")
    p.add_argument("--n", type=int_range(1, SEED_STRIDE), default=100, help=f"images per timed call (at most "
                   f"{SEED_STRIDE})")
    p.add_argument("--batch-size", type=_positive, default=None, help="images per sampler call (default: n, "
                   "one batch, as the paper's per-100-images timing)")
    p.add_argument("--repeats", type=_positive, default=5, help="timed calls per backend, after one warm-up")
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
    add_common_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        return _worker(args)
    return run_cli("pdgan-bench", args, lambda: _main(args, argv))


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    # Everything that can be checked is checked before minutes of benchmarking, not after.
    resolve_device(args.device)
    check_outputs({"--json": args.json, "--png": args.png}, model_files(args.checkpoint))
    if args.png:
        require_matplotlib()
    if args.checkpoint:  # a damaged checkpoint is one error, not one "unavailable" per backend
        from .checkpoint import load_checkpoint
        load_checkpoint(args.checkpoint)
    result = run(args, argv)
    print(table(result))
    if args.json:
        write_json(result, args.json)
        log.info(f"wrote {args.json}")
    if args.png:
        write_png(result, args.png)
        log.info(f"wrote {args.png}")
    failed = [r for r in result["records"] if not r.get("median_s") and not r.get("optional")]
    if failed:  # a backend that was asked for and did not run is a failed run, even if the reference ran
        log.error(f"error: {len(failed)} of {len(result['records'])} runs failed: "
                  + "; ".join(f"{r['backend']} {r['dtype']}: {r.get('error', 'no timing')}" for r in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
