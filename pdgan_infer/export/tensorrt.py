"""TensorRT engines from the exported ONNX graphs.

UNTESTED: TensorRT is not installed on any machine this project has run on (no TensorRT on the GPU
box either). The code follows the documented TensorRT 10 Python API (trt.Builder, a STRONGLY_TYPED
network from trt.OnnxParser, IBuilderConfig with an optimisation profile, a timing cache and an
IProgressMonitor, build_serialized_network, Runtime.deserialize_cuda_engine, and
IExecutionContext.set_input_shape / set_tensor_address / execute_async_v3). Only the pure-Python
parts (the cache key, the profile, the shapes) are covered by tests. `tensorrt` is imported lazily.

Strongly typed: the precision of every layer comes from the ONNX types, so the float16 export
(`export.onnx`, generator in float16, GroupNorm statistics and the posterior step in float32) builds
the same arithmetic TensorRT runs; no FP16 builder flag is involved.

Engine cache: NAME-KEY.engine plus NAME-KEY.engine.json holding the key's fields and the engine's
sha256 (`engine_sidecar`; never NAME.json, which beside a checkpoint is the checkpoint's own). The key
hashes (GPU model, TensorRT version, batch profile, weights sha256, dtype, graph); an engine whose
sidecar does not match, whose bytes are not the ones recorded, or that TensorRT cannot deserialize (a
stale or truncated file), is rebuilt. The timing cache
(timing-HASH.cache beside the engines, one per GPU model and TensorRT version) makes rebuilds for new
weights or profiles faster. Builds log their phases on the "pdgan.export" logger (IProgressMonitor).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..progress import interval
from .onnx import FORMAT_VERSION, INPUTS, OUTPUT, read_metadata


def require_tensorrt():
    """Import tensorrt or raise ImportError naming the extra."""
    if importlib.util.find_spec("tensorrt") is None:
        raise ImportError("tensorrt is not installed; the tensorrt backend needs a CUDA GPU and "
                          "pip install 'pdgan[gpu]'")
    import tensorrt
    return tensorrt


@dataclass(frozen=True)
class BatchProfile:
    """The batch range an engine is built for (TensorRT optimisation profile)."""

    min: int = 1
    opt: int = 100
    max: int = 256

    def __post_init__(self):
        if not (1 <= self.min <= self.opt <= self.max):
            raise ValueError(f"batch profile needs 1 <= min <= opt <= max, got {self.min}, {self.opt}, {self.max}")


def engine_key_fields(gpu_name: str, trt_version: str, profile: BatchProfile, weights_sha256: str,
                      dtype: str = "float16", graph: str = "sampler") -> dict[str, Any]:
    return {"gpu": gpu_name, "tensorrt": trt_version, "profile": asdict(profile), "weights_sha256": weights_sha256,
            "dtype": dtype, "graph": graph, "format_version": FORMAT_VERSION}


def engine_cache_key(gpu_name: str, trt_version: str, profile: BatchProfile, weights_sha256: str,
                     dtype: str = "float16", graph: str = "sampler") -> str:
    """Hex key of an engine; any change of GPU model, TensorRT version, profile, weights, dtype, graph or
    graph format (`onnx.FORMAT_VERSION`: its input layout) gives another key (pure Python: tested without TensorRT)."""
    fields = engine_key_fields(gpu_name, trt_version, profile, weights_sha256, dtype, graph)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def input_shapes(metadata: dict[str, str], n: int) -> dict[str, tuple[int, ...]]:
    """Shapes of a graph's inputs for batch n (batch first), from the pdgan.* metadata of the ONNX file."""
    cfg, graph, T = json.loads(metadata["pdgan.config"]), metadata["pdgan.graph"], int(metadata["pdgan.T"])
    c, r, nz = cfg["channels"], cfg["resolution"], cfg["generator"]["nz"]
    if graph == "step":
        return {"x_t": (n, c, r, r), "z": (n, nz), "t": (n,)}
    return {"x_T": (n, c, r, r), "z_T": (n, nz), "z": (n, T - 1, nz), "eps": (n, T - 1, c, r, r)}


def _log(msg: str) -> None:
    logging.getLogger("pdgan.export").info(f"TensorRT: {msg}")


def _progress_monitor(trt, log: Callable[[str], None]):
    """An IProgressMonitor that logs phase starts and, at most every `pdgan_infer.progress.interval()`
    seconds, the step count."""
    every = interval()

    class Progress(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}
            self.last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            if parent_phase is None:
                log(f"{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            if time.monotonic() - self.last >= every:
                self.last = time.monotonic()
                log(f"  {phase_name}: step {step + 1}/{self.steps.get(phase_name, '?')}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return Progress()


def build_engine(onnx_path: str | os.PathLike, profile: BatchProfile, timing_cache: str | os.PathLike | None = None,
                 workspace_bytes: int | None = None, log: Callable[[str], None] = _log) -> bytes:
    """Serialized engine for an exported ONNX file (strongly typed, one optimisation profile over the
    batch axis). The timing cache at `timing_cache` is read (when compatible) and updated."""
    trt = require_tensorrt()
    meta = read_metadata(onnx_path)  # OnnxLoadError (one line) for a corrupt file
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    opt_profile = builder.create_optimization_profile()
    shapes = {n: input_shapes(meta, n) for n in (profile.min, profile.opt, profile.max)}
    for name in INPUTS[meta["pdgan.graph"]]:
        opt_profile.set_shape(name, shapes[profile.min][name], shapes[profile.opt][name], shapes[profile.max][name])
    config.add_optimization_profile(opt_profile)
    cache_path = Path(timing_cache) if timing_cache else None
    blob = cache_path.read_bytes() if cache_path and cache_path.exists() else b""
    cache = config.create_timing_cache(blob)
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # another GPU/TensorRT: start afresh
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    monitor = _progress_monitor(trt, log)
    config.progress_monitor = monitor
    log(f"building an engine from {Path(onnx_path).name}, batch {profile.min}..{profile.max} "
        f"(opt {profile.opt}); this takes minutes the first time")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    log(f"engine built in {time.perf_counter() - t0:.0f} s")
    if cache_path:
        _atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _atomic_write(path: Path, data: bytes) -> None:
    from ..checkpoint import atomic_write_bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def engine_path_for(onnx_path: str | os.PathLike, key: str) -> Path:
    p = Path(onnx_path)
    return p.with_name(f"{p.stem}-{key[:16]}.engine")


def engine_sidecar(engine_path: str | os.PathLike) -> Path:
    """NAME.engine.json: the key, its fields and the sha256 of engine NAME.engine."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


class TensorRTRunner:
    """A deserialized engine and an execution context; `runner(**inputs) -> x0` on CUDA tensors."""

    def __init__(self, engine_bytes: bytes, metadata: dict[str, str], profile: BatchProfile, device: torch.device):
        trt = require_tensorrt()
        self.trt, self.metadata, self.profile, self.device = trt, metadata, profile, device
        self.graph = metadata["pdgan.graph"]
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the engine (stale or truncated)")
        self.context = self.engine.create_execution_context()
        # TensorRT on the legacy default stream adds a cudaStreamSynchronize per call: run on our own
        self.stream = torch.cuda.Stream(device)
        self.dtypes = {name: _torch_dtype(trt, self.engine.get_tensor_dtype(name))
                       for name in (*INPUTS[self.graph], OUTPUT)}

    @classmethod
    def from_onnx(cls, onnx_path: str | os.PathLike, profile: BatchProfile, weights_sha256: str,
                  device: torch.device, engine_path: str | os.PathLike | None = None,
                  log: Callable[[str], None] = _log) -> TensorRTRunner:
        """Load the cached engine for (this GPU, this TensorRT, profile, weights) or build it."""
        trt = require_tensorrt()
        meta = read_metadata(onnx_path)
        args = (torch.cuda.get_device_name(device), trt.__version__, profile, weights_sha256,
                meta["pdgan.dtype"], meta["pdgan.graph"])
        fields, key = engine_key_fields(*args), engine_cache_key(*args)
        path = Path(engine_path) if engine_path else engine_path_for(onnx_path, key)
        sidecar = engine_sidecar(path)
        if path.is_file() and sidecar.is_file():
            try:
                stored = json.loads(sidecar.read_text())
                stored = stored if isinstance(stored, dict) else {}
            except (OSError, ValueError):
                stored = {}
            if stored.get("key") == key:
                blob = path.read_bytes()
                if hashlib.sha256(blob).hexdigest() != stored.get("sha256"):
                    log(f"rebuilding {path.name}: its bytes are not the engine that was built (sha256 differs "
                        f"from {sidecar.name})")
                else:
                    try:
                        return cls(blob, meta, profile, device)
                    except RuntimeError as e:
                        log(f"rebuilding {path.name}: {e}")
            else:
                log(f"rebuilding {path.name}: it was built for {stored.get('fields')}, now {fields}")
        timing = hashlib.sha256(f"{args[0]}|{args[1]}".encode()).hexdigest()[:12]  # per GPU model + TensorRT
        engine = build_engine(onnx_path, profile, path.parent / f"timing-{timing}.cache", log=log)
        _atomic_write(path, engine)
        _atomic_write(sidecar, json.dumps({"key": key, "fields": fields, "sha256": hashlib.sha256(engine).hexdigest()},
                                          indent=2).encode())
        return cls(engine, meta, profile, device)

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        first = INPUTS[self.graph][0]
        n = inputs[first].shape[0]
        outs = []
        for start in range(0, n, self.profile.max):  # split batches above the profile
            chunk = {k: v[start:start + self.profile.max] for k, v in inputs.items()}
            m = chunk[first].shape[0]
            if m < self.profile.min:  # pad below the profile by repeating the last image
                chunk = {k: _pad(v, self.profile.min) for k, v in chunk.items()}
            outs.append(self._run(chunk)[:m])
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        keep = {}
        for name in INPUTS[self.graph]:
            t = inputs[name].to(device=self.device, dtype=self.dtypes[name]).contiguous()
            keep[name] = t
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT)), dtype=self.dtypes[OUTPUT], device=self.device)
        self.context.set_tensor_address(OUTPUT, out.data_ptr())
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)  # the inputs were written on the caller's stream
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for t in (*keep.values(), out):  # the allocator must not reuse them before TensorRT is done
            t.record_stream(self.stream)
        caller.wait_stream(self.stream)
        return out.float()


def _pad(t: torch.Tensor, size: int) -> torch.Tensor:
    """`t` with its last row (batch axis 0) repeated up to `size` rows."""
    missing = size - t.shape[0]
    if missing <= 0:
        return t
    return torch.cat([t, t[-1:].expand(missing, *t.shape[1:])])


def _torch_dtype(trt, dt) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    return table[dt]
