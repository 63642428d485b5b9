"""Exported-graph samplers for the Engine: the whole T-step sampler as one ONNX Runtime or TensorRT graph.

Both take a `PDGAN`, export its sampler graph once (cached under `cache_dir`, default
`pdgan_infer.hub.cache_dir()`: $PDGAN_CACHE or ~/.cache/pdgan, keyed by the generator weights' hash,
the config, the dtype, the opset and the torch version; the file's sha256 is recorded beside it and
checked before reuse) and are called like the reference sampler with explicit noise:

    sampler = OnnxRuntimeSampler(model)                 # or TensorRTSampler(model) on a GPU
    x0 = sampler(x_T, z_T, z, eps)                      # shapes of `pdgan_infer.sampler.SamplerNoise`

x_T (N, C, R, R), z_T (N, nz), z (T-1, N, nz), eps (T-1, N, C, R, R); the result is float32 on the
device of x_T. A cached file that is corrupt or was written for other weights is re-exported (with a
warning), never trusted.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch

from ..checkpoint import OutputPathError, atomic_write_bytes, sha256_file
from ..networks import PDGAN
from .onnx import OPSET, OnnxLoadError, OnnxRunner, dtype_name, export_onnx, read_metadata, require, weights_sha256

EXPORT_REVISION = 1  # bump when the exported graph changes for the same weights and config


def default_cache_dir() -> Path:
    """pdgan's one cache (`pdgan_infer.hub.cache_dir`: $PDGAN_CACHE, $XDG_CACHE_HOME/pdgan, ~/.cache/pdgan);
    the old $PDGAN_CACHE_DIR is still honoured, with a DeprecationWarning."""
    from ..hub import cache_dir

    if os.environ.get("PDGAN_CACHE_DIR"):
        warnings.warn("PDGAN_CACHE_DIR is deprecated: set PDGAN_CACHE (one cache for every pdgan file)",
                      DeprecationWarning, stacklevel=2)
        return Path(os.environ["PDGAN_CACHE_DIR"])
    return cache_dir()


def onnx_cache_key(weights_hash: str, config_json: str, dtype: str, graph: str = "sampler") -> str:
    """Hex key of an exported graph: changes with the weights, config, dtype, graph, opset, torch."""
    torch_mm = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    fields = {"weights": weights_hash, "config": json.loads(config_json), "dtype": dtype, "graph": graph,
              "opset": OPSET, "torch": torch_mm, "revision": EXPORT_REVISION}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cached_onnx(model: PDGAN, dtype: str, cache_dir: str | os.PathLike | None = None,
                graph: str = "sampler", force: bool = False) -> tuple[Path, str]:
    """(path, weights hash) of the exported `graph`, exporting it unless a valid cached copy exists
    (`force`: export anyway). Valid: the file's sha256 is the one recorded beside it (NAME.onnx.json)
    when it was exported, and its metadata names these weights and this dtype. Anything else is
    re-exported with a warning."""
    wsha = weights_sha256(model.generator)
    key = onnx_cache_key(wsha, model.config.to_json(), dtype, graph)
    path = _cache_folder(cache_dir) / f"{model.config.preset}-{graph}-{dtype}-{key[:16]}.onnx"
    record = cache_record_path(path)
    for p in (path, record):
        if p.is_dir():
            raise OutputPathError(f"the export cache entry {p} is a folder; remove it, or point $PDGAN_CACHE "
                                  "(or cache_dir=) at another folder")
    if path.exists() and not force:
        reason = _cache_problem(path, record, wsha, dtype)
        if reason is None:
            return path, wsha
        warnings.warn(f"re-exporting the cached graph {path}: {reason}", stacklevel=3)
    export_onnx(model, path, graph, dtype, verify=False)
    atomic_write_bytes(record, (json.dumps({"sha256": sha256_file(path), "key": key}, indent=2) + "\n").encode())
    return path, wsha


def cache_record_path(onnx_path: str | os.PathLike) -> Path:
    """NAME.onnx.json: the sha256 of a cached export, recorded when it was written."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


def _cache_folder(cache_dir: str | os.PathLike | None) -> Path:
    base = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = base / "onnx"
    for p in (base, folder):
        if p.exists() and not p.is_dir():
            raise OutputPathError(f"the pdgan cache {p} is a file, not a folder; remove it, or point $PDGAN_CACHE "
                                  "(or cache_dir=) at another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create the export cache folder {folder} ({e.strerror or e}); point "
                              "$PDGAN_CACHE (or cache_dir=) at a writable folder") from None
    return folder


def _cache_problem(path: Path, record: Path, wsha: str, dtype: str) -> str | None:
    """Why a cached export cannot be used, or None. The content is checked first (a file whose metadata
    was rewritten to name these weights must not pass)."""
    try:
        recorded = json.loads(record.read_text()).get("sha256") if record.is_file() else None
    except (OSError, ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, str):
        return f"no record of its sha256 ({record.name})"
    try:
        if sha256_file(path) != recorded:
            return f"its content is not what was exported (sha256 differs from {record.name})"
        meta = read_metadata(path)
    except (OSError, OnnxLoadError) as e:
        return str(e)
    if meta.get("pdgan.weights_sha256") != wsha or meta.get("pdgan.dtype") != dtype:
        return "it was exported from other weights"
    return None


def _check_model(model: PDGAN) -> None:
    if not isinstance(model, PDGAN):
        raise TypeError(f"expected a pdgan_infer.PDGAN (e.g. from load_checkpoint), got {type(model).__name__}")


class OnnxRuntimeSampler:
    """The sampler graph in ONNX Runtime: CPUExecutionProvider, or CUDAExecutionProvider when `device`
    is cuda and onnxruntime-gpu is installed (CUDA path untested here). `dtype` is the generator's
    compute dtype inside the graph (float32 or float16); I/O is float32.

    The providers are the session's own (`session.get_providers()`), not the requested ones: a CUDA
    provider that fails to load (e.g. an onnxruntime-gpu built for CUDA 12 next to a cu13 torch) makes
    ONNX Runtime fall back to the CPU silently; on a CUDA `device` that raises BackendUnavailable instead
    of binding CUDA buffers to a CPU session."""

    backend = "onnxruntime"

    def __init__(self, model: PDGAN, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None):
        _check_model(model)
        require("onnx")
        require("onnxruntime")
        self.device, self.dtype = torch.device(device), dtype_name(dtype)
        self.onnx_path, self.weights_sha256 = cached_onnx(model, self.dtype, cache_dir)
        with warnings.catch_warnings():  # a CUDA provider that did not load is reported below, as an error
            warnings.filterwarnings("ignore", message="onnxruntime could not load")
            try:
                self.runner = OnnxRunner(self.onnx_path, self.device, threads)
            except OnnxLoadError as e:  # e.g. a file replaced between the check and the open
                warnings.warn(f"re-exporting {self.onnx_path}: {e}", stacklevel=2)
                self.onnx_path, _ = cached_onnx(model, self.dtype, cache_dir, force=True)
                self.runner = OnnxRunner(self.onnx_path, self.device, threads)
        requested = list(getattr(self.runner, "requested_providers", self.runner.providers))
        actual = list(self.runner.session.get_providers())
        self.runner.providers = actual  # what the runner's CUDA I/O binding path is decided from
        if self.device.type == "cuda" and "CUDAExecutionProvider" not in actual:
            from ..backends.base import BackendUnavailable
            raise BackendUnavailable(
                f"onnxruntime asked for {requested} but the session runs on {actual}: its CUDA provider did not "
                "load (onnxruntime-gpu from PyPI is built for CUDA 12 / cuDNN 9; a CUDA 13 torch needs the "
                "CUDA 13 onnxruntime-gpu build, and the CPU wheel onnxruntime must not be installed beside it)")
        self.providers = actual

    def __call__(self, x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.runner(x_T=x_T, z_T=z_T, z=z, eps=eps)

    def __repr__(self) -> str:
        return f"OnnxRuntimeSampler({self.onnx_path.name}, providers={self.providers})"


class TensorRTSampler:
    """The sampler graph as a TensorRT engine (strongly typed, built from the float16 ONNX export).
    UNTESTED: written against the documented TensorRT 10 Python API; no TensorRT on our machines.

    The engine is cached beside the ONNX file under a key of (GPU model, TensorRT version, batch
    profile, weights hash, dtype); a missing, stale or unreadable engine is rebuilt. Batches outside
    [min_batch, max_batch] are split (and padded up to min_batch). `batch_size` (the Engine's) sets the
    profile to (1, batch_size, batch_size): tactics tuned for the batch that runs, context memory sized
    for it (a fixed 1/100/256 profile sized celebahq256's context for 256 images). The exported graphs
    run in float32 or float16: another dtype raises BackendUnavailable (so `backend="auto"` moves on)."""

    backend = "tensorrt"

    def __init__(self, model: PDGAN, device: str | torch.device = "cuda", dtype: torch.dtype = torch.float16,
                 cache_dir: str | os.PathLike | None = None, min_batch: int = 1, opt_batch: int = 100,
                 max_batch: int = 256, batch_size: int | None = None):
        _check_model(model)
        from ..backends.base import BackendUnavailable
        try:
            self.dtype = dtype_name(dtype)
        except ValueError as e:
            raise BackendUnavailable(f"tensorrt: {e}; use dtype=torch.float16 (or float32)") from None
        from . import tensorrt as trt_mod
        trt_mod.require_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise RuntimeError("the tensorrt backend needs a CUDA GPU (torch.cuda.is_available() is False or "
                               f"device={device!r}); install with pip install 'pdgan[gpu]' on a GPU machine")
        if batch_size is not None:
            min_batch, opt_batch, max_batch = 1, batch_size, batch_size
        profile = trt_mod.BatchProfile(min_batch, opt_batch, max_batch)
        onnx_path, wsha = cached_onnx(model, self.dtype, cache_dir)
        self.runner = trt_mod.TensorRTRunner.from_onnx(onnx_path, profile, wsha, self.device)

    def __call__(self, x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self.runner(x_T=x_T, z_T=z_T, z=z, eps=eps)
