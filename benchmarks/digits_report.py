"""The bundled digits model's numbers and pictures for docs/digits-model.md, from one command:

    python benchmarks/digits_report.py [MODEL] [--n 1000] [--json benchmarks/results/DATE-MACHINE-digits-model.json]
                                       [--images docs/images]

MODEL defaults to the bundled "digits". Writes the JSON of `pdgan_train.digits_metrics.evaluate_model`
(1000 samples of `generate(1000, seed=0)`, held-out reconstructions and probe) with the CPU, torch
version and command, prints the report, and draws:

    digits_samples.png      the first 100 samples (what `make demo` writes)
    digits_reconstruct.png  16 held-out digits (rows 1, 3) above their reconstructions from z_T = SE(x0)
                            (rows 2, 4), `engine.generate_from(engine.encode(x), seed=0)`
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pdgan_infer import Engine
from pdgan_infer.bench import device_name
from pdgan_infer.sampler import to_uint8
from pdgan_train.digits_metrics import evaluate_model, format_report, heldout_images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="digits")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--json", help="write the metrics here")
    ap.add_argument("--images", help="folder for the PNG grids")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    engine = Engine.from_pretrained(args.model, backend="torch", device="cpu", verbose=False)
    t0 = time.time()
    result = evaluate_model(engine.model, n=args.n, seed=0)
    print(format_report(result))
    if args.json:
        cpu = device_name(torch.device("cpu"))
        meta = {"command": "python " + " ".join(sys.argv), "model": args.model, "cpu": cpu,
                "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - t0, 1)}
        Path(args.json).write_text(json.dumps({"meta": meta, "result": result}, indent=2) + "\n")
    if args.images:
        out = Path(args.images)
        out.mkdir(parents=True, exist_ok=True)
        engine.save_grid(engine.generate(100, seed=0), out / "digits_samples.png", nrow=10)
        x, _ = heldout_images()
        x = x[np.linspace(0, len(x) - 1, 16).astype(int)]
        recon = engine.generate_from(engine.encode(x), seed=0)
        real = to_uint8(x).numpy()
        rows = [real[:8], recon[:8], real[8:], recon[8:]]
        engine.save_grid(np.concatenate(rows), out / "digits_reconstruct.png", nrow=8)
        print(f"wrote {out}/digits_samples.png, {out}/digits_reconstruct.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
