"""`pdgan-train`: train a PDGAN model (examples: `pdgan-train --help`; the guide: docs/training.md)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from pdgan_infer._cli import ArgumentParser, add_common_arguments, examples, run_cli

from ..config import (
    ABLATIONS,
    PRESET_DEFAULTS,
    TrainConfig,
    TrainingError,
    read_run_config,
    resolve_train_config,
)

log = logging.getLogger("pdgan.train")
EXAMPLES = examples(
    "pdgan-train --preset digits --data digits --out runs/digits   # 2 CPU cores: about 75 min (2400 + 10k "
    "latent steps)",
    "pdgan-train --preset digits --data digits --no-feature-loss --out runs/digits --max-steps 1600   # the bundled "
    "model's command: 57 min",
    "pdgan-train --preset cifar10 --data ~/data/cifar-10-batches-py --out runs/c10 --vgg-weights vgg16.pth",
    "torchrun --nproc_per_node=8 -m pdgan_train --preset celebahq256 --data ~/data/celeba_hq_256 --out runs/chq",
    "pdgan-train --resume runs/c10 --max-steps 400000   # continue (and extend)",
    "pdgan-train --preset digits --data digits --ablation baseline --dry-run   # Table 1 rows: see --ablation")


def preset_default(key: str) -> str:
    """'default: the preset's (digits X, cifar10 Y, celebahq256 Z)', or 'default X' when every preset has X."""
    values = {name: PRESET_DEFAULTS[name].get(key, getattr(TrainConfig, key)) for name in PRESET_DEFAULTS}
    show = {name: ("on" if v else "off") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)
            for name, v in values.items()}
    if len(set(show.values())) == 1:
        return f"default {next(iter(show.values()))}"
    return "default: the preset's (" + ", ".join(f"{name} {v}" for name, v in show.items()) + ")"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-train", description="Train a PDGAN model: a preset's network and recipe (digits, "
                       "cifar10, celebahq256), single process or under torchrun; resumable. Options left out take "
                       "the preset's values (--dry-run prints them).", epilog=EXAMPLES)
    p.add_argument("--preset", help="model preset: cifar10, celebahq256 or digits")
    p.add_argument("--data", help="'digits', a CIFAR-10 batches directory, or an image folder")
    p.add_argument("--out", help="run directory (default runs/<preset>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped (it keeps "
                   "writing to DIR unless --out says otherwise)")
    p.add_argument("--overwrite", action="store_true", help="start a new run in an --out that already holds one "
                   "(its checkpoints, metrics and samples are deleted)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--device", default="auto", help="auto (cuda:$LOCAL_RANK when CUDA is present), cpu, cuda, "
                   "cuda:1 ...")
    p.add_argument("--ablation", choices=list(ABLATIONS),
                   help="paper Table 1 row: baseline (DDGAN), encoder, pixel, feature, full (default)")
    g = p.add_argument_group("optimisation (defaults: the preset's)")
    g.add_argument("--max-steps", type=int, help=f"optimisation steps of the GAN stage; {preset_default('max_steps')}")
    g.add_argument("--batch-size", type=int, help=f"images per process per step; {preset_default('batch_size')}")
    g.add_argument("--lr-g", type=float, help="Adam learning rate of the generator and the semantic encoder "
                   f"(cosine decay); {preset_default('lr_g')}")
    g.add_argument("--lr-d", type=float, help=f"Adam learning rate of the discriminator; {preset_default('lr_d')}")
    g.add_argument("--ema-decay", type=float, help="EMA decay of the generator and encoder weights (the exported "
                   f"model); {preset_default('ema_decay')}")
    g.add_argument("--r1-gamma", type=float, help=f"R1 penalty weight on real images; {preset_default('r1_gamma')}")
    g.add_argument("--lazy-reg", type=int, help=f"apply R1 every N steps; {preset_default('lazy_reg')}")
    g.add_argument("--amp", choices=["none", "bf16", "fp16"], help=f"autocast dtype; {preset_default('amp')}")
    g.add_argument("--seed", type=int, help=f"seed of everything random (each rank adds its own); "
                   f"{preset_default('seed')}")
    o = p.add_argument_group("objective (paper Eq. 9-11; defaults: the preset's, then --ablation's)")
    o.add_argument("--encoder", choices=["none", "all", "first"], help="where SE(x0) fills the latent slot "
                   f"(none: random z, DDGAN); {preset_default('encoder')}")
    o.add_argument("--pixel-loss", action=argparse.BooleanOptionalAction, default=None,
                   help=f"L1 between G(x_T, SE(x0), T) and x0 (Eq. 9); {preset_default('pixel_loss')}")
    o.add_argument("--feature-loss", action=argparse.BooleanOptionalAction, default=None,
                   help=f"VGG16-feature L1 (needs ImageNet VGG16 weights); {preset_default('feature_loss')}")
    o.add_argument("--perceptual-chain", action=argparse.BooleanOptionalAction, default=None,
                   help=f"L_per, Eq. 10; {preset_default('perceptual_chain')}")
    o.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None,
                   help=f"Eq. 11 P schedule (else t uniform); {preset_default('progressive')}")
    o.add_argument("--p-max", type=float, help=f"P(t=T) at the start (Eq. 11); {preset_default('p_max')}")
    o.add_argument("--p-min", type=float, help=f"P(t=T) at the end (Eq. 11); {preset_default('p_min')}")
    o.add_argument("--vgg-weights", help="VGG16 weights file (.pth or .safetensors; default: $PDGAN_VGG16_WEIGHTS, the "
                   "cache, or a download)")
    r = p.add_argument_group("running")
    r.add_argument("--latent-steps", type=int, help="latent-denoiser steps after the GAN stage (0: skip); "
                   f"{preset_default('latent_steps')}")
    r.add_argument("--log-every", type=int, help=f"a metrics line every N steps; {preset_default('log_every')}")
    r.add_argument("--sample-every", type=int, help=f"a sample grid every N steps; {preset_default('sample_every')}")
    r.add_argument("--ckpt-every", type=int, help=f"a checkpoint every N steps; {preset_default('ckpt_every')}")
    r.add_argument("--num-workers", type=int, help=f"DataLoader workers (image folders); "
                   f"{preset_default('num_workers')}")
    r.add_argument("--allow-upscale", action="store_true", default=None,
                   help="let image folders upscale images smaller than the resolution")
    r.add_argument("--check-images", action="store_true", default=None,
                   help="decode every image of an image folder before training (default: headers only)")
    add_common_arguments(p)
    return p


_OVERRIDES = ["max_steps", "batch_size", "lr_g", "lr_d", "ema_decay", "r1_gamma", "lazy_reg", "amp", "seed",
              "encoder", "pixel_loss", "feature_loss", "perceptual_chain", "progressive", "p_max", "p_min",
              "vgg_weights", "latent_steps", "log_every", "sample_every", "ckpt_every", "num_workers", "allow_upscale",
              "check_images"]


def resolve(args: argparse.Namespace) -> TrainConfig:
    overrides = {k: getattr(args, k) for k in _OVERRIDES}
    if args.resume:
        saved, recorded_out = read_run_config(args.resume)
        if args.preset and args.preset != saved.preset:
            raise TrainingError(f"cannot resume: {args.resume} is a {saved.preset!r} run, not {args.preset!r}")
        if not args.out and os.path.realpath(recorded_out) != os.path.realpath(args.resume):
            log.warning(f"{Path(args.resume) / 'config.json'} names the run directory {str(recorded_out)!r} "
                        f"(a copy, a move or another working directory); the run continues in {args.resume}")
        # The run lives where --resume points (a copy, a move, another working directory), never at
        # the out recorded in its config.json.
        cfg = saved.replace(out=args.out or args.resume, data=args.data or saved.data,
                            **{k: v for k, v in overrides.items() if v is not None})
        cfg.validate()
        return cfg
    if not args.preset or not args.data:
        raise ValueError("--preset and --data are required (or --resume DIR)")
    return resolve_train_config(args.preset, args.ablation, data=args.data,
                                out=args.out or f"runs/{args.preset}", **overrides)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("pdgan-train", args, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    cfg = resolve(args)
    if args.dry_run:
        from pdgan_infer.config import get_preset
        print(json.dumps({"train": cfg.to_dict(), "model": get_preset(cfg.preset).to_dict()}, indent=2))
        return 0
    from ..loop import STOP_SIGNALS, Trainer
    # Until training starts (imports, data, models), a scheduler's kill or a closed terminal stops like
    # Ctrl-C; Trainer.train then stops at the next step boundary and saves that step first. Signals
    # that are ignored (nohup) stay ignored.
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS if s != signal.SIGINT  # SIGINT raises already
                and threading.current_thread() is threading.main_thread()}  # (only it may set handlers)
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, _sigterm)
    try:
        trainer = Trainer(cfg, resume=args.resume, device=None if args.device == "auto" else args.device,
                          overwrite=args.overwrite, quiet=args.quiet)
        path = trainer.train()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    if trainer.main:
        print(f"done: {path} (load with pdgan_infer.Engine.from_pretrained({str(Path(path).parent)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
