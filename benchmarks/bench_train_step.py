"""Training steps per second on the CPU, providers side by side in one process (issue 11, item 4).

    python benchmarks/bench_train_step.py [--preset digits] [--batch-size 32] [--steps 8] [--threads 2]
                                          [--json benchmarks/results/DATE-MACHINE-train-step.json]

Each provider builds a `pdgan_train.loop.Trainer` on the digits data with the same seed and times
`d_step + g_step + EMA` (two warm-up steps excluded) at the same point of the P schedule:

    before            NCHW batches, the L_per chain run on the whole batch (the loop as it was)
    chain-subset      + the chain only on the samples with t < T (today's `losses.chain_targets`)
    channels-last     + channels-last batches (today's default, `TrainConfig.channels_last`)
    foreach-adam      channels-last + Adam with `foreach=True` (one multi-tensor update)
    fused-adam        channels-last + Adam with `fused=True` (the fused CPU kernel)
    bf16              channels-last + bf16 autocast (`--amp bf16`; fast where the CPU has AMX or avx512_bf16)

"before" swaps in the whole-batch chain kept below as `chain_targets_full_batch` (the old code).
Numbers vary with the CPU: the JSON records its model name, torch version and thread count.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pdgan_infer.bench import device_name
from pdgan_train import losses as L
from pdgan_train.config import resolve_train_config
from pdgan_train.loop import Trainer


@torch.no_grad()
def chain_targets_full_batch(generator, schedule, x0, t, z_T, z_rand, x_T_noise, eps):
    """The L_per targets as the loop computed them before: the chain on every sample of the batch."""
    T, n = schedule.T, x0.shape[0]
    out, need = torch.zeros_like(x0), t < T
    if not bool(need.any()):
        return out
    x = schedule.q_sample(x0, torch.full((n,), T, device=x0.device), x_T_noise)
    x0_hat = generator(x, z_T, torch.full((n,), float(T), device=x0.device))
    for s in range(T - 1, 0, -1):
        done = need & (t == s)
        out[done] = x0_hat[done]
        need = need & ~done
        if not bool(need.any()):
            break
        x = schedule.step(x0_hat, x, s + 1, eps[s - 1])
        x0_hat = generator(x, z_rand[s - 1], torch.full((n,), float(s), device=x0.device))
    return out


PROVIDERS = {
    "before": dict(channels_last=False, amp="none", chain=chain_targets_full_batch),
    "chain-subset": dict(channels_last=False, amp="none", chain=L.chain_targets),
    "channels-last": dict(channels_last=True, amp="none", chain=L.chain_targets),
    "foreach-adam": dict(channels_last=True, amp="none", chain=L.chain_targets, adam={"foreach": True}),
    "fused-adam": dict(channels_last=True, amp="none", chain=L.chain_targets, adam={"fused": True}),
    "bf16": dict(channels_last=True, amp="bf16", chain=L.chain_targets),
}


def _swap_adam(tr: Trainer, options: dict) -> None:
    """Rebuild the trainer's two Adams with the same groups and hyper-parameters plus `options`."""
    for name in ("opt_g", "opt_d"):
        old = getattr(tr, name)
        params = [p for g in old.param_groups for p in g["params"]]
        g = old.param_groups[0]
        setattr(tr, name, torch.optim.Adam(params, lr=g["lr"], betas=g["betas"], **options))


def time_provider(name: str, preset: str, batch_size: int, steps: int, at_step: int) -> dict:
    p = PROVIDERS[name]
    cfg = resolve_train_config(preset, data="digits", out=f"/tmp/pdgan-bench-train-{name}", batch_size=batch_size,
                               channels_last=p["channels_last"], amp=p["amp"], feature_loss=False)
    tr = Trainer(cfg, device="cpu")
    if p.get("adam"):
        _swap_adam(tr, p["adam"])
    x0 = next(tr._batches())[0]
    if p["channels_last"]:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    original, L.chain_targets = L.chain_targets, p["chain"]
    try:
        times = []
        for i in range(steps + 2):
            tr.step = at_step + i
            t0 = time.perf_counter()
            tr.d_step(x0)
            tr.g_step(x0)
            tr._update_ema()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    finally:
        L.chain_targets = original
    med = statistics.median(times)
    return {"provider": name, "median_s_per_step": med, "min_s": min(times), "max_s": max(times),
            "steps_per_s": 1 / med, "images_per_s": batch_size / med}


def profile_provider(name: str, preset: str, batch_size: int, steps: int, at_step: int, top: int = 25) -> str:
    """torch.profiler's table of the provider's ops (self CPU time), with shapes grouped."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        time_provider(name, preset, batch_size, steps, at_step)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per provider (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--providers", default=",".join(PROVIDERS))
    ap.add_argument("--at-step", type=int, default=1200,
                    help="the P schedule's step to time at (P(t=T) sets how many samples need the chain)")
    ap.add_argument("--json", help="write the rows, CPU and versions here")
    ap.add_argument("--profile", metavar="PROVIDER",
                    help="instead of timing, profile PROVIDER's steps with torch.profiler and print the op table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile:
        print(profile_provider(args.profile, args.preset, args.batch_size, args.steps, args.at_step))
        return 0
    rows = [time_provider(n, args.preset, args.batch_size, args.steps, args.at_step) for n in args.providers.split(",")]
    base = rows[0]["median_s_per_step"]
    print(f"{'provider':<15}{'s/step':>9}{'img/s':>8}{'speedup':>9}")
    for r in rows:
        r["speedup"] = base / r["median_s_per_step"]
        print(f"{r['provider']:<15}{r['median_s_per_step']:>9.3f}{r['images_per_s']:>8.1f}{r['speedup']:>8.2f}x")
    if args.json:
        cpu = device_name(torch.device("cpu"))
        meta = {"cpu": cpu, "torch": torch.__version__, "threads": args.threads, "preset": args.preset,
                "batch_size": args.batch_size, "at_step": args.at_step, "date": time.strftime("%Y-%m-%d")}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
