"""The paper's Table 1 in miniature on the bundled digits: evaluate the runs of

    pdgan-train --preset digits --data digits --ablation ROW --no-feature-loss --out RUNS/ROW \
        --max-steps 1000 --batch-size 32            # ROW in baseline, encoder, full (same budget)

with `pdgan_train.eval.evaluate` (digits-FID, class coverage, linear probe, interpolation smoothness) and
print a Markdown table; `--json` keeps the raw numbers. A reference row evaluates N real training images
against the whole set (the floor digits-FID reaches with N samples).

    python benchmarks/ablation_digits.py RUNS --n 1000 --json benchmarks/results/ablation.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROWS = (("baseline", "DDGAN (random z at every step)"), ("encoder", "+ semantic encoder (SE(x0) at every step)"),
        ("full", "PDGAN: SE(x0) at T, pixel L1, L_per, progressive P (no VGG L1)"))


def real_reference(n: int, seed: int = 0) -> dict[str, float]:
    """digits-FID and coverage of n real images (drawn without replacement) against all of them."""
    from pdgan_infer.sampler import to_uint8
    from pdgan_train.data import build_dataset
    from pdgan_train.digits_classifier import load_digits_classifier
    from pdgan_train.eval import _digits_extractors, digits_scores

    ds = build_dataset("digits", 32, 3)
    images = to_uint8(torch.stack([ds[i][0] for i in range(len(ds))])).numpy()
    ex = _digits_extractors(load_digits_classifier(), "cpu")
    pick = np.random.default_rng(seed).choice(len(images), size=min(n, len(images)), replace=False)
    feats, probs = ex["digits_feats"](images[pick]), ex["digits_probs"](images[pick])
    return digits_scores(feats, probs, ex["digits_feats"](images))


def untrained_probe() -> float:
    """Linear-probe accuracy of SE codes from an untrained encoder (the initialisation training starts
    from): the floor a trained encoder's probe should beat."""
    from pdgan_infer import PDGAN
    from pdgan_train.data import build_dataset, dataset_labels
    from pdgan_train.eval import linear_probe

    torch.manual_seed(0)
    ds = build_dataset("digits", 32, 3)
    return linear_probe(PDGAN("digits", with_latent=False), ds, dataset_labels(ds), 5000, 64, "cpu")[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", help="folder holding baseline/, encoder/, full/ (pdgan-train run directories)")
    p.add_argument("--n", type=int, default=1000,
                   help="samples per model, and real images in the reference row (default %(default)s, < 1797)")
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args(argv)
    from pdgan_train.eval import evaluate

    results = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "machine": platform.processor()
               or platform.machine(), "threads": torch.get_num_threads(), "n": args.n, "rows": {}}
    for row, _ in ROWS:
        ckpt = Path(args.runs) / row / "model.safetensors"
        if not ckpt.exists():
            print(f"skipping {row}: {ckpt} not found", file=sys.stderr)
            continue
        t0 = time.time()
        res = evaluate(ckpt, "digits", n=args.n, metrics=["digits", "probe", "interp"], progress=False)
        header = json.loads(ckpt.with_suffix(".json").read_text())
        res["train_step"] = header.get("meta", {}).get("step")
        res["eval_s"] = round(time.time() - t0, 1)
        results["rows"][row] = res
        print(f"{row}: done in {res['eval_s']} s", file=sys.stderr)
    results["real"] = real_reference(args.n)
    results["untrained_encoder_probe"] = untrained_probe()

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    print("| model | steps | digits-FID (lower is better) | class coverage | confident | linear probe | "
          "interp. mean step | interp. variance |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for row, label in ROWS:
        r = results["rows"].get(row)
        if r is None:
            continue
        print(f"| {row}: {label} | {r['train_step']} | {fmt(r['digits_fid'], '.1f')} | "
              f"{fmt(r['class_coverage'], '.0%')} | {fmt(r['confident_fraction'], '.0%')} | "
              f"{fmt(r.get('probe_accuracy'), '.1%')} | {fmt(r.get('interp_mean'), '.3f')} | "
              f"{fmt(r.get('interp_var'), '.4f')} |")
    real = results["real"]
    print(f"| {args.n} real training images (reference) | - | {real['digits_fid']:.1f} | "
          f"{real['class_coverage']:.0%} | {real['confident_fraction']:.0%} | - | - | - |")
    print(f"| untrained semantic encoder (reference) | 0 | - | - | - | {results['untrained_encoder_probe']:.1%} "
          "| - | - |")
    if args.json:
        from pdgan_infer.checkpoint import atomic_write_bytes
        text = json.dumps(results, indent=2, sort_keys=True, default=float) + "\n"
        atomic_write_bytes(Path(args.json), text.encode())
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
