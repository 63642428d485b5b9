"""Write benchmarks/results/INDEX.md: one line per results file (date, machine, experiment, commit, what it
shows, which doc quotes it), and check the files' names.

    python benchmarks/results_index.py            # rewrite INDEX.md
    python benchmarks/results_index.py --check    # exit 1 if INDEX.md is stale or a name breaks the scheme

Every file in benchmarks/results/ is named DATE-MACHINE-EXPERIMENT.EXT:
  DATE        the day of the run, YYYY-MM-DD
  MACHINE     one of MACHINES below (add a machine there before committing its first run)
  EXPERIMENT  lowercase words joined by hyphens, e.g. cpu-bench-cifar10
  EXT         json, md, txt, png or csv
and has a line in WHAT ("what it shows"): adding a run means renaming it to the scheme, adding its line
here and running this script. `make gpu-check` writes gpu-check.json / gpu-check.md; a GPU run that is
kept is committed as, e.g., DATE-h100-gpu-check.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
INDEX = "INDEX.md"

MACHINES = {
    "xeon-amx": "the project's 2-core Intel(R) Xeon(R) Processor VM (AVX-512, avx512_bf16, AMX), torch 2.13 CPU",
    "xeon-no-amx-emulated": "the same Xeon with oneDNN capped at AVX512_CORE_BF16 (ONEDNN_MAX_CPU_ISA): the "
                            "kernels of a CPU without AMX, not its speeds",
    "epyc-zen4": "a 2-core AMD EPYC VM (Zen 4: AVX-512, avx512_bf16, no AMX), torch 2.13 CPU, shared with other "
                 "sessions",
    "h100": "one NVIDIA H100 (sm_90)",
    "h200": "one NVIDIA H200 (sm_90)",
}
EXTENSIONS = ("json", "md", "txt", "png", "csv")
NAME = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2})-(?P<machine>MACHINE)-(?P<experiment>[a-z0-9]+(?:-[a-z0-9]+)*)"
                  r"\.(?P<ext>[a-z0-9]+)".replace("MACHINE", "|".join(sorted(map(re.escape, MACHINES),
                                                                                  key=len, reverse=True))))

WHAT = {
    "2026-11-26-xeon-amx-cpu-bench-digits.json":
        "pdgan-bench on the bundled digits model, 100 images, every CPU backend: the timing table of `make demo`",
    "2026-11-26-xeon-amx-engine-cpu-cifar10-1thread.json":
        "benchmarks/bench_engine_cpu.py, cifar10, generate(100), 1 thread, interleaved A/B of torch, optimized "
        "and native (fp32/bf16); quoted by the Engine's docstring",
    "2026-11-29-xeon-amx-ablation-digits.json":
        "Table 1 in miniature: baseline, encoder and full rows at 400 steps, every digits metric",
    "2026-11-29-xeon-amx-digits-model.json":
        "the bundled digits model's quality: every digits metric on 1000 samples, against its targets",
    "2026-11-29-xeon-amx-train-step.json":
        "training step time (d + g + EMA, batch 32) per provider: chain targets, channels-last, Adam variants, bf16",
    "2026-11-29-xeon-amx-train-step-profile.txt":
        "torch profiler of one digits training step (fused Adam): time shares per op",
    "2026-11-30-xeon-amx-cpu-bench-cifar10.json":
        "the current CPU table: pdgan-bench cifar10, 100 images, pdgan and peer backends, fp32 and bf16 "
        "(Winograd + CPU micro-batches)",
    "2026-11-30-xeon-amx-profile-cpu-native-fp32-cifar10-n100.txt":
        "where native fp32 spends its time with Winograd (profile_cpu.py, cifar10, n = 100)",
    "2026-11-30-xeon-amx-reliability-rerun.json":
        "the reliability review's unclean cases re-run on the fixed code (all clean or not reproducible)",
    "2026-11-30-xeon-amx-reliability-rerun.md":
        "the same re-run as a table (case, then, now, message)",
    "2026-11-30-xeon-amx-serve-digits-native.json":
        "pdgan-serve load benchmark, digits, backend native, concurrency 1/4/16, against the in-process Engine",
    "2026-11-30-xeon-amx-serve-digits-torch.json":
        "pdgan-serve load benchmark, digits, backend torch, concurrency 1/4/16, against the in-process Engine",
    "2026-11-30-xeon-amx-winograd-layers-cifar10.txt":
        "Winograd F(4x4, 3x3) against oneDNN's direct convolution per cifar10 3x3 layer, batch 100",
    "2026-11-30-xeon-amx-winograd-layers-digits.txt":
        "the same per digits layer (all below 128 channels: Winograd slower, so not used)",
    "2026-11-30-xeon-no-amx-emulated-cpu-bench-cifar10.json":
        "the current CPU table without AMX (emulated): the same command as the AMX run, right after it",
    "2026-12-07-epyc-zen4-cpu-bench-ddgan-cifar10.json":
        "pdgan-bench ddgan-cifar10 (DDGAN's CIFAR-10 generator, 4 NFE, random weights), 25 images, torch fp32 and "
        "native fp32 / bf16, quiet Zen 4",
    "2026-12-07-epyc-zen4-cpu-bench-ddgan-celebahq256.json":
        "pdgan-bench ddgan-celebahq256 (DDGAN's CelebA-HQ 256 generator, 2 NFE, random weights), 2 images, torch "
        "fp32 and native fp32 / bf16, quiet Zen 4",
    "2026-12-07-epyc-zen4-cpu-bench-cifar10.json":
        "the current CPU table on a CPU without AMX (AMD EPYC Zen 4): pdgan-bench cifar10, 100 images, pdgan and "
        "peer backends, fp32 and bf16 (native bf16: Winograd F(2x2, 3x3))",
    "2026-12-07-epyc-zen4-profile-cpu-native-bfloat16-cifar10-n100.txt":
        "where native bf16 spends its time on the Zen 4 with the bf16 Winograd kernel (profile_cpu.py, cifar10)",
    "2026-12-07-epyc-zen4-winograd-layers-cifar10-bfloat16.txt":
        "bf16 Winograd F(2x2, 3x3) against oneDNN's direct bf16 convolution per cifar10 3x3 layer, 25 images "
        "(the native backend's pass), 2 threads, Zen 4",
    "2026-12-07-epyc-zen4-winograd-layers-digits-bfloat16.txt":
        "the same per digits layer, 100 images (the 32-input-channel layers are slower: kept direct)",
    "2026-12-07-epyc-zen4-winograd-layers-ddgan-celebahq256-bfloat16.txt":
        "the same per DDGAN CelebA-HQ 256 layer, 1 image (the native backend's pass at 256x256)",
}

# The documents whose quotes the index lists (scripts and tests that name a file are not counted).
DOCS = ("README.md", "docs/*.md", "benchmarks/README.md")


def name_problem(name: str) -> str | None:
    """Why `name` breaks the scheme DATE-MACHINE-EXPERIMENT.EXT, or None if it follows it."""
    m = NAME.fullmatch(name)
    if not m:
        return (f"{name}: not DATE-MACHINE-EXPERIMENT.EXT (DATE YYYY-MM-DD, MACHINE one of "
                f"{', '.join(MACHINES)}, EXPERIMENT lowercase words joined by '-')")
    try:
        datetime.date.fromisoformat(m["date"])
    except ValueError:
        return f"{name}: {m['date']} is not a date"
    if m["ext"] not in EXTENSIONS:
        return f"{name}: extension .{m['ext']} is not one of {', '.join(EXTENSIONS)}"
    return None


def _commit(path: Path) -> str:
    """The commit a results file records (short), or '-'."""
    text = path.read_text(errors="replace") if path.suffix in (".json", ".txt", ".md") else ""
    if path.suffix == ".json":
        try:
            doc = json.loads(text)
        except ValueError:
            return "-"
        for part in (doc, doc.get("header", {}), doc.get("meta", {}), doc.get("machine_info", {}).get("pdgan", {})):
            value = (part.get("git_commit") or part.get("commit")) if isinstance(part, dict) else None
            if isinstance(value, str) and value:
                return value[:7] + ("-dirty" if value.endswith("-dirty") else "")
        return "-"
    m = re.search(r"commit ([0-9a-f]{7,40})", text[:2000])
    return m[1][:7] if m else "-"


def _quoted_by(root: Path) -> dict[str, list[str]]:
    docs = sorted({p for pattern in DOCS for p in root.glob(pattern)})
    texts = {p.relative_to(root).as_posix(): p.read_text() for p in docs}
    return {name: [doc for doc, text in texts.items() if name in text]
            for name in (p.name for p in (root / "benchmarks" / "results").iterdir())}


def problems(root: Path | None = None) -> list[str]:
    """Names that break the scheme, and files without a line in WHAT (or lines in WHAT without a file)."""
    root = root or ROOT
    names = sorted(p.name for p in (root / "benchmarks" / "results").iterdir() if p.name != INDEX)
    out = [p for p in map(name_problem, names) if p]
    out += [f"{n}: no line in WHAT (benchmarks/results_index.py): say what it shows" for n in names if n not in WHAT]
    out += [f"{n}: in WHAT but not in benchmarks/results/" for n in WHAT if n not in names]
    return out


def render(root: Path | None = None) -> str:
    root = root or ROOT
    results = root / "benchmarks" / "results"
    quoted = _quoted_by(root)
    lines = ["# benchmarks/results", "",
             "Written by `python benchmarks/results_index.py`; do not edit by hand (`--check` fails when it is "
             "stale). Names: DATE-MACHINE-EXPERIMENT.EXT. Older and superseded runs were deleted; git keeps them "
             "(the files as first written are at commit 485b2f5, under their earlier names), and "
             "[docs/benchmarks.md](../../docs/benchmarks.md) lists them by date. Commands recorded inside a "
             "file name it as it was written.", "",
             "Machines:", ""]
    lines += [f"- `{k}`: {v}" for k, v in MACHINES.items()]
    lines += ["", "| file | date | machine | experiment | commit | what it shows | quoted by |",
              "|---|---|---|---|---|---|---|"]
    for path in sorted(p for p in results.iterdir() if p.name != INDEX):
        m = NAME.fullmatch(path.name)
        date, machine, experiment = (m["date"], m["machine"], m["experiment"]) if m else ("?", "?", "?")
        docs = ", ".join(f"[{d}](../../{d})" for d in quoted.get(path.name, [])) or "-"
        lines.append(f"| [{path.name}]({path.name}) | {date} | {machine} | {experiment} | {_commit(path)} | "
                     f"{WHAT.get(path.name, '?')} | {docs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if INDEX.md is stale or a name breaks the scheme")
    args = ap.parse_args(argv)
    found = problems()
    index = RESULTS / INDEX
    text = render()
    if args.check:
        if not index.exists() or index.read_text() != text:
            found.append(f"{index.relative_to(ROOT)} is stale: run python benchmarks/results_index.py")
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    index.write_text(text)
    print(f"wrote {index.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
