"""`pdgan-eval`: the parser and main of the command; the library is pdgan_train.eval."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pdgan_infer._cli import (
    ArgumentParser,
    add_common_arguments,
    add_overwrite_argument,
    block_seed,
    check_outputs,
    examples,
    int_range,
    model_files,
    run_cli,
)
from pdgan_infer.checkpoint import atomic_write_bytes
from pdgan_infer.device import resolve_device

from .. import feature_nets
from ..data import data_inputs
from ..eval import FID_N, MAX_BATCH, MAX_INTERP, MAX_K, MAX_N, METRIC_GROUPS, EvalError, evaluate, parse_metrics
from ..image_sets import MAX_SIDE
from ..references import is_url

log = logging.getLogger("pdgan")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-eval", description="FID / IS / precision-recall, digits metrics, "
                       "linear probe and interpolation smoothness of a pdgan model; FID / IS / precision-recall "
                       "of any folder or .npz of images (--images); reference statistics of a data set "
                       "(--data D --save-ref X.npz). Runs under torchrun too.",
                       epilog=examples(
                           "pdgan-eval digits --data digits --n 10000   # a model: samples it, then every metric",
                           "pdgan-eval --images samples/ --data digits --metrics fid,is   # pdgan-generate's folder",
                           "pdgan-eval --images samples/ --fid-ref "
                           "https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/cifar10-32x32.npz   # EDM's reference",
                           "pdgan-eval --images a.npz --images2 b/ --metrics fid",
                           "pdgan-eval --data cifar-10-batches-py --save-ref cifar10.npz   # statistics, no model",
                           "torchrun --standalone --nproc_per_node=2 -m pdgan_train.cli.eval digits --data digits"))
    p.add_argument("checkpoint", metavar="MODEL", nargs="?", help="a bundled model name, a checkpoint file, a "
                   "model folder or a Hub id org/repo, sampled through the Engine (not with --images)")
    p.add_argument("--data", help="'digits', a CIFAR-10 batches directory or an image folder: the training set "
                   "(without it: fid against --fid-ref or --images2, is, and pr against --images2)")
    p.add_argument("--images", metavar="DIR|NPZ", help="score these images instead of a MODEL's: a folder (PNG, "
                   "JPEG, ...; recursively, sorted by path, not resized) or an .npz with 'images' or ADM's 'arr_0' "
                   "(N, H, W, C) uint8; metrics fid, is, pr")
    p.add_argument("--images2", metavar="DIR|NPZ", help="the reference set of fid and pr, instead of --data")
    p.add_argument("--n", type=int_range(1, MAX_N),
                   help=f"samples to generate (default {FID_N}, as published FIDs; fewer prints a warning), or with "
                   "--images the first N images (default: all)")
    p.add_argument("--metrics", default="auto", help=f"'auto', 'none' or a comma list of {','.join(METRIC_GROUPS)} "
                   "(default %(default)s: every group that applies and whose networks are present)")
    p.add_argument("--batch-size", type=int_range(1, MAX_BATCH), help="images per batch (default: the Engine's for "
                   "the device when sampling, else 64; the images do not depend on it)")
    p.add_argument("--backend", default="auto", help="Engine backend that samples: auto, torch, optimized, native, "
                   "... (default %(default)s)")
    p.add_argument("--resolution", type=int_range(1, MAX_SIDE), help="the resolution --data is read at without a "
                   "MODEL (default: --images' height, else 32 for digits and CIFAR-10, an image folder's first image)")
    p.add_argument("--seed", type=block_seed, default=0, help="image i uses the per-image seed SEED * 65536 + i, as "
                   "Engine.generate(n, seed) (default %(default)s: the images of pdgan-generate --seeds 0-(N-1))")
    p.add_argument("--n-real", type=int_range(2, MAX_N),
                   help="real images for the statistics (default: the whole dataset)")
    p.add_argument("--save-samples", metavar="DIR", help="write every sample as DIR/{per-image seed:06d}.png")
    p.add_argument("--fid-ref", metavar="NPZ|URL", help="FID against these statistics (mu, sigma; EDM's fid.py ref or "
                   "pytorch-fid --save-stats files) instead of --data's; a URL (http, https, file) is downloaded "
                   "once into the cache, checked when given as URL#sha256=<64 hex digits>")
    p.add_argument("--save-ref", metavar="NPZ", help="write --data's Inception statistics (mu, sigma, and n, "
                   "detector_sha256, data) to NPZ; needs no MODEL")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ... "
                   "(default %(default)s)")
    n = p.add_argument_group("feature networks")
    n.add_argument("--inception", metavar="PATH", help=f"inception-2015-12-05.pt (or ${feature_nets.INCEPTION.env})")
    n.add_argument("--vgg16", metavar="PATH", help=f"StyleGAN2-ADA vgg16.pt (or ${feature_nets.VGG16.env})")
    n.add_argument("--download-nets", action="store_true", help="download missing networks into the cache")
    n.add_argument("--no-verify-nets", action="store_true", help="accept network files with another sha256")
    n.add_argument("--no-cache", action="store_true", help="neither read nor write cached dataset statistics")
    m = p.add_argument_group("metric settings")
    m.add_argument("--k", type=int_range(1, MAX_K), default=3,
                   help="precision/recall neighbourhood (default %(default)s)")
    m.add_argument("--probe-max", type=int_range(10, MAX_N), default=5000,
                   help="labelled images probed (default %(default)s)")
    m.add_argument("--interp-pairs", type=int_range(1, MAX_INTERP), default=16,
                   help="interpolation pairs K (default %(default)s)")
    m.add_argument("--interp-steps", type=int_range(3, MAX_INTERP), default=10,
                   help="frames per pair M, >= 3 (default %(default)s)")
    add_overwrite_argument(p)
    add_common_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        parse_metrics(args.metrics, args.data == "digits")
    except EvalError as err:
        p.error(str(err))
    return run_cli("pdgan-eval", args, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)  # the device and every output are checked before the evaluation
    fid_ref = None if is_url(args.fid_ref) else args.fid_ref
    check_outputs({"--json": args.json, "--save-ref": args.save_ref, "--save-samples": args.save_samples},
                  [*model_files(args.checkpoint), *data_inputs(args.data), fid_ref, args.images, args.images2,
                   args.inception, args.vgg16], folders={"--save-samples"}, overwrite=args.overwrite)
    result = evaluate(args.checkpoint, args.data, args.n, args.metrics, images=args.images, images2=args.images2,
                      backend=args.backend, resolution=args.resolution, batch_size=args.batch_size,
                      seed=args.seed, n_real=args.n_real, save_samples=args.save_samples, device=device,
                      inception=args.inception, vgg16=args.vgg16, download=args.download_nets,
                      verify_nets=not args.no_verify_nets, use_cache=not args.no_cache, k=args.k,
                      probe_max=args.probe_max, interp_pairs=args.interp_pairs,
                      interp_steps=args.interp_steps, progress=not args.quiet, fid_ref=args.fid_ref,
                      save_ref=args.save_ref)
    if result is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    for name, value in result.items():
        if name not in ("meta", "skipped", "probe") and value is not None:
            print(f"{name:20s} {value:.4f}" if isinstance(value, float) else f"{name:20s} {value}")
    for group, reason in result["skipped"].items():
        log.warning(f"skipped {group}: {reason}")
    if args.json:
        atomic_write_bytes(Path(args.json), (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
