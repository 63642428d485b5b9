"""Per layer: oneDNN's direct 3x3 convolution (F.conv2d, channels_last) against the native Winograd kernel
(float32: F(4x4, 3x3); --dtype bfloat16: F(2x2, 3x3), CPUs with AVX512-BF16) on every distinct 3x3 stride-1
layer shape of a model, CPU.

    python benchmarks/winograd_layers.py --preset cifar10 --n 100 --threads 2
    python benchmarks/winograd_layers.py --preset cifar10 --n 25 --threads 2 --dtype bfloat16
    python benchmarks/winograd_layers.py --checkpoint pdgan_infer/pretrained/digits.safetensors --n 100

Prints (and writes to --out, default benchmarks/results/DATE-MACHINE-winograd-layers-<model>.txt) one row per
(C in, C out, resolution): calls per generate(1) (T = 2 generator passes), best-of-`--repeats` milliseconds
of each, the speedup, and the largest difference from a float64 convolution relative to the |x| * |w| scale. This is the
measurement behind `optimize.WINOGRAD_MIN_CHANNELS` and `WINOGRAD_BF16_MIN_CHANNELS` (the native backend runs the
CPU in passes of `optimize.cpu_micro_batch(resolution)` images: 25 for cifar10).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = os.environ.get("PDGAN_MACHINE", "unnamed-machine")  # benchmarks/results_index.py


def best_ms(fn, args: tuple, repeats: int) -> float:
    fn(*args)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="cifar10")
    src.add_argument("--checkpoint", type=Path)
    p.add_argument("--n", type=int, default=100, help="batch of the timed convolutions")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    from pdgan_infer import Engine, bench
    from pdgan_infer.kernels import native
    from pdgan_infer.optimize import Optimizations

    if not native.available():
        print(f"winograd_layers: {native.unavailable_reason()}", file=sys.stderr)
        return 2
    bf16 = args.dtype == "bfloat16"
    if bf16 and not native.winograd_bf16_supported():
        print("winograd_layers: the bfloat16 kernel needs a CPU with AVX512-BF16", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    kernel, transform = ((native.winograd_conv3x3_bf16, native.winograd_weight_bf16) if bf16
                         else (native.winograd_conv3x3, native.winograd_weight))
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = Optimizations(winograd=False)
    kw = {"backend": "optimized", "device": "cpu", "opts": opts}
    engine = Engine.from_checkpoint(args.checkpoint, **kw) if args.checkpoint else Engine.from_preset(args.preset, **kw)
    layers: dict[tuple[int, int, int], list] = {}

    def hook(module, inputs):
        key = (module.in_channels, module.out_channels, inputs[0].shape[2])
        layers.setdefault(key, [module, 0])[1] += 1

    convs = [m for m in engine.runner.generator.modules() if type(m) is torch.nn.Conv2d and m.kernel_size == (3, 3)
             and m.stride == (1, 1) and m.padding == (1, 1) and m.groups == 1 and m.weight.dtype == torch.float32]
    handles = [m.register_forward_pre_hook(hook) for m in convs]
    engine.generate(1, seed=0)
    for h in handles:
        h.remove()
    name = args.checkpoint.stem if args.checkpoint else args.preset
    cpu = bench.device_name(torch.device("cpu"))
    tile = "F(2x2, 3x3)" if bf16 else "F(4x4, 3x3)"
    lines = [f"# Winograd {tile} vs direct 3x3 convolution per layer: {name}, batch {args.n}, {args.dtype}",
             f"cpu: {cpu}; torch {torch.__version__}; {torch.get_num_threads()} threads; commit {bench.git_commit()}; "
             f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             "command: python benchmarks/winograd_layers.py " + " ".join(argv), "",
             "| C in | C out | res | calls per generate (2 NFE) | direct ms | winograd ms | speedup "
             "| rel. error (direct) |",
             "|--:|--:|--:|--:|--:|--:|--:|--:|"]
    total = [0.0, 0.0]
    gen = torch.Generator().manual_seed(0)
    for (cin, cout, res), (conv, calls) in sorted(layers.items()):
        if bf16 and (cin % 16 or cout % 32):
            lines.append(f"| {cin} | {cout} | {res} | {calls} | - | - | - | (channels not multiples of 16 / 32) |")
            continue
        x = torch.randn(args.n, cin, res, res, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
        w, b = conv.weight.detach().to(dtype), conv.bias.detach().float().contiguous()
        wc, bd = w.contiguous(memory_format=torch.channels_last), b.to(dtype)
        u = transform(w)
        with torch.no_grad():
            direct = best_ms(lambda *a: F.conv2d(*a, padding=1), (x, wc, bd), args.repeats)
            wino = best_ms(kernel, (x, u, b), args.repeats)
            ref = F.conv2d(x[:4].double(), w.double(), b.double(), padding=1)
            scale = F.conv2d(x[:4].double().abs(), w.double().abs(), b.double().abs(), padding=1).amax()
            err_w = ((kernel(x[:4], u, b).double() - ref).abs().amax() / scale).item()
            err_d = ((F.conv2d(x[:4], wc, bd, padding=1).double() - ref).abs().amax() / scale).item()
        total[0] += direct * calls
        total[1] += wino * calls
        lines.append(f"| {cin} | {cout} | {res} | {calls} | {direct:.2f} | {wino:.2f} | {direct / wino:.2f}x | "
                     f"{err_w:.1e} ({err_d:.1e}) |")
    lines += ["", "per generate call, all 3x3 stride-1 layers (calls x time): "
              f"direct {total[0]:.0f} ms, winograd {total[1]:.0f} ms "
              f"({total[0] / max(total[1], 1e-9):.2f}x); load average {[round(v, 2) for v in os.getloadavg()]}"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    suffix = "-bfloat16" if bf16 else ""
    stem = f"{datetime.date.today().isoformat()}-{MACHINE}-winograd-layers-{name}{suffix}.txt"
    out = args.out or ROOT / "benchmarks" / "results" / stem
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
