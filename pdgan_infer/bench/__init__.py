"""pdgan-bench: the T-step sampler (2 NFE for PDGAN presets) on every available backend, side by side in one process.

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

The paper's targets (V100, per 100 images): 0.16 s on CIFAR-10 and 2.3 s on CelebA-HQ 256; the ddgan-cifar10 (4 NFE)
and ddgan-celebahq256 (2 NFE) presets, DDGAN's generators with random weights (no latent denoiser), hold against
DDGAN's published 0.21 s and 1.73 s. JSON:
{"header": {device, versions, git commit, date, load average, command}, "records": [...]}.

To time a CPU without AMX on one that has it, cap oneDNN's instruction set for torch and OpenVINO
alike: `ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 pdgan-bench ...` (AVX-512 with avx512_bf16, as a Zen 4).

On CUDA the default backend list leaves out `compile` (minutes of max-autotune per batch size) and
`tensorrt` (an engine build); name them in --backends to time them. Each backend runs in its own
process there (--isolate, the CUDA default): one sticky CUDA fault would otherwise poison every
backend timed after it.

The package: `timing` (timed calls), `memory` (PeakMemory), `flops` (FLOP counts, the conv peak), `report`
(table, JSON, PNG), `environment` (the JSON header) and `suite` (`run`, one backend in this or a fresh
process); the command line is `pdgan_infer.cli.bench`.
"""
from __future__ import annotations

from ..deprecation import moved
from .environment import device_name, git_commit, header
from .flops import DTYPES, PEAK_SHAPE, add_flop_rates, conv_peak, conv_peak_gflops, count_flops, model_flops_per_image
from .memory import PeakMemory
from .report import PLOT_MISSING, bar_chart, require_matplotlib, summary, table, write_json, write_png
from .suite import (
    CPU_PEER_ROWS,
    NO_LATENCY,
    PAPER_GPU,
    PAPER_TARGET_S_PER_100,
    PEERS,
    REFERENCE,
    SLOW_ON_CUDA,
    BenchSettings,
    bench_isolated,
    bench_one,
    default_backends,
    make_engine,
    probe_backends,
    run,
    time_generate,
    time_latency,
    time_runner,
    worker,
)
from .timing import timed

__all__ = ["CPU_PEER_ROWS", "DTYPES", "NO_LATENCY", "PAPER_GPU", "PAPER_TARGET_S_PER_100", "PEAK_SHAPE", "PEERS",
           "PLOT_MISSING", "REFERENCE", "SLOW_ON_CUDA", "BenchSettings", "PeakMemory", "add_flop_rates", "bar_chart",
           "bench_isolated", "bench_one", "conv_peak", "conv_peak_gflops", "count_flops", "default_backends",
           "device_name", "git_commit", "header", "make_engine", "model_flops_per_image", "probe_backends",
           "require_matplotlib", "run", "summary", "table", "time_generate", "time_latency", "time_runner", "timed",
           "worker", "write_json", "write_png", "main", "parser", "MAX_THREADS"]


# the command line (`main`, `parser`, `MAX_THREADS`) lives in pdgan_infer.cli.bench; resolved here for one release
__getattr__ = moved(__name__, "pdgan_infer.cli.bench", ("main", "parser", "MAX_THREADS"))
