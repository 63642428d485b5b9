"""pdgan_infer: the PDGAN runtime (networks, noise schedule, sampler, kernels, export, Engine).
Imports and runs with torch alone; triton, onnxruntime and tensorrt are optional extras."""
from __future__ import annotations

from ._version import __version__
from .checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from .config import PRESETS, PDGANConfig, get_preset
from .errors import PDGANError
from .networks import PDGAN, build_encoder, build_generator, build_latent
from .sampler import SamplerNoise, draw_noise, sample
from .schedule import Schedule

__all__ = ["Schedule", "PDGANConfig", "PRESETS", "get_preset", "PDGAN", "build_generator", "build_encoder",
           "build_latent", "SamplerNoise", "draw_noise", "sample", "save_checkpoint", "load_checkpoint",
           "read_header", "CheckpointError", "PDGANError", "Engine", "GenerateOutput", "to_pil", "__version__"]


def __getattr__(name: str):
    if name in ("Engine", "GenerateOutput"):  # lazy: the engine pulls in optional backends
        from . import engine
        return getattr(engine, name)
    if name == "to_pil":  # lazy: Pillow
        from .images import to_pil
        return to_pil
    raise AttributeError(f"module 'pdgan_infer' has no attribute {name!r}")
