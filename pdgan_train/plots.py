"""Learning curves of a run: `metrics.jsonl` -> `metrics.png` (matplotlib, the `plot` extra).

Top row: the losses logged every `log_every` steps. Below: the in-training digits metrics
(`pdgan_train.digits_metrics`), each with its target (issue 11) as a dashed line.

    python -m pdgan_train.plots RUN_DIR [--out PNG]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from pathlib import Path

from pdgan_infer.checkpoint import atomic_path

from .digits_metrics import TARGETS

log = logging.getLogger("pdgan")
LOSSES = ("d_real", "d_fake", "g_adv", "pixel", "per")
PANELS = (("realism_ratio",), ("min_class_share", "max_class_share"), ("confidence_8x8",),
          ("recon_accuracy", "probe_accuracy"), ("precision_8x8", "recall_8x8"), ("digits_fid",))


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(loss records, eval records) of a run's metrics.jsonl; unreadable lines are skipped."""
    losses, evals = [], []
    path = Path(run_dir) / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "eval" in rec:
            evals.append(rec)
        elif isinstance(rec, dict) and "step" in rec:
            losses.append(rec)
    return losses, evals


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Draw the run's curves to `out` (default RUN_DIR/metrics.png); None (and a log line) without
    matplotlib or without any record."""
    if importlib.util.find_spec("matplotlib") is None:
        log.warning("metrics.png skipped: the learning curves need matplotlib (pip install 'pdgan[plot]')")
        return None
    from matplotlib.figure import Figure

    losses, evals = read_metrics(run_dir)
    if not losses and not evals:
        return None
    panels = [p for p in PANELS if any(k in r["eval"] for r in evals for k in p)]
    rows = 1 + (len(panels) + 2) // 3
    fig = Figure(figsize=(13, 3.2 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 3)
    ax = fig.add_subplot(grid[0, :])
    values = []
    for key in LOSSES:
        pts = [(r["step"], r[key]) for r in losses if isinstance(r.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts), label=key, lw=1)
            values += [v for _, v in pts]
    if values:  # early spikes (a discriminator that wins for a few steps) would flatten everything else
        ax.set_ylim(0, 1.1 * float(sorted(values)[int(0.99 * (len(values) - 1))]))
    ax.set(xlabel="step", title="losses")
    ax.legend(ncol=len(LOSSES), fontsize=8)
    # In-training evaluations draw z_T from a Gaussian fitted to the codes (no latent denoiser yet); the
    # final one, after the latent stage, from the latent denoiser as Engine.generate does: drawn apart.
    during = [r for r in evals if r["eval"].get("z_T") != "latent"]
    final = [r for r in evals if r["eval"].get("z_T") == "latent"]
    for i, keys in enumerate(panels):
        ax = fig.add_subplot(grid[1 + i // 3, i % 3])
        for key in keys:
            pts = [(r["step"], r["eval"][key]) for r in during if isinstance(r["eval"].get(key), (int, float))]
            if pts:
                line, = ax.plot(*zip(*pts), marker="o", ms=3, label=f"{key} (Gaussian z_T)")
                color = line.get_color()
            else:
                color = None
            end = [(r["step"], r["eval"][key]) for r in final if isinstance(r["eval"].get(key), (int, float))]
            if end:
                ax.plot(*zip(*end), marker="*", ms=12, ls="", color=color, label=f"{key} (final, latent sampler)")
            if key in TARGETS:
                ax.axhline(TARGETS[key][1], ls="--", lw=0.8, color="grey")
        ax.set(xlabel="step", title=", ".join(keys) + "  (dashed: target)")
        ax.legend(fontsize=7)
    path = Path(out) if out is not None else Path(run_dir) / "metrics.png"
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdgan_train.plots", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--out", help="PNG path (default RUN_DIR/metrics.png)")
    args = p.parse_args(argv)
    path = plot_run(args.run_dir, args.out)
    print(path if path else "nothing to plot (no metrics.jsonl records, or no matplotlib)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
