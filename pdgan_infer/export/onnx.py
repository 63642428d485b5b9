"""ONNX export of the generator step and of the whole T-step sampler, and an ONNX Runtime runner.

Two graphs (`graph=`):

* "step":    G(x_t, z, t) -> x0.   x_t (N, C, R, R), z (N, nz), t (N,) float steps in 1..T.
* "sampler": the T-step chain of `sampler.sample`, unrolled: inputs x_T (N, C, R, R), z_T (N, nz),
             z (N, T-1, nz), eps (N, T-1, C, R, R), batch first like every other input (`graph_inputs` makes
             them from `sampler.SamplerNoise`, whose z and eps are step-first); output x0.
             All randomness is an input: TensorRT ignores RandomNormal seeds, and explicit inputs make
             every backend comparable bit for bit with the torch reference. z_T is an input too, so
             the export needs no latent denoiser (generation does: z_T comes from the latent sampler).

The batch axis (axis 0 of every input and of x0) is dynamic. Graph inputs and outputs are float32 for both
variants; the float16 variant runs the generator in float16 between explicit Casts at its boundary (edm style),
while the posterior step x_{t-1} = c1 x0 + c2 x_t + sigma eps and the GroupNorm statistics stay in float32.

Exporter (`write_graph`, also used for the Triton serving graph): torch's dynamo exporter
(`torch.onnx.export(..., dynamo=True)`, torch.export + onnxscript), opset 18 by default (`opset=`,
`pdgan-export --opset`: 18..23). 18 because the exporter's ONNX functions (onnxscript's torchlib) are written for
opset 18: a lower opset would go through ONNX's version converter, which the exporter itself warns may fail.
It needs the `onnxscript` package (in the onnx, gpu, tensorrt, openvino and serve extras). Without it, or when the
dynamo exporter raises, the file is written by the TorchScript exporter (`dynamo=False`, deprecated in torch,
opsets 14..20) and a warning on the "pdgan" logger says why. `pdgan.exporter` records which one wrote the file.
Three lowerings are pdgan's own in both exporters (`_translation_table` for dynamo, `_symbolics` for TorchScript):

* aten::group_norm -> Reshape (N, G, -1) -> [Cast f32] -> InstanceNormalization(ones, zeros) -> [Cast]
  -> Reshape back -> Mul/Add for an affine GroupNorm. The non-affine normalisation is the one ONNX op
  every runtime has (TensorRT parses InstanceNormalization of rank 3 with constant scale/bias); AdaGN's
  per-sample scale and shift stay explicit Mul/Add after it. We do not emit GroupNormalization: its
  opset-18 form has per-group scale/bias and opset 21 per-channel, and TensorRT rejects the latter.
  The stock lowering is the same but keeps float16 statistics.
* aten::addcmul (AdaGN's beta + h * gamma) in the dtype of its inputs: the stock TorchScript lowering upcasts
  float16 inputs to float32 and returns float32, which makes the float16 graph ill-typed.
* aten::scaled_dot_product_attention (dynamo only): softmax(q sqrt(s) (k sqrt(s))^T) v for the attention
  block's 3-D (N, HW, C) inputs, the TorchScript exporter's form; torchlib's lowering takes 4-D inputs only.

Every file records in `metadata_props`: pdgan.format, pdgan.format_version (FORMAT_VERSION: files of another
version are refused with "re-export it"), pdgan.graph, pdgan.dtype, pdgan.weights_sha256 (hash of the
generator's state dict), pdgan.checkpoint_sha256 (the .safetensors file, when exported from one), pdgan.config
(JSON), pdgan.T, pdgan.latent_slot (how the model feeds z_T: for "all", pass z_T as every z of the sampler graph;
for "none", z_T is standard normal), pdgan.opset, pdgan.exporter (dynamo or torchscript), pdgan.version,
pdgan.torch.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_path, weights_sha256  # noqa: F401  (weights_sha256: re-exported)
from ..errors import PDGANError
from ..networks import PDGAN
from ..networks.layers import AdaGNAct
from ..sampler import SamplerNoise, noise_for, sample
from ..schedule import Schedule
from ..seeds import image_seeds

OPSET = 18  # the default opset (module docstring: why 18)
OPSETS = {"dynamo": (18, 23), "torchscript": (14, 20)}  # the opsets each exporter writes (inclusive)
EXPORTERS = tuple(OPSETS)
FORMAT = "pdgan-onnx"
FORMAT_VERSION = "2"  # 2: batch-first sampler inputs z (N, T-1, nz), eps (N, T-1, C, R, R); bump on layout changes
GRAPHS = ("step", "sampler")
INPUTS = {"step": ("x_t", "z", "t"), "sampler": ("x_T", "z_T", "z", "eps")}
OUTPUT = "x0"
DTYPES = {"float32": torch.float32, "float16": torch.float16}
# Verification tolerances against the float32 torch reference (outputs are in [-1, 1]; one 8-bit level
# is 2/255 = 7.8e-3): float32: |ort - torch| <= FP32_ATOL (measured on the sampler graph, batch 5:
# digits 5e-6, cifar10 9e-6, celebahq256 8e-5: deeper, 256^2, accumulation order); float16 (the
# flash-attention rule): |ort16 - ref32| <= 2 * |torch16 - ref32| + FP16_ATOL.
FP32_ATOL = 5e-4
FP16_ATOL = 2e-3
CUDA_PROVIDER = "CUDAExecutionProvider"


class OnnxLoadError(PDGANError, ValueError):
    """An ONNX file is missing, corrupt or not a pdgan export; the message is one line."""


log = logging.getLogger("pdgan")


def require(module: str, extra: str = "onnx"):
    """Import an optional dependency or raise ImportError naming the extra that provides it."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{module} is not installed; install it with: pip install 'pdgan[{extra}]'")
    return __import__(module)


def dtype_name(dtype: torch.dtype | str) -> str:
    name = str(dtype).replace("torch.", "")
    name = {"fp32": "float32", "fp16": "float16", "half": "float16", "float": "float32"}.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"the exported graphs run in float32 or float16, got {dtype!r}")
    return name


# --- the exported modules --------------------------------------------------------------------
def cpu_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` on the CPU whose tensors are copied straight to host memory: deep-copying a
    CUDA module first and moving it after would hold a second copy of every weight on the GPU."""
    memo: dict[int, object] = {}
    for p in module.parameters():
        memo[id(p)] = nn.Parameter(p.detach().to("cpu", copy=True), requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    return copy.deepcopy(module, memo)


class GeneratorStep(nn.Module):
    """G(x_t, z, t) -> x0 with float32 I/O and a private copy of the generator in `dtype`."""

    def __init__(self, generator: nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.generator = cpu_copy(generator).to(dtype=dtype).eval()
        self.dtype = dtype
        for m in self.generator.modules():  # export the torch AdaGN, never a fused kernel set on it
            if isinstance(m, AdaGNAct):
                m.kernel = None
        if dtype != torch.float32:  # the sinusoidal time embedding is float32 by construction
            self.generator.time_mlp.register_forward_pre_hook(lambda _, args: tuple(a.to(dtype) for a in args))

    def forward(self, x_t: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.generator(x_t.to(self.dtype), z.to(self.dtype), t).float()


class SamplerGraph(nn.Module):
    """`sampler.sample` with every noise an input, batch first: x_T, z_T, z (N, T-1, nz), eps (N, T-1, C, R, R)."""

    def __init__(self, generator: nn.Module, schedule: Schedule, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.step = GeneratorStep(generator, dtype)
        self.schedule = schedule

    def forward(self, x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        noise = SamplerNoise(x_T, z_T[:, :0], z.transpose(0, 1), eps.transpose(0, 1))
        return sample(self.step, self.schedule, z_T, noise)  # float32 posterior


def graph_module(model: PDGAN, graph: str, dtype: torch.dtype) -> nn.Module:
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    if graph == "step":
        return GeneratorStep(model.generator, dtype).eval()
    return SamplerGraph(model.generator, model.schedule, dtype).eval()


def graph_inputs(x_T: torch.Tensor, z_T: torch.Tensor, z: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
    """The sampler graph's inputs from `SamplerNoise`'s tensors (z (T-1, N, nz), eps (T-1, N, C, R, R)): z and eps
    batch first (views, not copies)."""
    return {"x_T": x_T, "z_T": z_T, "z": z.transpose(0, 1), "eps": eps.transpose(0, 1)}


def example_inputs(model: PDGAN, graph: str, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Explicit float32 inputs for a graph, one seed per image: the noises of `Engine.generate(n, seed)`
    (per-image seeds seed * 2**16 + i, `pdgan_infer.seeds`); z_T is the latent start noise."""
    noise = noise_for(model, image_seeds(seed, 0, n))
    if graph == "step":
        g = torch.Generator().manual_seed(seed + 10_000)
        t = torch.randint(1, model.schedule.T + 1, (n,), generator=g).float()
        return {"x_t": noise.x_T, "z": noise.z_T_noise, "t": t}
    return {k: v.contiguous() for k, v in graph_inputs(noise.x_T, noise.z_T_noise, noise.z, noise.eps).items()}


# --- lowering overrides -------------------------------------------------------------------------
_ONNX_FLOAT = {"Float": 1, "Half": 10, "BFloat16": 16}


def _group_norm_symbolic(g, x, num_groups, weight, bias, eps, cudnn_enabled):
    from torch.onnx import symbolic_helper as sh
    num_groups, eps = sh._get_const(num_groups, "i", "num_groups"), sh._get_const(eps, "f", "eps")
    dtype = x.type().scalarType()
    h = g.op("Reshape", x, g.op("Constant", value_t=torch.tensor([0, num_groups, -1])))
    if dtype != "Float":
        h = g.op("Cast", h, to_i=_ONNX_FLOAT["Float"])
    h = g.op("InstanceNormalization", h, g.op("Constant", value_t=torch.ones(num_groups)),
             g.op("Constant", value_t=torch.zeros(num_groups)), epsilon_f=eps)
    if dtype != "Float":
        h = g.op("Cast", h, to_i=_ONNX_FLOAT[dtype])
    h = g.op("Reshape", h, g.op("Shape", x))
    per_channel = g.op("Constant", value_t=torch.tensor([-1, 1, 1]))
    if not sh._is_none(weight):
        h = g.op("Mul", h, g.op("Reshape", weight, per_channel))
    if not sh._is_none(bias):
        h = g.op("Add", h, g.op("Reshape", bias, per_channel))
    return h


def _addcmul_symbolic(g, self, tensor1, tensor2, value=None):
    from torch.onnx import symbolic_helper as sh
    v = 1.0 if value is None else sh._maybe_get_const(value, "f")
    prod = g.op("Mul", tensor1, tensor2)
    if not isinstance(v, float | int):
        raise RuntimeError("addcmul with a tensor `value` is not supported by the pdgan exporter")
    if v != 1:
        prod = g.op("Mul", prod, g.op("Constant", value_t=torch.tensor(v, dtype=_torch_dtype(self))))
    return g.op("Add", self, prod)


def _torch_dtype(value) -> torch.dtype:
    return {"Float": torch.float32, "Half": torch.float16, "BFloat16": torch.bfloat16}.get(
        value.type().scalarType(), torch.float32)


@contextlib.contextmanager
def _symbolics(opset: int):
    """Register our TorchScript lowerings at `opset` for the duration of one export, then restore the stock ones."""
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic
    ops = {"aten::group_norm": _group_norm_symbolic, "aten::addcmul": _addcmul_symbolic}
    for name, fn in ops.items():
        register_custom_op_symbolic(name, fn, opset)
    try:
        yield
    finally:
        for name in ops:
            unregister_custom_op_symbolic(name, opset)


# The same lowerings for the dynamo exporter: onnxscript functions traced at translation time (their Python `if`s
# read static facts: dtypes, ranks, attributes). onnxscript is imported when they run, never at import.
def _group_norm_onnx(x, num_groups: int, weight=None, bias=None, eps: float = 1e-5, cudnn_enabled: bool = True):
    import onnx_ir as ir
    from onnxscript import opset18 as op
    h = op.Reshape(x, op.Constant(value_ints=[0, num_groups, -1]))
    upcast = x.dtype != ir.DataType.FLOAT  # float32 statistics for the float16 generator
    if upcast:
        h = op.Cast(h, to=ir.DataType.FLOAT)
    h = op.InstanceNormalization(h, op.Constant(value_floats=[1.0] * num_groups),
                                 op.Constant(value_floats=[0.0] * num_groups), epsilon=eps)
    if upcast:
        h = op.Cast(h, to=x.dtype)
    h = op.Reshape(h, op.Shape(x))
    per_channel = op.Constant(value_ints=[-1, 1, 1])
    if weight is not None:
        h = op.Mul(h, op.Reshape(weight, per_channel))
    if bias is not None:
        h = op.Add(h, op.Reshape(bias, per_channel))
    return h


def _addcmul_onnx(self, tensor1, tensor2, value: float = 1.0):
    from onnxscript import opset18 as op
    prod = op.Mul(tensor1, tensor2)
    if value != 1:
        prod = op.Mul(prod, op.CastLike(value, self))
    return op.Add(self, prod)


def _attention_onnx(query, key, value, attn_mask=None, dropout_p: float = 0.0, is_causal: bool = False,
                    scale: float | None = None, enable_gqa: bool = False):
    from onnxscript import opset18 as op
    if attn_mask is not None or is_causal or dropout_p != 0.0 or enable_gqa:
        raise NotImplementedError("pdgan's attention lowering handles unmasked attention without dropout only")
    rank, width = len(query.shape), query.shape[-1]
    root = op.CastLike(math.sqrt(1.0 / math.sqrt(width) if scale is None else scale), query)
    perm = [*range(rank - 2), rank - 1, rank - 2]
    weights = op.Softmax(op.MatMul(op.Mul(query, root), op.Mul(op.Transpose(key, perm=perm), root)), axis=-1)
    return op.MatMul(weights, value)


def _translation_table() -> dict:
    aten = torch.ops.aten
    return {aten.group_norm.default: _group_norm_onnx, aten.addcmul.default: _addcmul_onnx,
            aten.scaled_dot_product_attention.default: _attention_onnx}


def dynamo_unavailable() -> str | None:
    """Why the dynamo exporter cannot run here (with the fix), or None."""
    for module in ("onnxscript", "onnx"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install {module}, or pip install 'pdgan[onnx]')"
    return None


def preferred_exporter() -> str:
    """The exporter `write_graph` tries: dynamo when its dependencies are installed, else torchscript."""
    return "dynamo" if dynamo_unavailable() is None else "torchscript"


class OpsetError(PDGANError, ValueError):
    """An opset the exporter cannot write; the message names the range."""


def check_opset(opset: int, exporter: str | None = None) -> int:
    """`opset` when `exporter` (default: `preferred_exporter()`) writes it, else OpsetError naming the range."""
    exporter = exporter or preferred_exporter()
    low, high = OPSETS[exporter]
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        others = "; ".join(f"{k}: {a}..{b}" for k, (a, b) in OPSETS.items() if k != exporter)
        raise OpsetError(f"opset {opset!r} is outside {low}..{high}, the opsets the {exporter} exporter writes "
                         f"({others}); pick one in {low}..{high} (default {OPSET})")
    return opset


def write_graph(module: nn.Module, inputs: dict[str, torch.Tensor], path: str | os.PathLike, output: str,
                opset: int = OPSET) -> str:
    """Export `module(*inputs.values())` to PATH (not atomically: callers write to a temporary file) with the inputs
    named after `inputs`' keys, one output named `output`, and a dynamic batch on axis 0 of all of them. The dynamo
    exporter first; the TorchScript exporter when onnxscript is missing or the dynamo exporter raises, with a
    warning that says why (OpsetError when the fallback cannot write `opset`). Returns the exporter that wrote it."""
    check_opset(opset)
    reason = dynamo_unavailable()
    if reason is None:
        try:
            _export_dynamo(module, inputs, str(path), output, opset)
            return "dynamo"
        except Exception as e:  # noqa: BLE001 - whatever torch.export / the translation raises: fall back, say why
            reason = f"the dynamo exporter failed: {type(e).__name__}: {_short(e)}"
    low, high = OPSETS["torchscript"]
    if not low <= opset <= high:
        raise OpsetError(f"cannot write opset {opset}: {reason}; the TorchScript exporter writes {low}..{high}")
    log.warning("warning: exporting %s with the deprecated TorchScript exporter: %s", Path(path).name, reason)
    _export_torchscript(module, inputs, str(path), output, opset)
    return "torchscript"


class _TorchvisionNotes(logging.Filter):
    """Drops torch's "torchvision is not installed. Skipping torchvision::nms" log lines (four per export): pdgan
    has no torchvision operator to translate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")


@contextlib.contextmanager
def _without_torchvision_notes():
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    note = _TorchvisionNotes()
    registry.addFilter(note)
    try:
        yield
    finally:
        registry.removeFilter(note)


def _export_dynamo(module: nn.Module, inputs: dict[str, torch.Tensor], path: str, output: str, opset: int) -> None:
    names = list(inputs)
    with warnings.catch_warnings(), torch.no_grad(), _without_torchvision_notes():
        # known-harmless, emitted by torch itself on every export of ours: the dynamic axis is named "N" on each
        # input, which torch reports as "will not be used, since it shares the same shape constraints"
        warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used", category=UserWarning)
        # known-harmless, torch's own code warning about torch's own API while it deep-copies the exported program
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        torch.onnx.export(module, tuple(inputs.values()), path, dynamo=True, opset_version=opset, input_names=names,
                          output_names=[output], dynamic_shapes={k: {0: "N"} for k in names}, verbose=False,
                          custom_translation_table=_translation_table(), optimize=True, external_data=False)


def _export_torchscript(module: nn.Module, inputs: dict[str, torch.Tensor], path: str, output: str,
                        opset: int) -> None:
    with _symbolics(opset), warnings.catch_warnings(), torch.no_grad():
        # torch's "legacy TorchScript-based ONNX export" deprecation: write_graph has logged that this exporter runs,
        # and why; the tracer's own warnings stay visible
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        torch.onnx.export(module, tuple(inputs.values()), path, dynamo=False, opset_version=opset,
                          input_names=list(inputs), output_names=[output], do_constant_folding=True,
                          dynamic_axes={k: {0: "N"} for k in (*inputs, output)})


# --- export ----------------------------------------------------------------------------------
@dataclass
class ExportResult:
    path: Path
    graph: str
    dtype: str
    export_s: float
    weights_sha256: str
    max_abs_err: dict[int, float] = field(default_factory=dict)  # batch size -> max |onnxruntime - torch|
    tolerance: dict[int, float] = field(default_factory=dict)  # batch size -> allowed error
    ref_max_abs: dict[int, float] = field(default_factory=dict)  # batch size -> max |torch output|
    ok: bool = True
    written: bool = True  # False: the verification failed and `path` was left as it was
    exporter: str = "dynamo"  # which exporter wrote the file (EXPORTERS)
    opset: int = OPSET

    def summary(self) -> str:
        s = f"{self.path} ({self.graph}, {self.dtype}) exported in {self.export_s:.1f} s"
        for n, err in self.max_abs_err.items():
            s += f"; batch {n}: max |onnxruntime - torch| = {err:.2e} (tolerance {self.tolerance[n]:.1e})"
        return s


def export_onnx(model: PDGAN, path: str | os.PathLike, graph: str = "sampler",
                dtype: torch.dtype | str = torch.float32, checkpoint_sha256: str | None = None,
                verify: bool = True, verify_batches: tuple[int, ...] = (1, 5),
                extra_metadata: dict[str, str] | None = None, opset: int = OPSET) -> ExportResult:
    """Export `graph` ("step" or "sampler") of `model` to PATH (atomically) at `opset` (`write_graph`: the dynamo
    exporter, or the TorchScript one with a warning), check it with onnx.checker and, with `verify`, compare ONNX
    Runtime (CPU) with torch at `verify_batches`. The checks run on the temporary file: an export that fails them
    never replaces PATH (`result.ok` and `result.written` are False). OpsetError for an opset the exporter cannot
    write, before any work."""
    onnx = require("onnx")
    name = dtype_name(dtype)
    dtype = DTYPES[name]
    check_opset(opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = graph_module(model, graph, dtype)
    inputs = example_inputs(model, graph, 2)
    t0 = time.perf_counter()
    try:
        with atomic_path(path) as tmp_path:
            tmp = str(tmp_path)
            exporter = write_graph(module, inputs, tmp, OUTPUT, opset)
            proto = onnx.load(tmp)
            wsha = weights_sha256(model.generator)
            meta = {"pdgan.format": FORMAT, "pdgan.format_version": FORMAT_VERSION, "pdgan.graph": graph,
                    "pdgan.dtype": name, "pdgan.weights_sha256": wsha,
                    "pdgan.checkpoint_sha256": checkpoint_sha256 or "", "pdgan.config": model.config.to_json(),
                    "pdgan.T": str(model.schedule.T), "pdgan.latent_slot": model.latent_slot,
                    "pdgan.inputs": json.dumps(list(inputs)), **(extra_metadata or {})}
            set_metadata(proto, meta, exporter, f"PDGAN {graph} graph ({name}), see pdgan.* metadata")
            onnx.save(proto, tmp)
            onnx.checker.check_model(tmp, full_check=True)  # by path: also works for files > 2 GB
            result = ExportResult(path, graph, name, time.perf_counter() - t0, wsha, exporter=exporter,
                                  opset=file_opset(proto))
            if verify:  # the temporary file, before it replaces anything
                result.max_abs_err, result.tolerance, result.ref_max_abs = verify_against_torch(
                    OnnxRunner(tmp_path), model, graph, dtype, verify_batches)
                result.ok = all(result.max_abs_err[n] <= result.tolerance[n] for n in verify_batches)
                if not result.ok:
                    raise _Rejected
    except _Rejected:
        result.written = False  # `path` is untouched: a previous good export survives a failed one
    return result


def file_opset(proto) -> int:
    """The default-domain opset a ModelProto imports."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def set_metadata(proto, meta: dict[str, str], exporter: str, doc: str) -> None:
    """Replace `proto`'s metadata_props with `meta` plus what every pdgan graph records: pdgan.opset (the file's),
    pdgan.exporter, pdgan.version, pdgan.torch; set its producer and doc string. The dynamo exporter's per-node
    debugging metadata (Python stack traces, module names: 1.9 MB of the 8.4 MB digits sampler graph) is dropped."""
    meta = {**meta, "pdgan.opset": str(file_opset(proto)), "pdgan.exporter": exporter,
            "pdgan.version": _pdgan_version(), "pdgan.torch": torch.__version__}
    for node in proto.graph.node:
        del node.metadata_props[:]
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    proto.producer_name, proto.doc_string = "pdgan", doc


class _Rejected(Exception):
    """A verified export that failed its comparison: abort the atomic write."""


def verify_against_torch(runner: OnnxRunner, model: PDGAN, graph: str, dtype: torch.dtype,
                         batches: tuple[int, ...] = (1, 5), seed: int = 1234
                         ) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Per batch size n: max |onnxruntime - reference|, the tolerance, max |reference|, on explicit
    inputs. The reference is float32 eager torch: `sampler.sample` itself for the sampler graph."""
    errs, tols, scales = {}, {}, {}
    with torch.no_grad():
        g32 = GeneratorStep(model.generator, torch.float32)  # a float32 CPU copy
        same = graph_module(model, graph, dtype) if dtype != torch.float32 else None  # torch's own fp16
        for n in batches:
            inputs = example_inputs(model, graph, n, seed)
            if graph == "sampler":
                noise = SamplerNoise(inputs["x_T"], inputs["z_T"], inputs["z"].transpose(0, 1),
                                     inputs["eps"].transpose(0, 1))
                ref = sample(g32.generator, model.schedule, inputs["z_T"], noise)
            else:
                ref = g32(*inputs.values())
            errs[n] = float((runner(**inputs) - ref).abs().max())
            scales[n] = float(ref.abs().max())
            tols[n] = (FP32_ATOL if same is None
                       else 2.0 * float((same(*inputs.values()) - ref).abs().max()) + FP16_ATOL)
    return errs, tols, scales


def _pdgan_version() -> str:
    from .. import __version__
    return __version__


# --- loading and running ---------------------------------------------------------------------
def _short(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else type(e).__name__)


def load_onnx(path: str | os.PathLike):
    """The ModelProto of a pdgan export; OnnxLoadError (one line) when missing, corrupt or foreign."""
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise OnnxLoadError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - DecodeError, ValidationError, ...: never a protobuf traceback
        raise OnnxLoadError(f"{path} is not a valid ONNX model (truncated or corrupt? {type(e).__name__}: "
                            f"{_short(e)}); re-export it with pdgan-export") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("pdgan.format") != FORMAT:
        raise OnnxLoadError(f"{path} is an ONNX model but not a pdgan export (no pdgan.format metadata)")
    if meta.get("pdgan.format_version") != FORMAT_VERSION:
        raise OnnxLoadError(f"{path} was written by another pdgan version (pdgan-onnx format "
                            f"{meta.get('pdgan.format_version', '1')}, this one reads {FORMAT_VERSION}: batch-first "
                            "sampler inputs); re-export it with pdgan-export")
    return proto


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The pdgan.* metadata of an exported file (validated with `load_onnx`)."""
    return {p.key: p.value for p in load_onnx(path).metadata_props}


def providers_for(device: str | torch.device) -> list[str]:
    """ONNX Runtime execution providers for a torch device: CUDA when asked for and available."""
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    if torch.device(device).type == "cuda" and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRunner:
    """An ONNX Runtime session over an exported file. `runner(**inputs) -> x0` on torch tensors
    (float32 I/O); the result is on the device of the first input. `threads`: intra-op threads
    (default: torch.get_num_threads()). `providers` are the ones the session really runs
    (`session.get_providers()`), `requested_providers` what was asked for. CUDA inputs are bound in
    place (I/O binding, untested here: no GPU onnxruntime on our machines) only when the session runs
    the CUDA provider; otherwise they are copied to the CPU."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu",
                 threads: int | None = None):
        ort = require("onnxruntime")
        self.path, self.device = Path(path), torch.device(device)
        self.metadata = read_metadata(self.path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only
        # As many intra-op threads as torch uses (torch.set_num_threads / OMP_NUM_THREADS), so that the
        # backends of one process compare like for like; ONNX Runtime's own default is every core.
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        self.requested_providers = providers_for(self.device)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=self.requested_providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime's pybind errors (Fail, InvalidProtobuf, ...)
            raise OnnxLoadError(f"onnxruntime cannot open {self.path} ({_short(e)}); re-export it "
                                "with pdgan-export") from None
        # What the session really runs on: a CUDA provider that fails to load (onnxruntime-gpu built for
        # another CUDA, a CPU wheel beside it) is dropped silently by ONNX Runtime.
        self.providers = list(self.session.get_providers())
        if CUDA_PROVIDER in self.requested_providers and CUDA_PROVIDER not in self.providers:
            warnings.warn(f"onnxruntime could not load its CUDA provider: {self.path.name} runs on {self.providers} "
                          "(CUDA inputs are copied to the CPU); install an onnxruntime-gpu built for this CUDA",
                          stacklevel=2)
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def binds_cuda(self) -> bool:
        """Whether CUDA inputs are bound in place: only when the session really runs the CUDA provider."""
        return bool(self.providers) and self.providers[0] == CUDA_PROVIDER

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"{self.path.name} needs inputs {self.input_names}; missing {sorted(missing)}")
        first = next(iter(inputs.values()))
        if first.is_cuda and self.binds_cuda:
            return self._run_cuda(inputs)
        feed = {k: inputs[k].detach().to("cpu", torch.float32).contiguous().numpy() for k in self.input_names}
        out = self.session.run([OUTPUT], feed)[0]
        return torch.from_numpy(np.ascontiguousarray(out)).to(first.device)

    def _run_cuda(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        binding = self.session.io_binding()
        keep = {k: inputs[k].detach().float().contiguous() for k in self.input_names}
        dev = keep[self.input_names[0]].device
        for k, t in keep.items():
            binding.bind_input(k, "cuda", dev.index or 0, np.float32, tuple(t.shape), t.data_ptr())
        n = keep[self.input_names[0]].shape[0]  # x_t or x_T
        cfg = json.loads(self.metadata["pdgan.config"])
        out = torch.empty(n, cfg["channels"], cfg["resolution"], cfg["resolution"], device=dev)
        binding.bind_output(OUTPUT, "cuda", dev.index or 0, np.float32, tuple(out.shape), out.data_ptr())
        torch.cuda.current_stream(dev).synchronize()
        self.session.run_with_iobinding(binding)
        return out
