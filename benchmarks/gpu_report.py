"""The summary of a gpu-check run (benchmarks/gpu_check.py): the goals (target, measured, met), check
counts, engine / profile / pytest tables, as a dict (gpu-check.json), markdown (gpu-check.md) and one screen
of text (stdout)."""
from __future__ import annotations

from pathlib import Path

# (key, what, target, "<=" or ">="): the goals of the issue
GOALS = [
    ("cifar10_ms", "cifar10, 100 images, 2 NFE + latent sampler + noise, bfloat16 (GPU ms)", 8.0, "<="),
    ("celebahq256_ms", "celebahq256, 100 images, 2 NFE + latent sampler + noise (GPU ms)", 60.0, "<="),
    ("adagn_fraction_hbm", "fused AdaGN on tensors larger than L2 (fraction of HBM bandwidth)", 0.70, ">="),
    ("crosscheck_uint8", "same seed, CPU vs GPU image, float32 (max uint8 levels)", 1, "<="),
]
ENGINE_KEYS = ("preset", "backend", "dtype", "ok", "ms", "runner_ms", "runner_ms_p10", "runner_ms_p90", "latent_ms",
               "noise_ms", "generate_ms", "mean_err", "max_pixel_diff", "peak_mb", "tf32", "graph_fallback", "error")


def _records(results: list[dict], step: str) -> list[dict]:
    for r in results:
        if r["name"] == step:
            return [c for c in (r.get("records") or []) if isinstance(c, dict)]
    return []


def best_engine_row(rows: list[dict], preset: str, dtype: str | None = None) -> dict | None:
    """The fastest engine row of a preset (and dtype) among rows whose images passed (ok True)."""
    timed = [r for r in rows if r.get("kind") == "engine" and r.get("preset") == preset and r.get("ok") is True
             and isinstance(r.get("ms"), (int, float)) and (dtype is None or r.get("dtype") == dtype)]
    return min(timed, key=lambda r: r["ms"]) if timed else None


def best_adagn_row(rows: list[dict]) -> dict | None:
    """The highest fraction of HBM among correct (ok True) AdaGN rows of the plans the engine runs (native,
    triton; not the forced split / g_block=1 variants) whose x is larger than L2."""
    big = [r for r in rows if r.get("kind") == "adagn" and r.get("ok") is True and r.get("impl") in ("native", "triton")
           and r.get("larger_than_l2") and isinstance(r.get("fraction_hbm"), (int, float))
           and r["fraction_hbm"] == r["fraction_hbm"]]  # not NaN
    return max(big, key=lambda r: r["fraction_hbm"]) if big else None


def _goal(key: str, measured, detail: str) -> dict:
    what, target, op = next((w, t, o) for k, w, t, o in GOALS if k == key)
    met = None if measured is None else (measured <= target if op == "<=" else measured >= target)
    return {"goal": key, "what": what, "target": target, "op": op, "measured": measured, "met": met,
            "detail": detail}


def summarize(results: list[dict]) -> dict:
    engine = _records(results, "engine")
    goals = []
    best = best_engine_row(engine, "cifar10", "bfloat16")
    goals.append(_goal("cifar10_ms", best and best["ms"], best and f"{best['backend']} {best['dtype']}"))
    best = best_engine_row(engine, "celebahq256")
    goals.append(_goal("celebahq256_ms", best and best["ms"], best and f"{best['backend']} {best['dtype']}"))
    best = best_adagn_row(_records(results, "kernels"))
    goals.append(_goal("adagn_fraction_hbm", best and best["fraction_hbm"], best and (
        f"{best['impl']} {best['path']} {best['dtype']} {best['layout']} {best['shape']}, {best['passes']} passes")))
    cross = [c for c in _records(results, "crosscheck") if isinstance(c.get("max_uint8_diff"), int)]
    worst = max(cross, key=lambda c: c["max_uint8_diff"]) if cross else None
    goals.append(_goal("crosscheck_uint8", worst and worst["max_uint8_diff"],
                       worst and f"worst of {len(cross)}: {worst['backend']} on {worst.get('device')}"))
    checks = [c for r in results for c in (r.get("records") or []) if isinstance(c, dict) and "ok" in c]
    out = {"goals": goals, "steps": {r["name"]: r["status"] for r in results},
           "checks_passed": sum(c["ok"] is True for c in checks),
           "checks_failed": [c.get("check") for c in checks if c["ok"] is False],
           "checks_skipped": [f"{c.get('check')}: {c.get('skipped', '')}"[:200] for c in checks if c["ok"] is None],
           "engine": [{k: r.get(k) for k in ENGINE_KEYS if k in r} for r in engine if r.get("kind") == "engine"]}
    rerun = [r for r in engine if r.get("kind") == "engine_rerun" and "drift" in r]
    if rerun:
        out["engine_drift"] = {k: rerun[0].get(k) for k in ("preset", "first_runner_ms", "runner_ms", "drift")}
    out["profile"] = [{"check": r["check"], "total_us": r["total_us"],
                       "shares": {k: round(v["share"], 3) for k, v in r["classes"].items()}}
                      for r in _records(results, "profile") if "classes" in r]
    totals = [r for r in _records(results, "pytest") if r.get("kind") == "pytest_totals"]
    if totals:
        out["pytest"] = {k: v for k, v in totals[0].items() if k not in ("check", "kind")}
    ips = [r["images_per_s"] for r in _records(results, "train") if "images_per_s" in r][1:]  # [0]: warm-up
    if ips:
        out["train_images_per_s"] = sorted(ips)[len(ips) // 2]
    return out


def _g(v) -> str:
    return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def _measured(g: dict) -> str:
    return "not measured" if g["measured"] is None else f"{_g(g['measured'])} ({g['detail']})"


def markdown(header: dict, results: list[dict], summary: dict) -> str:
    lines = [f"# gpu-check {header.get('date')}", "",
             f"GPU: {header.get('gpu')}; commit {header.get('commit')} ({header.get('commit_source')}); "
             f"total {header.get('seconds')} s of a {header.get('budget_s')} s budget"
             + (f"; **cut: {header['cut']}**" if header.get("cut") else "")
             + (f"; {header['skip_ext']}" if header.get("skip_ext") else ""), "",
             "| step | status | exit | s | limit s | what |", "|---|---|--:|--:|--:|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['status']} | {r['rc']} | {r['seconds']} | {r.get('limit_s', '-')} | "
                     f"{r['what']} |")
    lines += ["", "## Goals", "", "| goal | target | measured | met |", "|---|--:|---|---|"]
    for g in summary["goals"]:
        lines.append(f"| {g['what']} | {g['op']} {g['target']} | {_measured(g)} | {_g(g['met'])} |")
    if summary.get("engine_drift"):
        d = summary["engine_drift"]
        lines.append(f"\nDrift: {d['preset']} torch float32 runner {_g(d['first_runner_ms'])} ms first, "
                     f"{_g(d['runner_ms'])} ms at the end ({100 * d['drift']:+.1f}%).")
    if "train_images_per_s" in summary:
        lines.append(f"\ncifar10 training, batch 64 bf16: {summary['train_images_per_s']:.0f} images/s.")
    if "pytest" in summary:
        lines.append(f"\npytest: {summary['pytest']}")
    lines += ["", f"Checks passed: {summary['checks_passed']}; failed: {summary['checks_failed'] or 'none'}; "
              f"skipped: {len(summary['checks_skipped'])}", ""]
    lines += [f"* skipped: {s}" for s in summary["checks_skipped"]] + [""]
    if summary["engine"]:
        lines += ["## Engine rows (TF32 as stated)", "", "| preset | backend | dtype | ok | ms | runner p10/p50/p90 | "
                  "latent | noise | generate | mean err | max px | peak MB | tf32 |",
                  "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
        for e in summary["engine"]:
            lines.append(f"| {e.get('preset')} | {e.get('backend')} | {e.get('dtype')} | {e.get('ok')} | "
                         f"{_g(e.get('ms'))} | {_g(e.get('runner_ms_p10'))}/{_g(e.get('runner_ms'))}/"
                         f"{_g(e.get('runner_ms_p90'))} | {_g(e.get('latent_ms'))} | {_g(e.get('noise_ms'))} | "
                         f"{_g(e.get('generate_ms'))} | {_g(e.get('mean_err'))} | {_g(e.get('max_pixel_diff'))} | "
                         f"{_g(e.get('peak_mb'))} | {_g(e.get('tf32'))} |")
        lines.append("")
    for p in summary["profile"]:
        lines += [f"Profile {p['check']}: {p['total_us'] / 1e3:.2f} ms; " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in p["shares"].items()), ""]
    for r in results:
        recs = [c for c in (r.get("records") or []) if isinstance(c, dict) and "check" in c
                and r["name"] not in ("engine",)]
        if recs:
            lines += [f"## {r['name']}", "", "| check | ok | err | tol | time (p10/p50/p90) | vs torch | HBM | note |",
                      "|---|---|--:|--:|--:|--:|--:|---|"]
            for c in recs:
                lines.append(f"| {c['check']} | {_g(c.get('ok'))} | {_g(c.get('err', c.get('mean_err')))} | "
                             f"{_g(c.get('tol'))} | {_time(c)} | {_g(c.get('speedup_vs_torch'))} | "
                             f"{_g(c.get('fraction_hbm'))} | {str(c.get('error') or c.get('skipped') or '')[:120]} |")
            lines.append("")
    for r in results:
        if r["status"] not in ("ok", "not run") and r.get("tail"):
            lines += [f"## {r['name']}: {r['status']}", "", "```", r["tail"][-2500:], "```", ""]
    return "\n".join(lines)


def _time(c: dict) -> str:
    for key, unit in (("us", "us"), ("ms", "ms"), ("runner_ms", "ms")):
        if isinstance(c.get(key), (int, float)):
            return f"{_g(c.get(key + '_p10'))}/{_g(c[key])}/{_g(c.get(key + '_p90'))} {unit}"
    return "-"


def print_summary(header: dict, summary: dict, json_path: Path, md_path: Path) -> None:
    """One screen: the steps, the goals, the check counts, the first failures, where the files are."""
    p = print
    p("gpu-check: " + (f"CUT by {header['cut']}" if header.get("cut") else f"{header.get('seconds')} s")
      + f"; commit {header.get('commit')}; {header.get('gpu')}")
    p("  steps: " + ", ".join(f"{k} {v}" for k, v in summary["steps"].items()))
    for g in summary["goals"]:
        met = {True: "MET", False: "NOT MET", None: "-"}[g["met"]]
        p(f"  goal {g['what']}: {g['op']} {g['target']}; measured {_measured(g)}: {met}")
    if summary.get("engine_drift"):
        p(f"  drift of the torch float32 runner over the engine step: {100 * summary['engine_drift']['drift']:+.1f}%")
    if "pytest" in summary:
        p(f"  pytest: {summary['pytest']}")
    failed = summary["checks_failed"]
    p(f"  checks: {summary['checks_passed']} passed, {len(failed)} failed, {len(summary['checks_skipped'])} skipped")
    for name in failed[:10]:
        p(f"    FAIL {name}")
    if len(failed) > 10:
        p(f"    ... and {len(failed) - 10} more (see the JSON)")
    p(f"gpu-check: wrote {json_path} and {md_path}", flush=True)
