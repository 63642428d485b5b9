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
    int_range,
    model_files,
    run_cli,
)
from pdgan_infer.checkpoint import atomic_write_bytes
from pdgan_infer.device import resolve_device

from .. import feature_nets
from ..data import data_inputs
from ..eval import FID_N, MAX_BATCH, MAX_INTERP, MAX_K, MAX_N, METRIC_GROUPS, EvalError, evaluate, parse_metrics

log = logging.getLogger("pdgan")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-eval", description="FID / IS / precision-recall, digits metrics, "
                       "linear probe and interpolation smoothness of a pdgan model.")
    p.add_argument("checkpoint", metavar="MODEL", help="a bundled model name, a checkpoint file, a model folder or "
                   "a Hub id org/repo")
    p.add_argument("--data", help="'digits', a CIFAR-10 batches directory or an image folder (the training set; "
                   "only --fid-ref with --metrics fid,is runs without it)")
    p.add_argument("--n", type=int_range(1, MAX_N), default=FID_N,
                   help="samples to generate (default %(default)s, as published FIDs; fewer prints a warning)")
    p.add_argument("--metrics", default="auto", help=f"'auto', 'none' or a comma list of {','.join(METRIC_GROUPS)} "
                   "(default %(default)s: every group that applies and whose networks are present)")
    p.add_argument("--batch-size", type=int_range(1, MAX_BATCH), default=64,
                   help="images per batch (default %(default)s)")
    p.add_argument("--seed", type=block_seed, default=0, help="image i uses the per-image seed SEED * 65536 + i, as "
                   "Engine.generate(n, seed) (default %(default)s: the images of pdgan-generate --seeds 0-(N-1))")
    p.add_argument("--n-real", type=int_range(2, MAX_N),
                   help="real images for the statistics (default: the whole dataset)")
    p.add_argument("--save-samples", metavar="DIR", help="write every sample as DIR/{per-image seed:06d}.png")
    p.add_argument("--fid-ref", metavar="NPZ", help="FID against these statistics (mu, sigma; EDM's fid.py ref or "
                   "pytorch-fid --save-stats files) instead of --data's")
    p.add_argument("--save-ref", metavar="NPZ", help="write --data's Inception statistics (mu, sigma) to NPZ")
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
    check_outputs({"--json": args.json, "--save-ref": args.save_ref, "--save-samples": args.save_samples},
                  [*model_files(args.checkpoint), *data_inputs(args.data), args.fid_ref, args.inception, args.vgg16],
                  folders={"--save-samples"}, overwrite=args.overwrite)
    result = evaluate(args.checkpoint, args.data, args.n, args.metrics, batch_size=args.batch_size,
                      seed=args.seed, n_real=args.n_real, save_samples=args.save_samples, device=device,
                      inception=args.inception, vgg16=args.vgg16, download=args.download_nets,
                      verify_nets=not args.no_verify_nets, use_cache=not args.no_cache, k=args.k,
                      probe_max=args.probe_max, interp_pairs=args.interp_pairs,
                      interp_steps=args.interp_steps, progress=not args.quiet, fid_ref=args.fid_ref,
                      save_ref=args.save_ref)
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
