"""pdgan-export: a checkpoint (or a preset with random weights) -> ONNX file, TensorRT engine or Triton repository.

Graphs are written by torch's dynamo exporter at opset 18 (--opset), or by its TorchScript exporter with a warning
saying why (pdgan_infer.export.onnx). The ONNX export is checked with onnx.checker and compared with torch in ONNX
Runtime at batch 1 and 5 on the noises of `Engine.generate(n, seed=1234)` (max error printed; exit status 1 when it
exceeds the tolerance, or when the export fails; 2 for a wrong command line). TensorRT engines are built from the
float16 sampler export (written beside the engine as .onnx) and are untested (no TensorRT here).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from .._cli import (
    ArgumentParser,
    add_common_arguments,
    add_overwrite_argument,
    check_outputs,
    examples,
    int_range,
    model_files,
    run_cli,
)
from ..config import PRESETS
from ..export.onnx import GRAPHS, OPSET, OPSETS, preferred_exporter
from ..hub import load_model
from ..progress import Progress
from ..seeds import SEED_LIMIT
from ..serve.config import MAX_QUEUE_DELAY_US, REPOSITORY_MAX_BATCH

log = logging.getLogger("pdgan")
MAX_PROFILE_BATCH = 65536
EXAMPLES = examples(
    "pdgan-export digits --format triton --out model_repository   # for the Triton container",
    "pdgan-export digits --format triton --triton-backend python --out model_repository   # for pdgan-serve "
    "--repository",
    "pdgan-export digits --out digits.onnx   # whole sampler, float32 (a bundled model, a folder or a run)",
    "pdgan-export runs/digits --format onnx --out step16.onnx --fp16 --graph step   # one generator step",
    "pdgan-export --preset cifar10 --format onnx --out cifar10.onnx   # random weights",
    "pdgan-export runs/cifar10 --format tensorrt --out cifar10.engine   # needs a GPU + TensorRT")


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="pdgan-export", description=__doc__.split("\n\n")[0], epilog=EXAMPLES)
    p.add_argument("checkpoint", nargs="?", help="a bundled name such as digits, a .safetensors checkpoint, a model "
                   "folder or a run directory")
    p.add_argument("--preset", choices=sorted(PRESETS), help="random weights of a preset instead of a checkpoint")
    p.add_argument("--seed", type=int_range(0, SEED_LIMIT - 1), default=0, help="seed of the random weights (--preset)")
    p.add_argument("--format", choices=("onnx", "tensorrt", "triton"), default="onnx", help="what to write; "
                   "triton: a Triton Inference Server model repository in the folder --out (MODEL may be a bundled "
                   "name such as digits; --max-batch is the models' max_batch_size)")
    p.add_argument("--triton-backend", choices=("onnxruntime", "tensorrt", "python"), default="onnxruntime",
                   help="--format triton: what runs the serving graph (pdgan_infer.serve.repository)")
    p.add_argument("--out", required=True, type=Path, help="output file (.onnx or .engine); --format triton: the "
                   "repository folder")
    p.add_argument("--fp16", action="store_true", help="run the generator in float16 inside the graph "
                   "(I/O stays float32); always on for --format tensorrt")
    p.add_argument("--graph", choices=GRAPHS, default="sampler",
                   help="'sampler': the whole T-step chain; 'step': one generator call G(x_t, z, t)")
    dynamo, script = OPSETS["dynamo"], OPSETS["torchscript"]
    p.add_argument("--opset", type=int_range(*OPSETS[preferred_exporter()]), default=OPSET,
                   help=f"ONNX opset of the graphs: {dynamo[0]}..{dynamo[1]} with the dynamo exporter (torch's "
                   f"default); {script[0]}..{script[1]} with the TorchScript exporter, the fallback when onnxscript is "
                   "not installed or the dynamo exporter fails")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the ONNX Runtime vs torch comparison (it runs unless this is given)")
    batch = int_range(1, MAX_PROFILE_BATCH)
    p.add_argument("--min-batch", type=batch, default=1, help="TensorRT profile: smallest batch")
    p.add_argument("--opt-batch", type=batch, default=100, help="TensorRT profile: batch tuned for")
    p.add_argument("--max-batch", type=batch, default=REPOSITORY_MAX_BATCH, help="TensorRT profile: largest "
                   "batch; --format triton: also the models' max_batch_size, fixed as the export cannot know the "
                   "device it will run on (pdgan-serve MODEL knows it and uses the Engine's batch for it: 64 at 32x32 "
                   "on a CPU)")
    p.add_argument("--max-queue-delay-us", type=int_range(0, 10 ** 9), default=MAX_QUEUE_DELAY_US,
                   help="--format triton: how long the dynamic batcher waits for more requests to fill a batch "
                   "(microseconds; the same as pdgan-serve's)")
    add_overwrite_argument(p)
    add_common_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if (args.checkpoint is None) == (args.preset is None):
        p.error("give a checkpoint path or --preset NAME (not both)")
    if args.format == "tensorrt" and not args.min_batch <= args.opt_batch <= args.max_batch:
        p.error(f"the TensorRT batch profile needs --min-batch <= --opt-batch <= --max-batch, got {args.min_batch}, "
                f"{args.opt_batch}, {args.max_batch}")
    return run_cli("pdgan-export", args, lambda: _run(args))


def output_files(out: Path, fmt: str) -> dict[str, Path]:
    """{what: path} of every file the export writes: the ONNX graph, and for TensorRT the engine, the
    float16 graph it is built from and the engine's key sidecar (`TensorRTRunner.from_onnx`)."""
    if fmt != "tensorrt":
        return {"--out": out}
    files = {"--out": out, "--out's ONNX graph": out.with_suffix(".onnx"),
             "--out's engine sidecar": out.with_suffix(".json")}
    return {what: path for what, path in files.items() if what == "--out" or path != out}


def _run(args: argparse.Namespace) -> int:
    if args.format == "triton":  # a repository folder, not one file: its own checks (pdgan_infer.serve.repository)
        return _run_triton(args)
    check_outputs(output_files(args.out, args.format), model_files(args.checkpoint),  # before the export
                  overwrite=args.overwrite)
    dtype = "float16" if (args.fp16 or args.format == "tensorrt") else "float32"
    if args.format == "tensorrt":
        from ..export.tensorrt import BatchProfile, require_tensorrt
        require_tensorrt()
        if not torch.cuda.is_available():
            raise RuntimeError("--format tensorrt needs a CUDA GPU (and pip install 'pdgan[gpu]')")
        if args.graph != "sampler":
            raise ValueError("--format tensorrt builds the sampler graph only")
        profile = BatchProfile(args.min_batch, args.opt_batch, args.max_batch)
    model, ckpt_sha = load_model(args.checkpoint, args.preset, args.seed)
    if model.latent is None:
        log.warning("note: this checkpoint has no latent denoiser. The exported graph takes z_T as an input, so "
                    "the export does not need one, but generating images does (z_T comes from the latent sampler): "
                    "supply z_T yourself or use a checkpoint with a latent.")
    from ..export.onnx import export_onnx
    onnx_path = args.out if args.format == "onnx" else args.out.with_suffix(".onnx")
    with Progress(None, "ONNX export" + (" and onnxruntime check" if args.verify else ""), show=not args.quiet):
        result = export_onnx(model, onnx_path, args.graph, dtype, checkpoint_sha256=ckpt_sha, verify=args.verify,
                             opset=args.opset)
    print(f"wrote {result.path} (graph={args.graph}, dtype={dtype}, opset {result.opset}, {result.exporter} "
          f"exporter, onnx.checker passed, {result.export_s:.1f} s)")
    for n, err in result.max_abs_err.items():
        verdict = "ok" if err <= result.tolerance[n] else "TOO LARGE"
        print(f"  onnxruntime vs torch, batch {n}: max abs error {err:.3e} (tolerance {result.tolerance[n]:.1e}, "
              f"outputs up to {result.ref_max_abs[n]:.2f}) {verdict}")
    if not result.ok:
        log.error("error: onnxruntime output differs from torch beyond the tolerance")
        return 1
    if args.format == "tensorrt":
        from ..export.tensorrt import TensorRTRunner
        with Progress(None, "TensorRT engine", show=not args.quiet):  # the build logs its phases too
            TensorRTRunner.from_onnx(onnx_path, profile, result.weights_sha256, torch.device("cuda"),
                                     engine_path=args.out)
        print(f"wrote {args.out} (TensorRT engine, batch {profile.min}..{profile.max}, opt {profile.opt})")
    return 0


def _run_triton(args: argparse.Namespace) -> int:
    """--format triton: MODEL is a bundled name, a model folder, a checkpoint or (with --preset) random weights."""
    from ..serve.repository import claim_repository, describe, export_triton

    claim_repository(args.out, args.triton_backend, args.overwrite)  # before the model loads
    model, sha = load_model(args.checkpoint, args.preset, args.seed)
    with Progress(None, "Triton repository", show=not args.quiet):
        result = export_triton(model, args.out, sampler_backend=args.triton_backend, max_batch_size=args.max_batch,
                               opt_batch=args.opt_batch, min_batch=args.min_batch,
                               max_queue_delay_us=args.max_queue_delay_us, checkpoint_sha256=sha,
                               verify=args.verify, overwrite=args.overwrite, opset=args.opset)
    print(describe(result))
    if result.max_level_diff is not None and result.max_level_diff > 2:
        raise ValueError(f"the serving graph differs from Engine(torch) by {result.max_level_diff} uint8 levels "
                         "(more than float rounding explains)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
