"""Ship a trained checkpoint inside the package: `python -m pdgan_train.bundle RUN/model.safetensors
--name digits --command "pdgan-train ..." --eval eval.json` writes `pdgan_infer/pretrained/NAME.safetensors`
+ `NAME.json` (the EMA inference weights, re-saved atomically) with a `pretrained` record in its metadata:
a one-line description, the training command and the quality numbers, which `Engine.pretrained()` and
`make demo` show. `Engine.from_pretrained(NAME)` then loads it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pdgan_infer._cli import (
    ArgumentParser,
    add_common_arguments,
    add_overwrite_argument,
    check_outputs,
    model_files,
    run_cli,
)
from pdgan_infer.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from pdgan_infer.hub import PRETRAINED_DIR

METRIC_KEYS = ("digits_fid", "class_coverage", "class_histogram", "confident_fraction", "probe_accuracy",
               "interp_mean", "interp_var", "fid", "is_mean", "precision", "recall",
               # pdgan_train.digits_metrics (the 8x8 metrics of the digits model)
               "n", "seed", "class_shares", "min_class_share", "max_class_share", "confidence_8x8",
               "realism_ratio", "precision_8x8", "recall_8x8", "recon_accuracy", "targets_met")


def bundle(checkpoint: str | Path, name: str, description: str, command: str | None = None,
           metrics: dict[str, Any] | None = None, dest: str | Path | None = None) -> Path:
    """Copy `checkpoint` to DEST/NAME (default: the package's pretrained folder) with its record."""
    if not name.isidentifier():
        raise ValueError(f"bundle name {name!r} must be a plain identifier such as 'digits'")
    header = read_header(checkpoint)
    model = load_checkpoint(checkpoint)
    if not model.can_draw_z_T:
        raise CheckpointError(f"{checkpoint} has no latent denoiser, so Engine.generate could not draw z_T with "
                              "it; finish its latent stage (pdgan-train --resume RUN) before bundling")
    meta = dict(header.get("meta", {}))
    meta["pretrained"] = {"name": name, "description": description, "command": command,
                          "metrics": {k: v for k, v in (metrics or {}).items() if k in METRIC_KEYS}}
    return save_checkpoint(model, Path(dest or PRETRAINED_DIR) / name, meta=meta)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m pdgan_train.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a pdgan-train model.safetensors (its model.json beside it)")
    p.add_argument("--name", required=True, help="the name Engine.from_pretrained takes, e.g. digits")
    p.add_argument("--description", default="", help="one line shown by Engine.pretrained() and make demo")
    p.add_argument("--command", help="the command that trained it (recorded for reproducibility)")
    p.add_argument("--eval", dest="eval_json",
                   help="a pdgan-eval --json (or digits_metrics) result whose numbers to record")
    p.add_argument("--dest", help=f"output folder (default {PRETRAINED_DIR})")
    add_overwrite_argument(p)
    add_common_arguments(p)
    args = p.parse_args(argv)
    if not args.name.isidentifier():
        p.error(f"--name {args.name!r} must be a plain identifier such as 'digits'")
    return run_cli("bundle", args, lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    dest = Path(args.dest or PRETRAINED_DIR) / args.name
    check_outputs({"--name": dest.with_suffix(".safetensors"), "--name's JSON": dest.with_suffix(".json")},
                  [*model_files(args.checkpoint), args.eval_json], overwrite=args.overwrite)
    metrics = json.loads(Path(args.eval_json).read_text()) if args.eval_json else None
    if metrics is not None and not isinstance(metrics, dict):
        raise ValueError(f"--eval {args.eval_json} holds a JSON {type(metrics).__name__}, not the object that "
                         "pdgan-eval --json writes")
    path = bundle(args.checkpoint, args.name, args.description, args.command, metrics, args.dest)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
