"""`pdgan-export MODEL --format triton --out REPO`: a model repository for a stock NVIDIA Triton container.

    REPO/pdgan/config.pbtxt           Python backend: SEED (INT64 [1]) [+ optional Z_T (FP32 [nz])] -> IMAGE
    REPO/pdgan/1/model.py             (UINT8 [H, W, 3]), batch first; dynamic batching, instance group
    REPO/pdgan_sampler/config.pbtxt   the serving graph: ONNX Runtime (default), TensorRT or Python backend
    REPO/pdgan_sampler/1/model.onnx   (or model.plan for TensorRT; + model.py for the Python backend)

Two models, because one graph cannot do it all: `pdgan` (pdgan_infer/serve/models/pipeline.py, numpy only) checks
each request and draws every image's noise from its seed with the project's one noise rule (Philox4x32-10 in
uint64 + float64 Box-Muller: TensorRT has neither 64-bit integers nor float64), then calls `pdgan_sampler` for the
whole batch through Triton's BLS. `pdgan_sampler` is the batch-first serving graph (`ServingGraph`): noises in
(x_T (N, C, R, R), latent (N, nz), z (N, T-1, nz), eps (N, T-1, C, R, R), z_T (N, nz), use_z_T (N, 1)), the
latent denoiser's DDIM unrolled, the T-step sampler, uint8 NHWC out. So clients send 8 bytes per image and get the
image `Engine.generate(seeds=[seed])` gives (up to float rounding between runtimes: a few 1-level differences).

Sampler variants (`--triton-backend`):
  onnxruntime  platform onnxruntime_onnx, KIND_AUTO instances (a GPU when the container has one): the default;
  tensorrt     model.plan built here from the float16 graph (needs a GPU and TensorRT of the container's version:
               Triton loads plans only from the TensorRT it was built with); KIND_GPU. Untested: no GPU here;
  python       the ONNX graph run by the onnxruntime Python package inside the Python backend (pdgan_sampler/1/
               model.py), for Triton builds without the ONNX Runtime backend, such as the one in the
               nvidia-pytriton wheel: `pdgan-serve --repository REPO` serves it, and the tests load it so.
Warm-up (model_warmup) is on pdgan_sampler, where ONNX Runtime and TensorRT set up per shape. `pdgan` has none: its
own step is numpy, and Triton loads a repository's models in parallel, so a warm-up request of `pdgan` could reach
pdgan_sampler before it is loaded (and the Python backend cannot wait for it: is_model_ready fails while the server
is starting), which would fail the load. The pdgan.* metadata (config, weights hash, version) is copied into the
configs' parameters (Triton does not read ONNX metadata_props).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..export.onnx import (
    OPSET,
    SamplerGraph,
    check_opset,
    dtype_name,
    require,
    set_metadata,
    weights_sha256,
    write_graph,
)
from ..files import check_owned_files, check_owned_output, write_owned_marker
from ..networks import PDGAN
from ..sampler import to_uint8
from . import config as cfg

SAMPLER = "pdgan_sampler"
TRITON_BACKENDS = ("onnxruntime", "tensorrt", "python")
INPUTS = ("x_T", "latent", "z", "eps", "z_T", "use_z_T")
OWNED_MARKER = ".pdgan-triton.json"  # the files pdgan-export wrote in OUT (pdgan_infer.files)
MODELS_DIR = Path(__file__).resolve().parent.parent / "serve" / "models"


class LatentGraph(nn.Module):
    """`LatentDenoiser.sample` (DDIM, eta = 0) as a module for export (its step vectors follow the dynamic batch)."""

    def __init__(self, latent: nn.Module, steps: int | None = None):
        super().__init__()
        self.latent, self.steps = latent, steps
        latent.ddim_timesteps(steps)  # checks steps now, not at export

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.latent.sample(noise, self.steps)


class ServingGraph(nn.Module):
    """Batch-first noises -> uint8 (N, H, W, 3) images: z_T = use_z_T ? z_T : latent DDIM(latent), then the sampler."""

    def __init__(self, model: PDGAN, dtype: torch.dtype = torch.float32, latent_steps: int | None = None):
        super().__init__()
        self.sampler = SamplerGraph(model.generator, model.schedule, dtype)
        self.latent = LatentGraph(model.latent, latent_steps) if model.latent_slot != "none" else None
        self.latent_slot = model.latent_slot

    def forward(self, x_T, latent, z, eps, z_T, use_z_T):
        drawn = latent if self.latent is None else self.latent(latent)
        z_T = torch.where(use_z_T > 0.5, z_T, drawn)
        if self.latent_slot == "all":  # the model reads z_T at every step (pdgan_infer.sampler.with_latent_slot)
            z = z_T.unsqueeze(1).expand_as(z)
        return to_uint8(self.sampler(x_T, z_T, z, eps))  # the sampler graph's batch-first inputs


def serving_inputs(model: PDGAN, seeds: list[int], z_T: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The inputs `pdgan`'s model.py sends to the sampler for `seeds` (numpy noise; z_T: given codes or None)."""
    from .models.pipeline import draw_noise

    c = model.config
    inputs = draw_noise(seeds, model.schedule.T, c.channels, c.resolution, c.generator.nz)
    n = len(seeds)
    inputs["z_T"] = np.zeros((n, c.generator.nz), np.float32) if z_T is None else np.asarray(z_T, np.float32)
    inputs["use_z_T"] = np.full((n, 1), 0.0 if z_T is None else 1.0, np.float32)
    return inputs


def export_serving_onnx(model: PDGAN, path: str | Path, dtype: str = "float32", latent_steps: int | None = None,
                        metadata: dict[str, str] | None = None, opset: int = OPSET) -> Path:
    """Write the serving graph (`export.onnx.write_graph`: the dynamo exporter at `opset`, or the TorchScript one with
    a warning; dynamic batch on axis 0 of every input and of IMAGE) and check it. Its metadata_props are `metadata`
    plus pdgan.opset, pdgan.exporter, pdgan.version and pdgan.torch (`export.onnx.set_metadata`)."""
    onnx = require("onnx")
    if model.schedule.T < 2:
        raise ValueError("the serving graph needs T >= 2 (z and eps have T-1 steps)")
    check_opset(opset)
    module = ServingGraph(model.cpu().eval(), {"float32": torch.float32, "float16": torch.float16}[dtype],
                          latent_steps).eval()
    example = {k: torch.from_numpy(v) for k, v in serving_inputs(model, [0, 1]).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter = write_graph(module, {k: example[k] for k in INPUTS}, path, cfg.IMAGE, opset)
    proto = onnx.load(str(path))
    set_metadata(proto, metadata or {}, exporter, "PDGAN serving graph: seeds' noises in, uint8 NHWC images out")
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


def run_serving_onnx(path: str | Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """IMAGE of the serving graph in ONNX Runtime (CPU)."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return session.run([cfg.IMAGE], {k: inputs[k] for k in INPUTS})[0]


@dataclass
class TritonExport:
    repository: Path
    sampler_backend: str
    max_batch_size: int
    export_s: float
    max_level_diff: int | None = None  # |ONNX Runtime - Engine(torch)| in uint8 levels on the check seeds
    differing_fraction: float | None = None


def export_triton(model: PDGAN, out: str | Path, *, sampler_backend: str = "onnxruntime",
                  max_batch_size: int = cfg.REPOSITORY_MAX_BATCH, opt_batch: int = 100, min_batch: int = 1,
                  max_queue_delay_us: int = cfg.MAX_QUEUE_DELAY_US, instances: int = 1,
                  latent_steps: int | None = None, checkpoint_sha256: str | None = None, verify: bool = True,
                  verify_seeds: tuple[int, ...] = (0, 1, 2, 3, 4), overwrite: bool = False,
                  opset: int = OPSET) -> TritonExport:
    """Write the repository OUT (module docstring); the serving graph at `opset` (`export_serving_onnx`). `verify`:
    compare the ONNX graph in ONNX Runtime with `Engine(model, backend="torch").generate(seeds=verify_seeds)` (uint8
    images). OUT is claimed first (`claim_repository`: new, empty, or written by pdgan-export; `overwrite` writes
    into any other folder); the files are written into a staging folder inside OUT and moved into place at the end,
    and a re-export removes only the files its previous export listed in OUT/.pdgan-triton.json."""
    if sampler_backend not in TRITON_BACKENDS:
        raise ValueError(f"--triton-backend must be one of {', '.join(TRITON_BACKENDS)}, got {sampler_backend!r}")
    if not model.can_draw_z_T:
        raise ValueError("this checkpoint has no latent denoiser: a Triton repository draws images from seeds, "
                         "which needs one")
    check_opset(opset)
    out = Path(out)
    owned = claim_repository(out, sampler_backend, overwrite)
    t0 = time.perf_counter()
    meta = {"pdgan.config": json.dumps(json.loads(model.config.to_json()), separators=(",", ":")),
            "pdgan.T": str(model.schedule.T), "pdgan.latent_slot": model.latent_slot,
            "pdgan.weights_sha256": weights_sha256(model.generator), "pdgan.checkpoint_sha256": checkpoint_sha256 or "",
            "pdgan.version": _version(), "pdgan.torch": torch.__version__}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pdgan-export-", dir=out) as staging:
        result = _export_into(Path(staging), model, meta, sampler_backend, max_batch_size, opt_batch, min_batch,
                              max_queue_delay_us, instances, latent_steps, verify, verify_seeds, opset)
        _install(Path(staging), out, owned)
    result.repository = out
    result.export_s = time.perf_counter() - t0
    return result


def repository_files(sampler_backend: str) -> list[str]:
    """The files (relative to OUT) that `export_triton` writes for a sampler variant."""
    graph = "model.plan" if sampler_backend == "tensorrt" else "model.onnx"
    files = [f"{cfg.MODEL_NAME}/config.pbtxt", f"{cfg.MODEL_NAME}/1/model.py", f"{SAMPLER}/config.pbtxt",
             f"{SAMPLER}/1/{graph}"]
    return files + ([f"{SAMPLER}/1/model.py"] if sampler_backend == "python" else [])


def claim_repository(out: Path, sampler_backend: str, overwrite: bool = False) -> list[str]:
    """The files a previous pdgan-export wrote in OUT (files.check_owned_output with OWNED_MARKER); OutputError for a
    symlinked OUT or model folder, a non-empty OUT that pdgan did not write (unless `overwrite`), or a file this
    export would replace that is not pdgan's (unless `overwrite`)."""
    owned = check_owned_output(out, OWNED_MARKER, overwrite)
    check_owned_files(out, repository_files(sampler_backend), owned, overwrite)
    return owned


def _install(staging: Path, out: Path, owned: list[str]) -> None:
    """Move the staged files into OUT (each an atomic rename), then remove the files of the previous export that
    this one did not write. The marker lists both while the files move, so a kill leaves no file unaccounted for."""
    files = sorted(str(p.relative_to(staging).as_posix()) for p in staging.rglob("*") if p.is_file())
    write_owned_marker(out, OWNED_MARKER, [*owned, *files], tool="pdgan-export")
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, out / rel)
    for rel in sorted(set(owned) - set(files)):
        stale = out / rel
        if stale.is_file() and not stale.is_symlink():
            stale.unlink()
        for parent in stale.parents:  # the folders it leaves empty, up to OUT
            if parent == out or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
    write_owned_marker(out, OWNED_MARKER, files, tool="pdgan-export")


def _export_into(out: Path, model: PDGAN, meta: dict[str, str], sampler_backend: str, max_batch_size: int,
                 opt_batch: int, min_batch: int, max_queue_delay_us: int, instances: int, latent_steps: int | None,
                 verify: bool, verify_seeds: tuple[int, ...], opset: int) -> TritonExport:
    sampler_dir = out / SAMPLER
    dtype = "float16" if sampler_backend == "tensorrt" else "float32"
    onnx_path = export_serving_onnx(model, sampler_dir / "1" / "model.onnx", dtype, latent_steps,
                                    {**meta, "pdgan.dtype": dtype_name(dtype)}, opset)
    written = {p.key: p.value for p in require("onnx").load(str(onnx_path)).metadata_props}
    meta = {**meta, "pdgan.opset": written["pdgan.opset"], "pdgan.exporter": written["pdgan.exporter"]}
    result = TritonExport(out, sampler_backend, max_batch_size, 0.0)
    if verify:
        result.max_level_diff, result.differing_fraction = verify_serving_onnx(model, onnx_path, list(verify_seeds),
                                                                               latent_steps)
    if sampler_backend == "tensorrt":
        build_plan(onnx_path, sampler_dir / "1" / "model.plan", (min_batch, opt_batch, max_batch_size))
        onnx_path.unlink()
    _write_configs(out, model, meta, sampler_backend, max_batch_size, opt_batch, max_queue_delay_us, instances)
    return result


def verify_serving_onnx(model: PDGAN, onnx_path: Path, seeds: list[int], latent_steps: int | None = None
                        ) -> tuple[int, float]:
    """(max |ORT - Engine(torch)| in uint8 levels, fraction of differing values) on `seeds`."""
    from ..engine import Engine

    engine = Engine(model, backend="torch", device="cpu", latent_steps=latent_steps)
    ref = engine.generate(seeds=seeds, progress=False).astype(np.int16)
    got = run_serving_onnx(onnx_path, serving_inputs(model, seeds)).astype(np.int16)
    diff = np.abs(got - ref)
    return int(diff.max()), float((diff > 0).mean())


def _write_configs(out: Path, model: PDGAN, meta: dict[str, str], sampler_backend: str, max_batch: int,
                   opt_batch: int, delay_us: int, instances: int) -> None:
    c, nz, T = model.config, model.config.generator.nz, model.schedule.T
    r, ch = c.resolution, c.channels
    shapes = {"x_T": [ch, r, r], "latent": [nz], "z": [T - 1, nz], "eps": [T - 1, ch, r, r], "z_T": [nz],
              "use_z_T": [1]}
    sampler = {"name": SAMPLER, "max_batch_size": max_batch,
               "input": [cfg.tensor(k, "TYPE_FP32", dims) for k, dims in shapes.items()],
               "output": [cfg.tensor(cfg.IMAGE, "TYPE_UINT8", [r, r, 3])],
               "dynamic_batching": cfg.dynamic_batching(delay_us),
               "model_warmup": cfg.warmup([1], {k: ("TYPE_FP32", dims) for k, dims in shapes.items()}),
               "parameters": cfg.parameters(meta)}
    if sampler_backend == "onnxruntime":
        sampler = {"name": SAMPLER, "platform": "onnxruntime_onnx", **{k: v for k, v in sampler.items() if k != "name"},
                   "instance_group": cfg.instance_group(instances, "KIND_AUTO")}
    elif sampler_backend == "tensorrt":
        sampler = {"name": SAMPLER, "platform": "tensorrt_plan", **{k: v for k, v in sampler.items() if k != "name"},
                   "instance_group": cfg.instance_group(instances, "KIND_GPU")}
        sampler["dynamic_batching"] = cfg.dynamic_batching(delay_us, [min(opt_batch, max_batch)])
    else:
        sampler = {"name": SAMPLER, "backend": "python", **{k: v for k, v in sampler.items() if k != "name"},
                   "instance_group": cfg.instance_group(instances, "KIND_CPU")}
    cfg.write_config(out / SAMPLER, sampler)
    if sampler_backend == "python":
        shutil.copy2(MODELS_DIR / "onnx_sampler.py", out / SAMPLER / "1" / "model.py")
    pdgan = {"name": cfg.MODEL_NAME, "backend": "python", "max_batch_size": max_batch, **cfg.pdgan_io(r, nz),
             "dynamic_batching": cfg.dynamic_batching(delay_us),
             "instance_group": cfg.instance_group(instances, "KIND_CPU"),
             "parameters": cfg.parameters({**meta, "pdgan.channels": ch, "pdgan.resolution": r, "pdgan.nz": nz,
                                           "pdgan.sampler_model": SAMPLER})}
    cfg.write_config(out / cfg.MODEL_NAME, pdgan)
    shutil.copy2(MODELS_DIR / "pipeline.py", out / cfg.MODEL_NAME / "1" / "model.py")


def build_plan(onnx_path: Path, plan_path: Path, batches: tuple[int, int, int]) -> Path:
    """A TensorRT engine (model.plan) of the float16 serving graph with one profile over the batch axis of every
    input. It must be built with the TensorRT of the Triton container that loads it. Needs a GPU; untested here."""
    from ..export.tensorrt import require_tensorrt

    if not torch.cuda.is_available():
        raise RuntimeError("--triton-backend tensorrt needs a CUDA GPU and TensorRT (pip install 'pdgan[gpu]')")
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) \
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: "
                           + "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, *[(b, *rest) for b in batches])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    plan_path.write_bytes(bytes(plan))
    return plan_path


def _version() -> str:
    from .. import __version__
    return __version__


def describe(result: TritonExport) -> str:
    lines = [f"wrote Triton model repository {result.repository} ({result.export_s:.1f} s): "
             f"{cfg.MODEL_NAME} (Python backend: seeds -> noise -> {SAMPLER}), {SAMPLER} ({result.sampler_backend}), "
             f"max batch {result.max_batch_size}"]
    if result.max_level_diff is not None:
        lines.append(f"  ONNX Runtime vs Engine(torch) on the check seeds: max difference {result.max_level_diff} "
                     f"uint8 level(s), {100 * result.differing_fraction:.3f}% of values differ")
    lines.append(f"  serve it: docker run --rm -p8000:8000 -p8001:8001 -p8002:8002 -v {result.repository.resolve()}:"
                 "/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models")
    return "\n".join(lines)


__all__ = ["ServingGraph", "LatentGraph", "export_triton", "export_serving_onnx", "serving_inputs", "describe",
           "TRITON_BACKENDS"]
