"""pdgan-generate: the command line of `pdgan_infer.generate.generate_to_folder` (what it writes: that module's doc;
examples: `pdgan-generate --help`)."""
from __future__ import annotations

import argparse
import sys

from .._cli import (
    ArgumentParser,
    add_common_arguments,
    check_outputs,
    examples,
    model_files,
    positive_int,
    run_cli,
    seed_list,
)
from ..generate import FORMATS, generate_to_folder


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-generate", description="Write one image per seed into a folder "
                       "({seed:06d}.png, or images.npz): the input of pytorch-fid, clean-fid, "
                       "torch-fidelity and EDM's fid.py. Runs under torchrun too.", epilog=examples(
                           "pdgan-generate digits --seeds 0-63 --outdir samples",
                           "pdgan-generate digits --seeds 0-49999 --outdir samples --subdirs --batch 256"
                           "   # 50k for FID, EDM's layout",
                           "pdgan-generate digits --seeds 0-9999 --format npz --outdir samples   # samples/images.npz",
                           "pdgan-generate digits --seeds 0-63 --outdir samples --backend native --dtype bfloat16",
                           "torchrun --standalone --nproc_per_node=2 -m pdgan_infer.cli.generate digits "
                           "--seeds 0-49999 --outdir samples"))
    p.add_argument("model", help="a bundled model name (digits), a checkpoint file, a model folder "
                   "(save_pretrained / pdgan-train --out) or a Hugging Face Hub id org/repo")
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-63"), metavar="SPEC",
                   help="seeds, e.g. 0-49999 or 0-9,20,30-39 (ranges inclusive; default 0-63)")
    p.add_argument("--outdir", required=True, help="the folder to write into (created; images already there "
                   "from the same model, dtype and backend are kept: it records them in pdgan-generate.json)")
    p.add_argument("--overwrite", action="store_true", help="write into a folder made by another model, dtype, "
                   "backend or layout, or by another tool: first delete the files pdgan-generate names there "
                   "(NNNNNN.png, NNNNNN/NNNNNN.png, images.npz)")
    p.add_argument("--subdirs", action="store_true", help="one subfolder per 1000 seeds, as EDM: "
                   "000000/000000.png ... 001000/001000.png")
    p.add_argument("--format", choices=FORMATS, default="png", help="one PNG per seed, or one images.npz "
                   "(default %(default)s; npz: keys images and arr_0, the same array, and seeds)")
    p.add_argument("--batch-size", "--batch", type=positive_int, help="images per sampler call (--batch: EDM's "
                   "name; default: the Engine's for "
                   "the device; the images do not depend on it)")
    p.add_argument("--backend", default="auto", help="Engine backend: auto, torch, optimized, native, ... "
                   "(default %(default)s)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "auto"),
                   help="compute dtype (default float32; auto: bfloat16 where the device runs it natively)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N "
                   "(default %(default)s; under torchrun: cuda:$LOCAL_RANK)")
    p.add_argument("--revision", help="Hub models: branch, tag or commit")
    add_common_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("pdgan-generate", args, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    check_outputs({"--outdir": args.outdir}, model_files(args.model), folders={"--outdir"},
                  overwrite=None)  # which files in --outdir may be kept or replaced: the resume decides
    generate_to_folder(args.model, args.seeds, args.outdir, args.format, batch_size=args.batch_size,
                       backend=args.backend, dtype=args.dtype, device=args.device, revision=args.revision,
                       progress=not args.quiet, subdirs=args.subdirs, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
