"""pdgan-convert: another project's released weights -> a pdgan model folder.

`ddgan`: Denoising Diffusion GAN's generator (NVlabs/denoising-diffusion-gan, netG_EPOCH.pth, keys with or
without DDP's `module.`), mapped tensor by tensor onto pdgan's generator (`pdgan_infer.convert`). The folder
(config.json, model.safetensors, README.md naming DDGAN's non-commercial licence and the source) loads with
`Engine.from_pretrained(DIR)` and every pdgan tool. The file is read with torch.load(weights_only=True).
"""
from __future__ import annotations

import argparse
import logging

from .._cli import ArgumentParser, add_common_arguments, check_outputs, examples, run_cli
from ..config import DDGAN_PRESETS
from ..convert import DDGAN_CHECKPOINTS, convert_ddgan

log = logging.getLogger("pdgan")
EXAMPLES = examples(
    "pdgan-convert ddgan netG_1200.pth --config cifar10 --out ddgan-cifar10   # DDGAN's CIFAR-10 (T = 4)",
    "pdgan-convert ddgan netG_550.pth --config celebahq256 --out ddgan-celebahq256   # DDGAN's CelebA-HQ 256 (T = 2)",
    "pdgan-convert -q ddgan netG_1200.pth --config cifar10 --out ddgan-cifar10   # then: pdgan-generate "
    "ddgan-cifar10 --seeds 0-49999 --outdir samples")


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-convert", description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split(
        "\n\n")[1], epilog=EXAMPLES)
    add_common_arguments(p)
    sub = p.add_subparsers(dest="source", required=True, metavar="SOURCE", parser_class=ArgumentParser)
    d = sub.add_parser("ddgan", help="Denoising Diffusion GAN's generator (netG_EPOCH.pth)",
                       description="Convert DDGAN's netG_EPOCH.pth into a pdgan model folder. DDGAN's released "
                                   "checkpoints (CIFAR-10 netG_1200.pth, CelebA-HQ 256 netG_550.pth): "
                                   f"{DDGAN_CHECKPOINTS}", epilog=EXAMPLES)
    d.add_argument("weights", metavar="NETG.pth", help="DDGAN's generator state dict (netG_EPOCH.pth)")
    d.add_argument("--config", required=True, choices=sorted(DDGAN_PRESETS),
                   help="the DDGAN training config of the weights (its README: cifar10 T=4, celebahq256 T=2, "
                        "lsun256 T=4)")
    d.add_argument("--out", required=True, help="the model folder to write")
    add_common_arguments(d, subcommand=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_cli("pdgan-convert", args, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    check_outputs({"--out": args.out}, [args.weights], folders=["--out"])
    folder = convert_ddgan(args.weights, args.config, args.out)
    log.info(f"converted DDGAN {args.config} {args.weights} -> {folder} (load it with Engine.from_pretrained or "
             "pdgan-generate; DDGAN's licence is non-commercial, see its README.md)")
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
