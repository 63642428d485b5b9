"""`pdgan-edit`: the parser and main of the command; the library is pdgan_train.edit."""
from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence

import numpy as np
import torch

from pdgan_infer import load_checkpoint
from pdgan_infer._cli import (
    ArgumentParser,
    add_common_arguments,
    add_overwrite_argument,
    block_seed,
    check_outputs,
    examples,
    float_range,
    int_range,
    model_files,
    run_cli,
)
from pdgan_infer.device import resolve_device
from pdgan_infer.hub import resolve_model
from pdgan_infer.images import save_grid
from pdgan_infer.progress import track
from pdgan_infer.sampler import to_uint8
from pdgan_infer.seeds import MAX_BLOCK_SEED

from ..data import data_inputs
from ..edit import (
    BATCH,
    MAX_GRID,
    MAX_STRENGTH,
    VARY,
    EditError,
    encode,
    fit_direction,
    interpolate_latent,
    interpolate_pixel,
    manipulate,
    read_labels_csv,
    reconstruct,
    vary,
)

log = logging.getLogger("pdgan")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    if len(values) > MAX_GRID:
        raise argparse.ArgumentTypeError(f"at most {MAX_GRID} values, got {len(values)}")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and abs(v) <= MAX_STRENGTH for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers in [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}], "
                                         f"got {text!r}")
    if len(values) > MAX_GRID:
        raise argparse.ArgumentTypeError(f"at most {MAX_GRID} values, got {len(values)}")
    return values


def count(lo: int):
    """argparse type: images per row / rows / frames, in [lo, MAX_GRID]."""
    return int_range(lo, MAX_GRID)


# Each subcommand's --help shows its own; pdgan-edit --help shows them all.
EXAMPLES = {
    "reconstruct": ["pdgan-edit digits reconstruct --data digits --n 8 --out recon.png"],
    "interpolate": ["pdgan-edit digits interpolate --data digits --pair 0 1 --pair 2 3 --out interp.png   # latent",
                    "pdgan-edit digits interpolate --space pixel --pair 0 1 --steps 10 --out slerp.png"],
    "vary": ["pdgan-edit digits vary --which z_T --out vary.png   # paper Fig. 5",
             "pdgan-edit -q digits vary --which x_T --rows 2 --seed 7 --out vary_xT.png"],
    "attribute": ["pdgan-edit digits attribute --data digits --target 3 --index 0,1 --out attr.png",
                  "pdgan-edit digits attribute --data digits --target 3 --strengths -3,0,3 --out attr.png"],
}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-edit", description="Reconstruct, interpolate, vary one input or move along an "
                       "attribute direction with a pdgan checkpoint; writes one PNG grid and prints its path.",
                       epilog=examples(*(e for command in EXAMPLES.values() for e in command)))
    p.add_argument("checkpoint", metavar="MODEL", help="a bundled model name, a checkpoint file "
                   "(NAME.safetensors with NAME.json beside it), a model folder or a Hub id org/repo")
    add_common_arguments(p)
    common = ArgumentParser(add_help=False)
    add_common_arguments(common, subcommand=True)
    common.add_argument("--out", required=True, metavar="PATH", help="the PNG grid to write")
    add_overwrite_argument(common)
    common.add_argument("--seed", type=block_seed, default=0, help="noise seed s: the noises of Engine.generate(n, "
                        "seed=s), per-image seeds s * 65536 + i (default %(default)s)")
    common.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ... "
                        "(default %(default)s)")
    data_help = "'digits', a CIFAR-10 batches directory or an image folder"
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], epilog=examples(*EXAMPLES[name]), **kwargs)

    r = command("reconstruct", help="images and their reconstructions from SE(x0)",
                description="Rows of dataset images, each followed by its reconstruction (image i "
                "uses the noises of image i of SEED).")
    r.add_argument("--data", required=True, help=data_help)
    r.add_argument("--n", type=count(1), default=8, help="the first N images (default %(default)s)")
    r.add_argument("--indices", type=_int_list, metavar="I,J,..", help="these dataset images instead of the first N")

    i = command("interpolate", help="paper Fig. 3: latent- or pixel-space interpolation",
                description="latent: lerp of SE(x0) between dataset images I and J (x_T, z, eps of SEED). "
                "pixel: slerp of x_T between the noises of seeds I and J, with z_T from the latent "
                "denoiser (seed I) or SE of dataset image --index K. One row per --pair.")
    i.add_argument("--space", choices=("latent", "pixel"), default="latent", help="(default %(default)s)")
    i.add_argument("--pair", nargs=2, type=int_range(0), action="append", metavar=("I", "J"),
                   help="dataset indices (latent) or x_T seeds (pixel); repeat for more rows (default 0 1)")
    i.add_argument("--steps", type=count(2), default=8, help="frames, endpoints included (default %(default)s)")
    i.add_argument("--data", help=data_help + " (latent space; pixel space with --index)")
    i.add_argument("--index", type=int_range(0), help="pixel space: z_T = SE(dataset image K)")
    i.add_argument("--method", choices=("slerp", "lerp"), default="slerp", help="pixel space (default %(default)s)")

    v = command("vary", help="paper Fig. 5: change one of z_T, z, x_T",
                description="Row r uses seed SEED + r; image i of a row draws the varied input from "
                "image i of the row's seed. z_T comes from the latent denoiser, or without one from SE "
                "of random --data images.")
    v.add_argument("--which", required=True, choices=VARY, help="the input that changes")
    v.add_argument("--n", type=count(1), default=8, help="images per row (default %(default)s)")
    v.add_argument("--rows", type=count(1), default=4, help="rows (default %(default)s)")
    v.add_argument("--data", help=data_help + " (codes for checkpoints without a latent denoiser)")

    a = command("attribute", help="move SE(x0) along a label's direction",
                description="Fit `label == TARGET` vs the rest on SE(x0) (logistic regression on "
                "normalised codes, Diffusion Autoencoders), then move each --index image along the "
                "direction; a strength is in standard deviations of the codes along it.")
    a.add_argument("--data", required=True, help=data_help)
    a.add_argument("--target", required=True, type=int, help="the label whose direction to follow")
    a.add_argument("--labels", metavar="CSV", help="labels file: 'index,label' or, for image folders, "
                   "'filename,label' (default: the dataset's own labels)")
    a.add_argument("--index", type=_int_list, default=[0], metavar="I[,J..]", help="images to edit, one row "
                   "each (default 0)")
    a.add_argument("--strengths", type=_float_list, default=[-2.0, -1.0, 0.0, 1.0, 2.0], metavar="S,S,..",
                   help="steps along the direction (default -2,-1,0,1,2)")
    a.add_argument("--scale", type=float_range(-MAX_STRENGTH, MAX_STRENGTH), default=1.0,
                   help="multiplies every strength (default %(default)s)")
    a.add_argument("--fit-max", type=int_range(10), default=2000,
                   help="at most this many labelled images to fit on (default %(default)s)")
    return p


def _load_data(spec: str, model):
    from ..data import build_dataset

    try:
        return build_dataset(spec, model.config.resolution, model.config.channels)
    except ValueError as err:
        raise EditError(str(err)) from None


def _check_indices(indices: Sequence[int], dataset, what: str) -> None:
    bad = [i for i in indices if not 0 <= i < len(dataset)]
    if bad:
        raise EditError(f"{what} {bad[0]} is out of range: the dataset has {len(dataset)} images "
                        f"(0..{len(dataset) - 1})")


def _track(args: argparse.Namespace, items, desc: str, unit: str):
    """`items` with this command's progress (a bar on a terminal, log lines elsewhere, nothing with -q)."""
    return track(items, desc, unit, not getattr(args, "quiet", False))


def _images(dataset, indices: Sequence[int]) -> torch.Tensor:
    return torch.stack([dataset[int(i)][0] for i in indices])


def _cmd_reconstruct(args, model) -> tuple[np.ndarray, int]:
    ds = _load_data(args.data, model)
    idx = args.indices or list(range(min(args.n, len(ds))))
    _check_indices(idx, ds, "index")
    originals = to_uint8(_images(ds, idx)).numpy()
    recon = reconstruct(model, _images(ds, idx), args.seed)
    nrow = min(len(idx), 8)
    rows = [part for s in range(0, len(idx), nrow) for part in (originals[s:s + nrow], recon[s:s + nrow])]
    if len(idx) % nrow:  # pad the last pair of rows so the originals stay above their reconstructions
        pad = np.full((nrow - len(idx) % nrow, *originals.shape[1:]), 255, np.uint8)
        rows = rows[:-2] + [np.concatenate([rows[-2], pad]), np.concatenate([rows[-1], pad])]
    return np.concatenate(rows), nrow


def _cmd_interpolate(args, model) -> tuple[np.ndarray, int]:
    pairs = args.pair or [[0, 1]]
    if args.space == "latent":
        if args.data is None:
            raise EditError("--space latent needs --data SPEC (the pair are dataset indices)")
        ds = _load_data(args.data, model)
        _check_indices([i for pair in pairs for i in pair], ds, "--pair index")
        rows = [interpolate_latent(model, ds[a][0], ds[b][0], args.steps, args.seed)
                for a, b in _track(args, pairs, "interpolate", "pair")]
    else:
        z_T = None
        if args.index is not None:
            if args.data is None:
                raise EditError("--index needs --data SPEC")
            ds = _load_data(args.data, model)
            _check_indices([args.index], ds, "--index")
            z_T = encode(model, ds[args.index][0])
        elif model.latent is None:
            raise EditError("the checkpoint has no latent denoiser to sample z_T from: pass --data SPEC --index K "
                            "to use SE of a dataset image")
        rows = [interpolate_pixel(model, a, b, args.steps, z_T, args.method)
                for a, b in _track(args, pairs, "interpolate", "pair")]
    return np.concatenate(rows), args.steps


def _cmd_vary(args, model) -> tuple[np.ndarray, int]:
    ds = None
    if model.latent is None:
        if args.data is None:
            raise EditError("the checkpoint has no latent denoiser to sample z_T from: pass --data SPEC to use "
                            "SE of random dataset images")
        ds = _load_data(args.data, model)
    rows = [vary(model, args.which, args.n, args.seed + r, dataset=ds)
            for r in _track(args, range(args.rows), "vary", "row")]
    return np.concatenate(rows), args.n


def _cmd_attribute(args, model) -> tuple[np.ndarray, int]:
    from ..data import dataset_labels

    ds = _load_data(args.data, model)
    _check_indices(args.index, ds, "--index")
    labels = read_labels_csv(args.labels, ds) if args.labels else dataset_labels(ds)
    if labels is None or not (labels >= 0).any():
        raise EditError(f"dataset {args.data!r} has no labels: pass --labels CSV ('index,label', or "
                        "'filename,label' for image folders)")
    present = sorted(int(v) for v in np.unique(labels[labels >= 0]))
    if args.target not in present:
        raise EditError(f"unknown label {args.target}: the labels are {present}")
    idx = np.flatnonzero(labels >= 0)
    if len(idx) > args.fit_max:
        idx = np.sort(np.random.default_rng(args.seed).choice(idx, size=args.fit_max, replace=False))
    codes = torch.cat([encode(model, _images(ds, idx[s:s + BATCH]))
                       for s in _track(args, range(0, len(idx), BATCH), "encode", "batch")])
    direction = fit_direction(codes.cpu().numpy(), labels[idx], args.target, args.seed)
    log.info(f"label {args.target} vs the rest on {direction.n_train} codes: held-out accuracy "
             f"{direction.accuracy:.3f} (majority class {direction.baseline:.3f})")
    rows = [manipulate(model, ds[i][0], direction, args.strengths, args.scale, args.seed + r)
            for r, i in _track(args, list(enumerate(args.index)), "attribute", "row")]
    return np.concatenate(rows), len(args.strengths)


COMMANDS = {"reconstruct": _cmd_reconstruct, "interpolate": _cmd_interpolate, "vary": _cmd_vary,
            "attribute": _cmd_attribute}


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--strengths -2,-1,0` -> `--strengths=-2,-1,0`: argparse would read '-2,-1,0' as an option."""
    out, it = [], iter(argv)
    for arg in it:
        out.append(arg)
        if arg == "--strengths":
            nxt = next(it, None)
            if nxt is not None:
                out[-1] = f"--strengths={nxt}"
    return out


def grid_shape(args: argparse.Namespace) -> tuple[int, int]:
    """(images in the grid at most, rows) of a pdgan-edit command line; row r uses seed --seed + r."""
    if args.command == "reconstruct":  # each row of originals is followed by its reconstructions
        n = len(args.indices) if args.indices else args.n
        return 2 * n, 1
    if args.command == "interpolate":
        rows = len(args.pair or [[0, 1]])
        return rows * args.steps, 1
    if args.command == "vary":
        return args.rows * args.n, args.rows
    return len(args.index) * len(args.strengths), len(args.index)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    images, rows = grid_shape(args)
    if images > MAX_GRID:
        p.error(f"the grid would hold {images} images; at most {MAX_GRID} (fewer --n, --rows, --steps, --pair, "
                "--index or --strengths)")
    if args.seed + rows > MAX_BLOCK_SEED:
        p.error(f"--seed {args.seed} with {rows} rows runs past seed {MAX_BLOCK_SEED - 1} (row r uses --seed + r); "
                "use a smaller --seed")
    return run_cli("pdgan-edit", args, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)  # the device and the output are checked before the model is loaded
    check_outputs({"--out": args.out}, [*model_files(args.checkpoint), getattr(args, "labels", None),
                                        *data_inputs(getattr(args, "data", None))], overwrite=args.overwrite)
    model = load_checkpoint(resolve_model(args.checkpoint), device=device)
    grid, nrow = COMMANDS[args.command](args, model)
    print(save_grid(grid, args.out, nrow=nrow))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
