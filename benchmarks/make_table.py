"""Turn benchmark results into Markdown tables (for docs/benchmarks.md).

    python benchmarks/make_table.py                         # every benchmarks/results/*.json
    python benchmarks/make_table.py results/a.json -o t.md  # chosen files, to a file

Reads both formats: `pdgan-bench --json` ({"header", "records"}) and pytest-benchmark's
`--benchmark-json` ({"machine_info", "benchmarks"}: kernel groups become one row per shape with a
column per provider, plus GB/s when `extra_info.bytes` is present).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _f(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def bench_table(data: dict) -> str:
    h = data["header"]
    load = h.get("load_average")
    lines = [f"{h['device_name']} ({h['device']}), torch {h['versions']['torch']}, onnxruntime "
             f"{h['versions'].get('onnxruntime') or '-'}, {h.get('torch_threads')} threads"
             + (f", load average {load[0]:.1f}" if load else "") + f", {h['date']}, commit {h.get('git_commit')}",
             "", "| backend | dtype | n | batch | median s | min-max s | img/s | s/100 img | paper s/100 (V100) "
             "| warm-up s | build s | peak MB | speedup vs torch |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in data["records"]:
        if r.get("error"):
            lines.append(f"| {r['backend']} | {r['dtype']} | {r['n']} | {r['batch_size']} | unavailable: "
                         f"{r['error'][:80]} ||||||||")
            continue
        lines.append(f"| {r['backend']} | {r['dtype']} | {r['n']} | {r['batch_size']} | {r['median_s']:.3f} | "
                     f"{r['min_s']:.3f}-{r['max_s']:.3f} | {r['images_per_s']:.1f} | {r['s_per_100_images']:.3f} | "
                     f"{_f(r.get('paper_target_s_per_100'), '.2f')} | {r['warmup_s']:.2f} | {r['build_s']:.2f} | "
                     f"{_f(r.get('peak_mem_mb'), '.0f')} | {_f(r.get('speedup_vs_torch'), '.2f')}x |")
    return "\n".join(lines)


def pytest_benchmark_table(data: dict) -> str:
    info = data.get("machine_info", {}).get("pdgan", {})
    head = (f"{info.get('device_name', data.get('machine_info', {}).get('cpu', {}).get('brand_raw', '?'))}, "
            f"torch {info.get('versions', {}).get('torch', '?')}, {data.get('datetime', '')[:19]}, commit "
            f"{info.get('git_commit') or data.get('commit_info', {}).get('id', '?')}")
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for b in data["benchmarks"]:
        extra = b.get("extra_info", {})
        name = extra.get("provider") or extra.get("backend") or b["name"]
        groups[b.get("group") or b["name"]][name] = {"median": b["stats"]["median"], "bytes": extra.get("bytes")}
    providers = sorted({p for g in groups.values() for p in g}, key=lambda p: (p != "torch", p))
    slow = max((r["median"] for g in groups.values() for r in g.values()), default=0) > 1.0
    unit, scale = ("s", 1.0) if slow else ("ms", 1e3)
    lines = [head, "", "| case | " + " | ".join(f"{p} median {unit}" for p in providers) + " | best speedup vs torch |",
             "|---|" + "--:|" * (len(providers) + 1)]
    for group, rows in groups.items():
        cells = []
        for p in providers:
            r = rows.get(p)
            if r is None:
                cells.append("-")
                continue
            gbs = f" ({r['bytes'] / r['median'] / 1e9:.1f} GB/s)" if r.get("bytes") else ""
            cells.append(f"{r['median'] * scale:.3f}{gbs}")
        base = rows.get("torch", {}).get("median")
        others = [r["median"] for p, r in rows.items() if p != "torch"]
        speed = f"{base / min(others):.2f}x" if base and others else "-"
        lines.append(f"| {group} | " + " | ".join(cells) + f" | {speed} |")
    return "\n".join(lines)


def generic_table(data: dict) -> str:
    """Any other {"header", "records"} file (e.g. the engine's own scripts): scalar fields as columns."""
    h = data.get("header", {})
    records = data["records"]
    cols = [k for k, v in records[0].items() if isinstance(v, (str, int, float, bool)) or v is None][:14]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v)  # noqa: E731
    lines = [", ".join(f"{k} {h[k]}" for k in ("cpu", "device_name", "torch", "date", "git_commit", "command")
                       if k in h), "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in records]
    return "\n".join(lines)


def render(path: Path) -> str:
    data = json.loads(path.read_text())
    if "records" in data and "device_name" in data.get("header", {}):
        body = bench_table(data)
    elif "benchmarks" in data:
        body = pytest_benchmark_table(data)
    elif data.get("records"):
        body = generic_table(data)
    else:
        raise ValueError(f"{path}: neither a pdgan-bench nor a pytest-benchmark JSON file")
    return f"### {path.stem}\n\n{body}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path, help="JSON results (default: benchmarks/results/*.json)")
    p.add_argument("-o", "--out", type=Path, help="write the Markdown here instead of stdout")
    args = p.parse_args(argv)
    files = args.files or sorted((HERE / "results").glob("*.json"))
    if not files:
        print("make_table: no results found", file=sys.stderr)
        return 1
    text = "\n".join(render(f) for f in files)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
