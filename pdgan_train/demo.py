"""`make demo`: the main job end to end on a 2-core CPU in a few minutes.

1. Loads the pretrained digits model bundled with the package (`Engine.from_pretrained("digits")`,
   trained on CPU by the command in the README). If an installation lacks it, the demo says so and
   falls back to random weights of the same preset (the images are then noise; the timings are real).
2. Generates 100 images with the fastest available backend and writes a PNG grid.
3. With the trained model, prints the digits metrics of `pdgan_train.digits_metrics`: class shares and
   confidence of an 8x8 classifier, realism ratio, precision/recall against held-out digits, held-out
   reconstruction accuracy, linear probe of the codes, digits-FID (the shipped 32x32 CNN).
4. Prints a timing table: every available CPU backend side by side, speedup over eager fp32, and the
   paper's reference time (0.16 s per 100 CIFAR-10 images on a V100).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pdgan_infer._cli import (
    ArgumentParser,
    add_common_arguments,
    add_overwrite_argument,
    check_outputs,
    int_range,
    run_cli,
)
from pdgan_infer.seeds import SEED_STRIDE

# Timed by default: every CPU backend that is ready in seconds. `compile` (minutes of Inductor warm-up) and
# `triton` (on CPU only under the numpy interpreter) are left to `pdgan-bench --backends ...`.
DEMO_BACKENDS = ("torch", "optimized", "native", "onnxruntime", "optimized:bfloat16", "native:bfloat16")


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="pdgan-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_out", help="output folder (default %(default)s)")
    p.add_argument("--n", type=int_range(1, SEED_STRIDE), default=100, help="images to generate (default %(default)s)")
    p.add_argument("--repeats", type=int_range(1, 1000), default=3, help="timed runs per backend (default %(default)s)")
    p.add_argument("--eval-n", type=int_range(0, SEED_STRIDE), default=1000,
                   help="samples for the digits metrics (default %(default)s; 0: skip)")
    p.add_argument("--backends", help="comma-separated backends to time, NAME or NAME:DTYPE (default: those of "
                   f"{','.join(DEMO_BACKENDS)} available here)")
    add_overwrite_argument(p)
    add_common_arguments(p)
    args = p.parse_args(argv)
    return run_cli("pdgan-demo", args, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    check_outputs({"--out": args.out}, folders={"--out"}, overwrite=args.overwrite)
    from pdgan_infer import Engine, bench
    from pdgan_infer.hub import pretrained_models
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundled = pretrained_models().get("digits")
    trained = bundled is not None and bundled["preset"] == "digits"
    if trained:
        engine = Engine.from_pretrained("digits")
        print(f"pdgan demo: bundled model 'digits' ({bundled['description']})")
    else:
        print("pdgan demo: this installation has no bundled pretrained 'digits' model; using RANDOM weights of "
              "the 'digits' preset (images are noise; the pipeline and the timings are real).\n"
              "  Train one: pdgan-train --preset digits --data digits --out runs/digits", file=sys.stderr)
        engine = Engine.from_preset("digits", seed=0)
    images = engine.generate(args.n, seed=0)
    grid = engine.save_grid(images, out / "samples.png", nrow=10)
    print(f"wrote {grid} ({args.n} images, backend {engine.backend})")
    if trained and args.eval_n:
        from .digits_metrics import evaluate_model, format_report
        print(format_report(evaluate_model(engine.model, n=args.eval_n, seed=0)))
    bench_args = ["--preset", "digits", "--n", str(args.n), "--repeats", str(args.repeats), "--device", "cpu",
                  "--json", str(out / "bench.json")]  # the CPU backends probed below, timed on the CPU
    if trained:
        bench_args += ["--checkpoint", str(bundled["path"])]
    available = {name for name, why in Engine.backends("cpu").items() if why is None}
    backends = args.backends or ",".join(b for b in DEMO_BACKENDS if b.split(":")[0] in available)
    bench_args += ["--backends", backends]
    code = bench.main(bench_args)
    target = bench.PAPER_TARGET_S_PER_100["cifar10"]
    print(f"paper's target for reference: {target} s per 100 CIFAR-10 images (32x32, 2 NFE) on a {bench.PAPER_GPU}; "
          "the digits model is a smaller network at the same resolution: time the paper's size with "
          "pdgan-bench --preset cifar10")
    return code


if __name__ == "__main__":
    sys.exit(main())
