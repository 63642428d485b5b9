"""The paper's Table 1 in miniature on the bundled digits: evaluate the runs of

    for ROW in baseline encoder full; do for SEED in 0 1; do
      pdgan-train --preset digits --data digits --ablation $ROW --no-feature-loss --seed $SEED \
          --max-steps 400 --out RUNS/${ROW}_s${SEED}           # same budget for every row
    done; done

with every digits metric of `pdgan_train.digits_metrics.evaluate_model` (8x8 class shares and confidence,
realism ratio, precision/recall against held-out digits, held-out reconstruction, held-out linear probe,
digits-FID; 1000 samples of `generate(1000, seed=0)` with the latent sampler) and print a Markdown table,
one line per run and the mean of each row's seeds. Reference lines: held-out real digits scored as samples
(the ceiling), and an untrained encoder's probe (the floor a trained encoder must beat).

    python benchmarks/ablation_digits.py RUNS --n 1000 --json benchmarks/results/DATE-MACHINE-ablation-digits.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROWS = (("baseline", "DDGAN (random z at every step)"),
        ("encoder", "+ semantic encoder (SE(x0) at every step)"),
        ("full", "PDGAN: SE(x0) at T, pixel L1, L_per, progressive P (no VGG L1)"))
# (key, header, format); None values print as n/a (the baseline has no encoder)
COLUMNS = (("min_class_share", "min class", ".1%"), ("max_class_share", "max class", ".1%"),
           ("confidence_8x8", "confidence", ".3f"), ("realism_ratio", "realism", ".3f"),
           ("precision_8x8", "precision", ".3f"), ("recall_8x8", "recall", ".3f"),
           ("recon_accuracy", "held-out recon", ".1%"), ("probe_accuracy", "held-out probe", ".1%"),
           ("digits_fid", "digits-FID", ".1f"))


def real_reference() -> dict[str, float]:
    """The held-out real digits scored as if they were samples: what a perfect model reaches (realism is
    1.0 by definition; precision/recall against themselves would be trivially 1, so they are left out)."""
    from pdgan_infer.sampler import to_uint8
    from pdgan_train.digits_metrics import _cnn_fid, heldout_images, pool8, sample_scores

    x, _ = heldout_images()
    images = to_uint8(x).numpy()
    scores = {**sample_scores(pool8(images)), "digits_fid": _cnn_fid(images)}
    return {k: v for k, v in scores.items() if k not in ("precision_8x8", "recall_8x8")}


def untrained_probe() -> float:
    """Held-out linear probe of an untrained digits encoder (in eval mode, as trained ones are scored)."""
    from pdgan_infer import PDGAN
    from pdgan_train.digits_metrics import probe_accuracy

    torch.manual_seed(0)
    model = PDGAN("digits", with_latent=False).eval()
    return probe_accuracy(model.encoder)["probe_accuracy"]


def table(results: dict) -> str:
    head = "| model | seed | steps | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|---|--:|--:|" + "--:|" * len(COLUMNS)]

    def cells(r: dict) -> str:
        return " | ".join("n/a" if r.get(k) is None else format(r[k], f) for k, _, f in COLUMNS)

    for row, label in ROWS:
        runs = [r for r in results["runs"] if r["row"] == row]
        for r in runs:
            lines.append(f"| {row}: {label} | {r['seed']} | {r['train_step']} | {cells(r)} |")
        if len(runs) > 1:
            mean = {k: (float(np.mean([r[k] for r in runs])) if all(r.get(k) is not None for r in runs) else None)
                    for k, _, _ in COLUMNS}
            lines.append(f"| **{row}: mean of {len(runs)} seeds** | | | {cells(mean)} |")
    real = {k: results["real"].get(k) for k, _, _ in COLUMNS}
    lines.append(f"| held-out real digits (reference) | | | {cells(real)} |")
    lines.append("| untrained encoder (reference) | | 0 | " + " | ".join(
        format(results["untrained_encoder_probe"], ".1%") if k == "probe_accuracy" else "-"
        for k, _, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="folder holding ROW_sSEED/ run directories (ROW in baseline, encoder, full)")
    p.add_argument("--n", type=int, default=1000, help="samples per model (default %(default)s)")
    p.add_argument("--json", help="write the raw results here")
    args = p.parse_args(argv)
    from pdgan_infer.bench import device_name
    from pdgan_infer.checkpoint import load_checkpoint
    from pdgan_train.digits_metrics import evaluate_model

    results = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
               "cpu": device_name(torch.device("cpu")), "threads": torch.get_num_threads(), "n": args.n,
               "command": "python " + " ".join(sys.argv), "runs": []}
    for row, _ in ROWS:
        for run in sorted(Path(args.runs).glob(f"{row}_s*")):
            ckpt = run / "model.safetensors"
            if not ckpt.is_file():
                print(f"skipping {run}: no model.safetensors", file=sys.stderr)
                continue
            t0 = time.time()
            model = load_checkpoint(ckpt).eval()
            res = evaluate_model(model, n=args.n, seed=0)
            header = json.loads(ckpt.with_suffix(".json").read_text())
            res.update(row=row, seed=int(run.name.rsplit("_s", 1)[1]), run=str(run),
                       train_step=header.get("meta", {}).get("step"), eval_s=round(time.time() - t0, 1))
            results["runs"].append(res)
            print(f"{run.name}: evaluated in {res['eval_s']} s", file=sys.stderr)
    results["real"] = real_reference()
    results["untrained_encoder_probe"] = untrained_probe()
    print(table(results))
    if args.json:
        from pdgan_infer.checkpoint import atomic_write_bytes
        text = json.dumps(results, indent=2, sort_keys=True, default=float) + "\n"
        atomic_write_bytes(Path(args.json), text.encode())
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
