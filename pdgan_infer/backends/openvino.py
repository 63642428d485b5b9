"""OpenVINO as a peer of the pdgan backends: the project's exported sampler graph (the float32 ONNX
file the `onnxruntime` backend runs, `pdgan_infer.export.cache.cached_onnx`) compiled by OpenVINO's CPU plugin.

    sampler = OpenVinoSampler(model, dtype=torch.bfloat16)   # extra: pip install 'pdgan[openvino]'
    x0 = sampler(x_T, z_T, z, eps)                           # the graph's batch-first inputs; float32 out

`dtype` is OpenVINO's inference precision (`INFERENCE_PRECISION_HINT`) over the same float32 graph:
float32 (f32) or bfloat16 (bf16, CPUs that list BF16 in their capabilities). It is always set
explicitly: on CPUs with avx512_bf16 or AMX, OpenVINO's CPU default is bf16, which would make an
"fp32" row a bf16 one. The CPU plugin runs with `threads` inference threads (default:
torch.get_num_threads(), so that rows of one pdgan-bench run compare like for like), one stream and
the LATENCY hint (one request at a time, as the other backends). It is a registered peer backend,
`Engine(model, backend="openvino", dtype=...)`, which `backend="auto"` never picks: pdgan-bench compares it.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch

from ..export.cache import cached_onnx
from ..networks import PDGAN
from .base import BackendUnavailable
from .exported import ExportedRunner, check_model

INSTALL = "pip install 'pdgan[openvino]'"
PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}  # torch dtype name -> openvino element type name


def probe(device: torch.device, dtype: str = "float32") -> str | None:
    """None when OpenVINO can run the sampler graph on `device` in `dtype`, else why not (with the fix)."""
    for module, role in (("openvino", ""), ("onnx", " (it exports the graph OpenVINO reads)")):
        if importlib.util.find_spec(module) is None:
            return f"{module}{role} is not installed; install it with: {INSTALL}"
    if torch.device(device).type != "cpu":
        return "the openvino peer row runs on the CPU only; use --device cpu"
    if dtype not in PRECISIONS:
        return f"openvino runs the graph at {' or '.join(PRECISIONS)} inference precision, not {dtype}"
    return None


def _require(device: torch.device, dtype: str):
    why = probe(device, dtype)
    if why:
        raise BackendUnavailable(why)
    import openvino
    return openvino


def _dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).replace("torch.", "")


class OpenVinoSampler:
    """The exported float32 sampler graph compiled by OpenVINO for the CPU (see the module doc)."""

    backend = "openvino"

    def __init__(self, model: PDGAN, device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32,
                 cache_dir: str | os.PathLike | None = None, threads: int | None = None):
        check_model(model)
        self.device, self.dtype = torch.device(device), _dtype_name(dtype)
        ov = _require(self.device, self.dtype)
        import openvino.properties as props
        import openvino.properties.hint as hints

        core = ov.Core()
        precision = getattr(ov.Type, PRECISIONS[self.dtype])
        if self.dtype == "bfloat16" and "BF16" not in core.get_property("CPU", props.device.capabilities):
            raise BackendUnavailable("this CPU has no bf16 support that OpenVINO uses (no BF16 among "
                                     "the CPU device's capabilities); use openvino:float32")
        self.onnx_path, self.weights_sha256 = cached_onnx(model, "float32", cache_dir)
        self.threads = threads or torch.get_num_threads()
        config = {hints.inference_precision: precision, hints.performance_mode: hints.PerformanceMode.LATENCY,
                  props.inference_num_threads: self.threads, props.num_streams: 1}
        self.compiled = core.compile_model(core.read_model(str(self.onnx_path)), "CPU", config)
        self.inference_precision = self.compiled.get_property(hints.inference_precision).get_type_name()
        # an input port can carry several tensor names (ONNX import adds the graph's internal ones)
        self.input_names = [next(n for n in ("x_T", "z_T", "z", "eps") if n in port.get_names())
                            for port in self.compiled.inputs]
        self.request = self.compiled.create_infer_request()

    def __call__(self, x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        given = {"x_T": x_T, "z_T": z_T, "z": z, "eps": eps}
        feed = [np.ascontiguousarray(given[k].detach().to("cpu", torch.float32).numpy()) for k in self.input_names]
        out = self.request.infer(feed)[self.compiled.output(0)]
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True)).to(x_T.device)

    def __repr__(self) -> str:
        return (f"OpenVinoSampler({self.onnx_path.name}, inference_precision={self.inference_precision}, "
                f"threads={self.threads})")


class OpenVinoRunner(ExportedRunner):
    """`OpenVinoSampler` as a `Runner` (`runner(x_T, z_T, z, eps) -> x0`): the Engine's `openvino` backend."""

    name = "openvino"
    sampler_type = OpenVinoSampler
