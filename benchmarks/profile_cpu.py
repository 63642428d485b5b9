"""Where the CPU time of `Engine.generate(n)` goes: a torch.profiler op table grouped into op classes.

    python benchmarks/profile_cpu.py --backend native:bfloat16 --preset cifar10 --n 100 --threads 2
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python benchmarks/profile_cpu.py ...   # as a CPU without AMX

One engine (random weights, as pdgan-bench), one untimed generate call, then --repeats profiled calls.
Every op's self CPU time (the calling thread's; intra-op threads work inside it) goes into one class:

    convolution         aten convolutions (cuDNN/oneDNN/slow paths), less the depthwise FIR ones, and the
                        native Winograd 3x3 convolutions (pdgan::winograd_conv3x3, its GEMMs included)
    adagn/group norm    group_norm, the native adagn_silu kernel, SiLU, the scale-shift (addcmul)
    fir resampling      depthwise (groups = C) convolutions / transposed convolutions: the FIR
                        up/down sampling; bilinear upsampling (the optimized FIR path)
    attention           bmm, baddbmm, softmax, scaled_dot_product_attention
    reorders/copies     copy_, to/_to_copy, clone, contiguous, cat, oneDNN reorders
    allocation          empty, empty_strided, resize_, zeros/zero_/fill_
    other               everything else (linear layers, elementwise adds, the posterior step, noise);
                        its biggest ops are listed

Also: wall seconds per call, and the convolutions' GFLOP/s (their FLOPs from FlopCounterMode on one
generator call, times NFE and n, over the convolution class's time). An exported runtime (onnxruntime,
openvino) is one opaque op to torch's profiler: profile those with their own tools.
Writes benchmarks/results/DATE-MACHINE-profile-cpu-<backend>-<dtype>-<preset>-n<n>.txt (--out to change) and
prints it; MACHINE is $PDGAN_MACHINE, a name
from MACHINES in benchmarks/results_index.py (e.g. xeon-amx); without it, unnamed-machine, which
`results_index.py --check` rejects until the file is renamed.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = os.environ.get("PDGAN_MACHINE", "unnamed-machine")  # benchmarks/results_index.py
CLASSES = ("convolution", "adagn/group norm", "fir resampling", "attention", "reorders/copies", "allocation", "other")
CONV_OPS = ("convolution", "conv2d", "conv_transpose", "mkldnn_convolution", "slow_conv", "conv_depthwise",
            "thnn_conv", "mkldnn_reorder_conv", "winograd_conv3x3")
ADAGN_OPS = ("group_norm", "adagn", "silu", "addcmul", "native_group_norm")
FIR_OPS = ("upsample_bilinear", "upfirdn", "fir")
ATTENTION_OPS = ("bmm", "baddbmm", "softmax", "scaled_dot_product", "flash_attention", "_efficient_attention")
COPY_OPS = ("copy_", "_to_copy", "aten::to", "clone", "contiguous", "aten::cat", "reorder", "to_dense",
            "to_mkldnn")
ALLOC_OPS = ("aten::empty", "empty_strided", "empty_like", "resize_", "aten::zeros", "zero_", "fill_", "new_empty")


def op_class(name: str, input_shapes: list | None = None) -> str:
    """The class of one profiler op (see the module doc); `input_shapes` tells depthwise FIR convs apart."""
    low = name.lower()
    if any(k in low for k in CONV_OPS):
        weight = input_shapes[1] if input_shapes and len(input_shapes) > 1 else None
        return "fir resampling" if weight and len(weight) == 4 and weight[1] == 1 else "convolution"
    for cls, keys in (("adagn/group norm", ADAGN_OPS), ("fir resampling", FIR_OPS),
                      ("attention", ATTENTION_OPS), ("reorders/copies", COPY_OPS), ("allocation", ALLOC_OPS)):
        if any(k in low for k in keys):
            return cls
    return "other"


def group(events) -> tuple[dict[str, float], dict[str, float]]:
    """({class: self CPU us}, {op name in class "other": self CPU us}) over profiler key averages
    (grouped by input shape, so that each entry has the shapes `op_class` needs)."""
    by_class, other = defaultdict(float), defaultdict(float)
    for e in events:
        cls = op_class(e.key, getattr(e, "input_shapes", None))
        by_class[cls] += e.self_cpu_time_total
        if cls == "other":
            other[e.key] += e.self_cpu_time_total
    return dict(by_class), dict(other)


def render(info: dict, by_class: dict[str, float], other: dict[str, float], op_table: str) -> str:
    calls = info["repeats"]
    total = sum(by_class.values()) or 1.0
    lines = [f"# CPU profile: {info['backend']} {info['dtype']}, {info['preset']}, n={info['n']}, {info['nfe']} NFE",
             f"cpu: {info['cpu']}; torch {info['torch']}; {info['threads']} threads; "
             f"ONEDNN_MAX_CPU_ISA={info['isa'] or '(unset)'}; commit {info['commit'] or '?'}; {info['date']}",
             f"command: {info['command']}",
             f"wall per generate call: {info['wall_s']:.3f} s (median of {calls}); profiled self CPU time per call: "
             f"{total / calls / 1e6:.3f} s; load average {info['load']}", "",
             "| op class | ms per call | share |", "|---|--:|--:|"]
    for cls in CLASSES:
        us = by_class.get(cls, 0.0)
        lines.append(f"| {cls} | {us / calls / 1e3:.1f} | {us / total:.1%} |")
    conv_s = by_class.get("convolution", 0.0) / calls / 1e6
    if conv_s and info["conv_gflop"]:
        lines += ["", f"convolutions: {info['conv_gflop']:.1f} GFLOP per call ({info['conv_gflop'] / info['n']:.2f} "
                  "per image; the small depthwise FIR convolutions included) in the convolution class's "
                  f"{conv_s:.3f} s: {info['conv_gflop'] / conv_s:.1f} GFLOP/s (direct-convolution FLOPs: Winograd "
                  "layers do a quarter of the multiply-adds, so this can exceed the direct-convolution peak)"]
    top = sorted(other.items(), key=lambda kv: -kv[1])[:8]
    if top:
        lines += ["", "biggest ops in 'other': " + ", ".join(f"{k} {v / calls / 1e3:.1f} ms" for k, v in top)]
    lines += ["", "torch.profiler op table (all profiled calls, by self CPU time):", "", op_table]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="native:bfloat16", help="BACKEND or BACKEND:DTYPE (as pdgan-bench)")
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--n", type=int, default=100, help="images per call (one batch)")
    p.add_argument("--repeats", type=int, default=1, help="profiled calls after one untimed one")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rows", type=int, default=30, help="rows of the op table")
    p.add_argument("--out", type=Path,
                   help="default benchmarks/results/DATE-MACHINE-profile-cpu-<backend>-<dtype>-<preset>-n<n>.txt")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(ROOT))
    from pdgan_infer import bench

    if args.threads:
        torch.set_num_threads(args.threads)
    backend, _, dtype = args.backend.partition(":")
    dtype = dtype or "float32"
    device = torch.device("cpu")
    engine = bench.make_engine(backend, bench.DTYPES[dtype], device, args.preset, None, 0)
    engine.generate(args.n, seed=0, batch_size=args.n)  # warm-up: oneDNN primitives, allocator, lazy inits
    walls = []
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.repeats):
            t = time.perf_counter()
            engine.generate(args.n, seed=0, batch_size=args.n)
            walls.append(time.perf_counter() - t)
    events = prof.key_averages(group_by_input_shape=True)
    by_class, other = group(events)
    cpu = bench.device_name(device)
    info = {"backend": backend, "dtype": dtype, "preset": args.preset, "n": args.n, "nfe": engine.model.schedule.T,
            "repeats": args.repeats, "cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "isa": os.environ.get("ONEDNN_MAX_CPU_ISA"), "commit": bench.git_commit(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python benchmarks/profile_cpu.py " + " ".join(argv), "wall_s": float(np.median(walls)),
            "load": [round(x, 2) for x in os.getloadavg()],
            "conv_gflop": bench.model_flops_per_image(engine.model, only="conv") * args.n / 1e9}
    text = render(info, by_class, other,
                  prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    out = args.out or (ROOT / "benchmarks" / "results" / f"{datetime.date.today().isoformat()}-"
                       f"{MACHINE}-profile-cpu-{backend}-{dtype}-"
                       f"{args.preset}-n{args.n}.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
