"""The benchmark's result as a Markdown table, a JSON file and a PNG bar chart."""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Any

from ..checkpoint import atomic_write_bytes


def summary(rec: dict[str, Any]) -> str:
    if rec.get("error"):
        return f"unavailable: {rec['error']}"
    latency = f", batch-1 {rec['latency_b1_s'] * 1e3:.0f} ms" if rec.get("latency_b1_s") else ""
    return (f"median {rec['median_s']:.3f} s ({rec['min_s']:.3f}-{rec['max_s']:.3f}), {rec['images_per_s']:.1f} img/s, "
            f"build {rec['build_s']:.1f} s, warm-up {rec['warmup_s']:.1f} s, peak {rec['peak_mem_mb']:.0f} MB"
            + latency)



def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(result: dict[str, Any]) -> str:
    """The records as a Markdown table (also the printed form)."""
    h = result["header"]
    lines = [f"{h['device_name']} ({h['device']}), torch {h['versions']['torch']}, {h['torch_threads']} threads, "
             f"{h['date']}, commit {h['git_commit'] or '?'}"]
    if h.get("onednn_max_cpu_isa"):
        lines.append(f"ONEDNN_MAX_CPU_ISA={h['onednn_max_cpu_isa']}")
    if h.get("cpu_features"):
        have = ", ".join(k for k, v in h["cpu_features"].items() if v) or "none of avx512_f, avx512_bf16, amx_bf16"
        lines.append(f"CPU features: {have}; native bf16 3x3 convolutions: {h['native_bf16_convolutions']}")
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
    from ..checkpoint import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)

