"""Export: the artifact writers. ONNX graphs of the generator step and of the whole sampler (checked and
verified), their cache (`cache`) and TensorRT engines (`tensorrt`). The NVIDIA Triton Inference Server model
repository writer is `pdgan_infer.serve.repository`, the `pdgan-export` command `pdgan_infer.cli.export`. The
runners that load these artifacts are backends (`pdgan_infer.backends`: onnxruntime, tensorrt, openvino);
nothing here imports a runner, the engine or the server.

    from pdgan_infer.export import export_onnx
    export_onnx(model, "cifar10.onnx", graph="sampler", dtype="float16", opset=18)

onnx / onnxscript (torch's dynamo exporter) / onnxruntime (extra `pdgan[onnx]`) and tensorrt (extra `pdgan[gpu]`,
untested) are imported only when used; this package imports with torch alone.
"""
from __future__ import annotations

from ..deprecation import moved
from .cache import default_cache_dir
from .onnx import (
    GRAPHS,
    OPSET,
    OnnxLoadError,
    OnnxRunner,
    export_onnx,
    graph_inputs,
    load_onnx,
    read_metadata,
    weights_sha256,
)
from .tensorrt import BatchProfile, engine_cache_key

# deprecated names, for one release
__getattr__ = moved(__name__, {"OnnxRuntimeSampler": "pdgan_infer.backends.onnxruntime",
                               "TensorRTSampler": "pdgan_infer.backends.tensorrt"})

__all__ = ["GRAPHS", "OPSET", "OnnxLoadError", "OnnxRunner", "export_onnx", "graph_inputs", "load_onnx",
           "read_metadata", "weights_sha256", "default_cache_dir", "BatchProfile",
           "engine_cache_key"]
