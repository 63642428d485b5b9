"""Digests of the images every CPU backend makes for fixed seeds: run it before and after a change that must not
change any image (a refactoring), and compare the two outputs.

    python benchmarks/images_digest.py [--seeds 0-63] [--backends torch,optimized,native] [--out FILE.json]

Models: the bundled digits model and the cifar10 preset with random weights (`Engine.from_preset("cifar10",
seed=0)`). For each model, backend and dtype (float32; bfloat16 where the CPU has it): the sha256 of
`Engine.generate(seeds=...)`'s uint8 array, its shape and the sum of its pixels. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def digests(seeds: list[int], backends: list[str]) -> dict:
    import torch

    from pdgan_infer import Engine
    from pdgan_infer.optimize import reduced_dtype_supported
    dtypes = ["float32"] + (["bfloat16"] if reduced_dtype_supported(torch.bfloat16, torch.device("cpu")) is None
                            else [])
    models = {"digits": lambda **kw: Engine.from_pretrained("digits", device="cpu", **kw),
              "cifar10": lambda **kw: Engine.from_preset("cifar10", seed=0, device="cpu", **kw)}
    out = {}
    for model, make in models.items():
        for backend in backends:
            for dtype in dtypes:
                if backend == "torch" and dtype != "float32":
                    continue
                images = make(backend=backend, dtype=dtype, verbose=False).generate(seeds=seeds)
                out[f"{model} {backend} {dtype}"] = {"sha256": hashlib.sha256(images.tobytes()).hexdigest(),
                                                     "shape": list(images.shape), "sum": int(images.sum())}
                print(f"{model} {backend} {dtype}: {out[f'{model} {backend} {dtype}']['sha256'][:16]}",
                      file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from pdgan_infer.seeds import parse_seeds
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0-63")
    p.add_argument("--backends", default="torch,optimized,native")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    result = digests(parse_seeds(args.seeds), args.backends.split(","))
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
