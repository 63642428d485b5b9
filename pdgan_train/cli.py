"""`pdgan-train`: train a PDGAN model. Examples:

    pdgan-train --preset digits --data digits --out runs/digits            # CPU, minutes
    pdgan-train --preset cifar10 --data ~/data/cifar-10-batches-py --out runs/c10 --vgg-weights vgg16.pth
    torchrun --nproc_per_node=8 -m pdgan_train --preset celebahq256 --data ~/celeba_hq --out runs/chq
    pdgan-train --resume runs/c10 --max-steps 400000                        # continue (and extend)
    pdgan-train --preset digits --data digits --ablation baseline --dry-run # Table 1 rows: see --ablation
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from pdgan_infer._cli import add_common_arguments, run_cli

from .config import ABLATIONS, TrainConfig, resolve_train_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pdgan-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="model preset: cifar10, celebahq256 or digits")
    p.add_argument("--data", help="'digits', a CIFAR-10 batches directory, or an image folder")
    p.add_argument("--out", help="run directory (default runs/<preset>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--device", default="auto", help="auto (cuda:$LOCAL_RANK when CUDA is present), cpu, cuda, "
                   "cuda:1 ... (default %(default)s)")
    p.add_argument("--ablation", choices=list(ABLATIONS),
                   help="paper Table 1 row: baseline (DDGAN), encoder, pixel, feature, full (default)")
    g = p.add_argument_group("optimisation (defaults: the preset's)")
    g.add_argument("--max-steps", type=int)
    g.add_argument("--batch-size", type=int, help="images per process per step")
    g.add_argument("--lr-g", type=float)
    g.add_argument("--lr-d", type=float)
    g.add_argument("--ema-decay", type=float)
    g.add_argument("--r1-gamma", type=float)
    g.add_argument("--lazy-reg", type=int)
    g.add_argument("--amp", choices=["none", "bf16", "fp16"])
    g.add_argument("--seed", type=int)
    o = p.add_argument_group("objective (paper Eq. 9-11)")
    o.add_argument("--encoder", choices=["none", "all", "first"], help="where SE(x0) fills the latent slot")
    o.add_argument("--pixel-loss", action=argparse.BooleanOptionalAction, default=None)
    o.add_argument("--feature-loss", action=argparse.BooleanOptionalAction, default=None,
                   help="VGG16-feature L1 (needs ImageNet VGG16 weights)")
    o.add_argument("--perceptual-chain", action=argparse.BooleanOptionalAction, default=None, help="L_per, Eq. 10")
    o.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None, help="Eq. 11 P schedule")
    o.add_argument("--p-max", type=float)
    o.add_argument("--p-min", type=float)
    o.add_argument("--vgg-weights", help="VGG16 weights file (.pth or .safetensors)")
    r = p.add_argument_group("running")
    r.add_argument("--latent-steps", type=int, help="latent-denoiser steps after the GAN stage (0: skip)")
    r.add_argument("--log-every", type=int)
    r.add_argument("--sample-every", type=int)
    r.add_argument("--ckpt-every", type=int)
    r.add_argument("--num-workers", type=int)
    r.add_argument("--allow-upscale", action="store_true", default=None)
    add_common_arguments(p)
    return p


_OVERRIDES = ["max_steps", "batch_size", "lr_g", "lr_d", "ema_decay", "r1_gamma", "lazy_reg", "amp", "seed",
              "encoder", "pixel_loss", "feature_loss", "perceptual_chain", "progressive", "p_max", "p_min",
              "vgg_weights", "latent_steps", "log_every", "sample_every", "ckpt_every", "num_workers", "allow_upscale"]


def resolve(args: argparse.Namespace) -> TrainConfig:
    overrides = {k: getattr(args, k) for k in _OVERRIDES}
    if args.resume:
        cfg_file = Path(args.resume) / "config.json"
        try:
            saved = TrainConfig.from_dict(json.loads(cfg_file.read_text())["train"])
        except FileNotFoundError:
            raise ValueError(f"cannot resume: {cfg_file} not found (expected a run directory of pdgan-train)") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"cannot resume: {cfg_file} is corrupt ({e})") from None
        if args.preset and args.preset != saved.preset:
            raise ValueError(f"cannot resume: {args.resume} is a {saved.preset!r} run, not {args.preset!r}")
        cfg = saved.replace(out=args.out or saved.out, **{k: v for k, v in overrides.items() if v is not None})
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
    from .loop import Trainer
    signal.signal(signal.SIGTERM, _sigterm)  # a scheduler's kill saves the state like Ctrl-C
    trainer = Trainer(cfg, resume=args.resume, device=None if args.device == "auto" else args.device)
    path = trainer.train()
    if trainer.main:
        print(f"done: {path} (load with pdgan_infer.Engine.from_pretrained({str(Path(path).parent)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
