"""`serve`: a pdgan model as the Triton model `pdgan` on a real Triton Inference Server, in the foreground.

    serve("digits", http_port=8000)      # blocks; SIGTERM / SIGINT stop it (exit status 0)

It writes a model repository (`engine_repository`: config.pbtxt + a model.py that runs
`pdgan_infer.serve.models.engine`) into a temporary folder, starts `tritonserver` on it
(`pdgan_infer.serve.tritonserver`), waits for /v2/health/ready, logs where it listens and watches it: when
tritonserver or one of its model instances (Python-backend stubs) dies, `serve` raises ServeError (pdgan-serve
exits with status 1, so a supervisor restarts it).

It listens on `host` only (127.0.0.1 by default; a wildcard address such as 0.0.0.0 logs a warning), with
Triton's administrative APIs restricted (`tritonserver.RESTRICTED_APIS`). HTTP clients reach Triton through
`guard.RequestGuard`, which refuses oversized requests and impossible shapes before Triton parses them (Triton's
own HTTP endpoint listens on a loopback port of its own). Nothing a client can read names a host
path: the checkpoint's path is in the version folder's SETTINGS file, which Triton does not serve, not in the
model configuration.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import stat
import tempfile
from pathlib import Path

import torch

from ..engine import Engine, resolve_dtype
from ..errors import PDGANError
from ..optimize import default_batch_size
from . import config as cfg
from .tritonserver import HARMLESS, SERVED_RUNTIMES, TEMP_PREFIXES, ServeError, TritonServer, find_tritonserver

log = logging.getLogger("pdgan")
ENGINE_MODEL_PY = "from pdgan_infer.serve.models.engine import TritonPythonModel  # noqa: F401\n"
SETTINGS = "pdgan-serve.json"  # beside model.py: what the model reads and no client may (the checkpoint's path)
WILDCARDS = ("0.0.0.0", "::", "")
RUNTIME_FIELD = re.compile(r"""^\s*(platform|backend)\s*:\s*["']([^"']*)["']""", re.MULTILINE)  # config.pbtxt


def engine_repository(folder: str | Path, checkpoint: str | Path, *, resolution: int, nz: int, backend: str = "auto",
                      dtype: str | None = None, device: str = "cpu", gpus: list[int] | None = None,
                      instances: int = 1, max_batch_size: int = 64, max_queue_delay_us: int = cfg.MAX_QUEUE_DELAY_US,
                      threads: int = 0, latent_steps: int | None = None, warmup: bool = True) -> Path:
    """FOLDER/pdgan/{config.pbtxt, 1/model.py}: the Python-backend model that runs an Engine per instance."""
    device_kind = "KIND_GPU" if device == "cuda" else "KIND_CPU"
    config = {"name": cfg.MODEL_NAME, "backend": "python", "max_batch_size": max_batch_size,
              **cfg.pdgan_io(resolution, nz),
              "dynamic_batching": cfg.dynamic_batching(max_queue_delay_us),
              "instance_group": cfg.instance_group(instances, device_kind, gpus),
              "model_warmup": cfg.warmup(warmup_batches(device, max_batch_size), {cfg.SEED: ("TYPE_INT64", [1])})
              if warmup else None,
              "parameters": cfg.parameters({
                  "pdgan.backend": backend,
                  "pdgan.dtype": dtype or "", "pdgan.device": device, "pdgan.threads": threads,
                  "pdgan.max_batch_size": max_batch_size, "pdgan.latent_steps": latent_steps or ""})}
    model = Path(folder) / cfg.MODEL_NAME
    cfg.write_config(model, config)
    (model / "1" / "model.py").write_text(ENGINE_MODEL_PY)
    (model / "1" / SETTINGS).write_text(json.dumps({"checkpoint": str(Path(checkpoint).resolve())}) + "\n")
    return Path(folder)


def warmup_batches(device: str, max_batch_size: int) -> list[int]:
    """Warm-up batch sizes at load: 1 on the CPU (nothing to build per shape); 1 and the largest batch on a GPU,
    where the CUDA-graph and TensorRT backends build per batch shape."""
    return [1, max_batch_size] if device == "cuda" else [1]


def default_max_batch(resolution: int, device: str, gpus: list[int] | None = None) -> int:
    """Triton's max_batch_size when none is given: the Engine's own default batch for the device
    (optimize.default_batch_size: 64 images at 32x32 on the CPU; on a GPU scaled by the first serving GPU's memory)."""
    return default_batch_size(resolution, torch.device(f"cuda:{gpus[0]}" if gpus else "cuda") if device == "cuda"
                              else torch.device("cpu"))


def resolve_serving_device(device: str) -> tuple[str, list[int] | None]:
    """--device auto|cpu|cuda|cuda:N -> ("cpu", None) or ("cuda", [N] or None: every visible GPU)."""
    from ..device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu":
        return "cpu", None
    return "cuda", None if device in ("auto", "cuda") else [dev.index or 0]


def serve(model: str | None = None, *, repository: str | Path | None = None, backend: str = "auto",
          dtype: str | None = None, device: str = "auto", max_batch_size: int | None = None, instances: int = 1,
          host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
          max_queue_delay_us: int = cfg.MAX_QUEUE_DELAY_US, threads: int | None = None, latent_steps: int | None = None,
          warmup: bool = True, revision: str | None = None, verbose: bool = False, ready_timeout: float = 600.0) -> int:
    """Serve `model` (bundled name, checkpoint, model folder, Hub id) as Triton model `pdgan`, or every model of an
    exported `repository` (pdgan-export --format triton), on `host`, until SIGTERM/SIGINT. Returns 0 after a clean
    stop; ServeError when the server or a model instance dies."""
    if (model is None) == (repository is None):
        raise ServeError("give a MODEL (bundled name, checkpoint or folder) or --repository REPO, not both")
    if repository is not None:
        repository = check_repository(repository)
    if host in WILDCARDS:
        log.warning(f"warning: --host {host or '0.0.0.0'} listens on every network interface; Triton 2.51 must not "
                    "face untrusted clients (docs/deployment.md, 'Serving security'): put it behind a reverse "
                    "proxy that authenticates clients")
    find_tritonserver()  # no server or an unfit Python: say so before loading anything
    with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIXES[1]}{os.getpid()}-") as tmp:
        if repository is not None:
            repo, what = repository, f"repository {repository}"
        else:
            repo, what = _engine_repo(tmp, model, backend, dtype, device, max_batch_size, instances,
                                      max_queue_delay_us, threads, latent_steps, warmup, revision)
        return _run(repo, what, host, http_port, grpc_port, metrics_port, verbose, ready_timeout)


def check_repository(repository: str | Path) -> Path:
    """REPO, once it is a folder with */config.pbtxt whose every entry is a regular file or a folder (a symlink: its
    target; symlinked folders are not entered) and whose every model runs on what this Triton has (SERVED_RUNTIMES);
    ServeError naming the first that is not (a FIFO would block Triton's start, a device feed it forever; an
    onnxruntime_onnx model would fail only once the server loads it)."""
    repo = Path(repository)
    if not repo.is_dir():
        raise ServeError(f"--repository {repo} is not a folder; write a repository with pdgan-export MODEL --format "
                         "triton --out REPO")
    for folder, dirs, files in os.walk(repo):
        for name in files + dirs:
            path = Path(folder) / name
            try:
                mode = os.stat(path).st_mode
            except OSError as e:
                raise ServeError(f"--repository {repo}: cannot read {path} ({e.strerror}; a dangling symlink?)") \
                    from None
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise ServeError(f"--repository {repo}: {path} is not a regular file (a FIFO, socket or device); "
                                 "remove it")
    configs = sorted(p for p in repo.glob("*/config.pbtxt") if p.is_file())
    if not configs:
        raise ServeError(f"{repo} is not a Triton model repository (no */config.pbtxt); write one with "
                         "pdgan-export MODEL --format triton --triton-backend python --out REPO")
    for config in configs:
        found = RUNTIME_FIELD.search(config.read_text(errors="replace"))
        field, runtime = (found[1], found[2]) if found else ("platform", "(none given)")
        if runtime not in SERVED_RUNTIMES:
            raise ServeError(f"--repository {repo}: model {config.parent.name} runs on {field} {runtime}, which "
                             "pdgan-serve's Triton (nvidia-pytriton: Python backend only) cannot load; re-export "
                             "with pdgan-export MODEL --format triton --triton-backend python --out REPO, or serve "
                             "REPO in NVIDIA's Triton container")
    return repo


def _engine_repo(tmp, model, backend, dtype, device, max_batch_size, instances, max_queue_delay_us, threads,
                 latent_steps, warmup, revision) -> tuple[Path, str]:
    from ..backends import check_name
    from ..checkpoint import load_checkpoint
    from ..hub import resolve_model

    path = resolve_model(model, revision)
    network = load_checkpoint(path, device="cpu")  # checks the file before the server starts
    if not network.can_draw_z_T:
        raise ServeError(f"{model}: this checkpoint has no latent denoiser, so it cannot draw images from seeds alone")
    kind, gpus = resolve_serving_device(device)
    resolve_dtype(dtype, torch.device(kind))  # a wrong --dtype fails here, not in the server
    if backend != "auto":
        check_name(backend)
        reason = Engine.backends(kind).get(backend)
        if reason:
            raise ServeError(f"backend {backend!r} cannot run on {kind}: {reason}")
    r, nz = network.config.resolution, network.config.generator.nz
    batch = max_batch_size or default_max_batch(r, kind, gpus)
    if threads is None:  # the CPU's cores shared by the instances
        threads = max(1, (os.cpu_count() or 1) // instances) if kind == "cpu" else 0
    engine_repository(tmp, path, resolution=r, nz=nz, backend=backend, dtype=dtype, device=kind, gpus=gpus,
                      instances=instances, max_batch_size=batch, max_queue_delay_us=max_queue_delay_us,
                      threads=threads, latent_steps=latent_steps, warmup=warmup)
    what = (f"model pdgan = {model} ({network.config.preset}, {r}x{r}), backend {backend}, {kind}, "
            f"max batch {batch}, {instances} instance{'s' if instances != 1 else ''}")
    return Path(tmp), what


def _run(repo: Path, what: str, host: str, http_port: int, grpc_port: int, metrics_port: int, verbose: bool,
         ready_timeout: float) -> int:
    def show(line: str) -> None:  # the model's own lines; the server's errors; everything with -v
        if line.startswith("pdgan-serve: "):
            log.info(line.removeprefix("pdgan-serve: "))
        elif verbose or (line[:1] == "E" and not HARMLESS.search(line)):
            log.warning(line)

    from .guard import RequestGuard
    from .process import free_ports

    try:  # clients' HTTP reaches Triton through the guard (guard.py: Triton 2.51 cannot cap request sizes)
        guard = RequestGuard(host, http_port, upstream_port=free_ports(1)[0])
    except OSError as e:
        raise ServeError(f"cannot listen on {host} port {http_port} ({e.strerror or e}); is another server running "
                         "there? Choose another --http-port") from None
    server = TritonServer(repo, host=host, http_host="127.0.0.1", http_port=guard.upstream_port, grpc_port=grpc_port,
                          metrics_port=metrics_port, verbose=1 if verbose else 0, on_line=show)
    stopping = []

    def on_signal(signum, _frame) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info(f"starting NVIDIA Triton Inference Server: {what}")
        guard.start()
        server.start()
        server.wait_ready(ready_timeout)
        stubs = server.stubs()
        at = f"[{host}]" if ":" in host else host or "0.0.0.0"
        log.info(f"ready: HTTP http://{at}:{http_port} (GET /v2/health/ready, POST /v2/models/pdgan/infer), "
                 f"gRPC {at}:{grpc_port}, metrics http://{at}:{metrics_port}/metrics; {len(stubs)} model "
                 f"instance{'s' if len(stubs) != 1 else ''}; stop with Ctrl-C or SIGTERM")
        code = server.watch(stubs)
        if not stopping:
            raise ServeError(f"tritonserver exited with status {code}: {server.failure()}")
    except KeyboardInterrupt:
        if not stopping:
            raise
        log.info(f"{signal.Signals(stopping[0]).name}: stopping the server")
    finally:
        for s in previous:  # a second Ctrl-C must not cut the shutdown short
            signal.signal(s, signal.SIG_IGN)
        try:
            guard.stop()  # first: its kept-alive connections to Triton would hold Triton's graceful stop
            server.stop()
        finally:  # the caller's handlers come back even when a stop fails
            for s, handler in previous.items():
                signal.signal(s, handler)
    log.info("stopped")
    return 0


__all__ = ["serve", "engine_repository", "ServeError", "TritonServer", "PDGANError"]
