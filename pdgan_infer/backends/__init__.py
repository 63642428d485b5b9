"""The engine's backends: thin adapters (`Runner`s) over the same T-step sampler.

    name          what runs                                               needs
    torch         the unmodified generator, `sampler.sample` (reference)  -
    optimized     optimize.FastGenerator (merged GEMMs, channels-last,    -
                  fast FIR, reduced precision; CUDA graph on GPU)
    compile       optimized + torch.compile                               a C++ compiler (CPU) / triton (CUDA)
    triton        optimized + Triton AdaGN / posterior kernels            triton + CUDA (CPU: TRITON_INTERPRET=1)
    native        optimized + csrc C++ / CUDA kernels (CPU float32:       the built extension
                  Winograd F(4x4, 3x3) 3x3 convolutions)
    onnxruntime   exported ONNX graph of the whole sampler                pip install 'pdgan[onnx]' (CUDA: [gpu])
    tensorrt      TensorRT engine of the whole sampler                    pip install 'pdgan[gpu]', CUDA
    openvino      the exported ONNX sampler graph compiled by OpenVINO's  pip install 'pdgan[openvino]', CPU
                  CPU plugin (a peer runtime for comparison)

`probe(name, device)` says why a backend cannot run (None when it can), `create` builds one, and
`AUTO_ORDER` is the order `backend="auto"` tries, fastest first (CPU: measured on the cifar10
preset, see the engine's docstring; CUDA: the expected order, to be settled by `make gpu-check`).
The exported backends are never picked by "auto": their first use exports ONNX and (TensorRT) builds
an engine for minutes, and neither has run on a GPU yet; ask for them by name. `openvino` is another
project's runtime over pdgan's exported graph, registered so that pdgan-bench compares it like any
backend (`Engine(model, backend="openvino", dtype="bfloat16")`); it is never picked by "auto" either.

ONNX Runtime: the `onnx` extra installs the CPU wheel `onnxruntime`, the `gpu` extra the CUDA wheel
`onnxruntime-gpu`. Install one of them, never both: the two wheels share the module name and the
CPU one hides the CUDA provider (microsoft/onnxruntime#26996); the probe reports that case.
"""
from __future__ import annotations

import importlib
import importlib.util
import shutil

import torch

from ..deprecation import renamed_keywords
from .base import BackendUnavailable, Runner, chain

__all__ = ["BACKENDS", "AUTO_ORDER", "OPTIONS", "RENAMED_OPTIONS", "renamed_options", "BackendUnavailable", "Runner",
           "chain", "probe", "probe_all", "create", "check_options"]

BACKENDS = ("torch", "optimized", "compile", "triton", "native", "onnxruntime", "tensorrt", "openvino")

# `backend="auto"`: the first of these that probes available (and builds) on the device.
AUTO_ORDER = {
    "cpu": ("native", "optimized", "torch"),
    "cuda": ("native", "triton", "optimized", "torch"),
}

# Options `create` (and Engine(..., **options)) passes on, by backend; anything else is a TypeError.
# export_cache_dir: where the exported ONNX graphs (and TensorRT engines) are cached (default: pdgan's cache,
# `hub.cache_dir()`); not the Hugging Face cache, which is `Engine.from_pretrained(..., cache_dir=)`.
OPTIONS = {"cuda_graph": "optimized/compile/triton/native", "opts": "optimized/compile/triton/native",
           "export_cache_dir": "onnxruntime/tensorrt/openvino", "batch_size": "tensorrt (the Engine passes its own)"}
# Old option names (old -> new), accepted with a DeprecationWarning for one release.
RENAMED_OPTIONS = {"cache_dir": "export_cache_dir"}


def renamed_options(options: dict, stacklevel: int = 4) -> dict:
    """`options` with the old names of `RENAMED_OPTIONS` under their new names (a DeprecationWarning each)."""
    return renamed_keywords(options, RENAMED_OPTIONS, "backend options", stacklevel)


def check_options(options: dict, engine_keywords: tuple[str, ...] = ()) -> None:
    """TypeError naming the valid options when `options` has a name no backend takes (a misspelt
    keyword such as `bach_size` would otherwise be ignored)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        valid = ", ".join(f"{k} ({v})" for k, v in OPTIONS.items() if k != "batch_size")
        own = f"; the Engine's own: {', '.join(engine_keywords)}" if engine_keywords else ""
        raise TypeError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                        f"backend options are {valid}{own}")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def probe(name: str, device: torch.device) -> str | None:
    """None when backend `name` can run on `device`; otherwise the reason, naming the fix."""
    check_name(name)
    cuda = device.type == "cuda"
    if device.type not in ("cpu", "cuda"):
        return f"device type {device.type!r} is not supported; use 'cpu' or 'cuda'"
    if cuda and not torch.cuda.is_available():
        return "CUDA is not available here; use device='cpu'"
    if name in ("torch", "optimized"):
        return None
    if name == "compile":
        if cuda:
            return None if _has("triton") else "torch.compile on CUDA needs triton: pip install 'pdgan[triton]'"
        if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return "torch.compile on the CPU needs a C++ compiler (g++ or clang++); or use backend 'optimized'"
        return None
    if name == "triton":
        if not _has("triton"):
            return "needs triton: pip install 'pdgan[triton]'"
        from ..kernels import _triton
        if not cuda and not _triton.interpreting():
            return ("Triton kernels need a CUDA GPU (on the CPU only the slow interpreter, "
                    "TRITON_INTERPRET=1); use backend 'native' or 'optimized' on the CPU")
        return None if _triton.available() else "Triton cannot run here; use backend 'optimized'"
    if name == "native":
        if not _has("pdgan_infer.kernels.native"):
            return "the C++/CUDA extension loader pdgan_infer.kernels.native is not in this install; " \
                   "use backend 'optimized'"
        try:
            native = importlib.import_module("pdgan_infer.kernels.native")
            if not native.available(device):
                return f"{native.unavailable_reason(device)} (or use backend 'optimized')"
        except (ImportError, OSError, RuntimeError) as e:  # a broken build must not break the other probes
            return f"the native extension failed to load ({type(e).__name__}: {e}); use backend 'optimized'"
        return None
    if name == "onnxruntime":
        if not (_has("onnx") and _has("onnxruntime")):
            return "needs onnx and onnxruntime: pip install 'pdgan[onnx]'"
        if not _has("pdgan_infer.export.cache"):
            return "the ONNX exporter pdgan_infer.export.cache is not in this install; use backend 'optimized'"
        if cuda:
            clash = onnxruntime_wheel_clash()
            if clash:
                return clash
            import onnxruntime
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return "onnxruntime has no CUDA provider here: pip install 'pdgan[gpu]' (onnxruntime-gpu)"
        return None
    if name == "openvino":
        from .openvino import probe as probe_openvino
        return probe_openvino(device)
    # tensorrt
    if not cuda:
        return "TensorRT runs on CUDA GPUs only; use device='cuda', or backend 'native'/'optimized' on the CPU"
    if not _has("tensorrt"):
        return "needs TensorRT: pip install 'pdgan[gpu]'"
    if not _has("pdgan_infer.export.cache"):
        return "the exporter pdgan_infer.export.cache is not in this install; use backend 'native'"
    return None


def onnxruntime_wheel_clash() -> str | None:
    """The reason when both onnxruntime (CPU) and onnxruntime-gpu are installed, else None."""
    from importlib import metadata
    installed = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            installed.append(dist)
        except metadata.PackageNotFoundError:
            pass
    if len(installed) < 2:
        return None
    return ("both onnxruntime and onnxruntime-gpu are installed, and the CPU wheel hides the CUDA provider: "
            "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu "
            "(install the 'gpu' extra without the 'onnx' extra)")


def probe_all(device: torch.device) -> dict[str, str | None]:
    """{backend: None if it can run on `device`, else why not}."""
    return {name: probe(name, device) for name in BACKENDS}


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {', '.join(BACKENDS)} or 'auto'; "
                        f"got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or 'auto'")
    return name


def create(name: str, model, device: torch.device, dtype: torch.dtype, **options) -> Runner:
    """Build backend `name` for `model` (already on `device`). Raises BackendUnavailable naming the
    fix when it cannot run here. `options`: `cuda_graph` (optimized/compile/triton/native),
    `opts` (an `optimize.Optimizations`), `export_cache_dir` (onnxruntime/tensorrt/openvino; its old name
    `cache_dir` warns), `batch_size` (tensorrt: the batch its engine is built and tuned for). An unknown option
    raises TypeError."""
    options = renamed_options(options)
    check_options(options)
    reason = probe(name, device)
    if reason is not None:
        raise BackendUnavailable(f"backend {name!r} is unavailable on {device}: {reason}")
    if name == "torch":
        from .eager import TorchRunner
        return TorchRunner(model, device, dtype)
    if name in ("onnxruntime", "tensorrt", "openvino"):
        from .onnxruntime import OnnxRuntimeRunner
        from .openvino import OpenVinoRunner
        from .tensorrt import TensorRTRunner
        cls = {"onnxruntime": OnnxRuntimeRunner, "tensorrt": TensorRTRunner, "openvino": OpenVinoRunner}[name]
        extra = {"batch_size": options["batch_size"]} if name == "tensorrt" and options.get("batch_size") else {}
        return cls(model, device, dtype, cache_dir=options.get("export_cache_dir"), **extra)
    from .compiled import CompileRunner
    from .eager import OptimizedRunner
    from .fused import NativeRunner, TritonRunner
    cls = {"optimized": OptimizedRunner, "compile": CompileRunner, "triton": TritonRunner,
           "native": NativeRunner}[name]
    return cls(model, device, dtype, opts=options.get("opts"), cuda_graph=options.get("cuda_graph"))
