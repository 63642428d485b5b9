"""Backend selection (pdgan_infer.backends): what `auto` tries, in which order, and what it skips; the
onnxruntime CPU and GPU wheels that clash. What only a GPU can settle runs in `make gpu-check`."""
from __future__ import annotations

import pytest
import torch

from pdgan_infer import PDGAN
from pdgan_infer.backends import AUTO_ORDER, onnxruntime_wheel_clash


@pytest.fixture(scope="module")
def model() -> PDGAN:
    torch.manual_seed(0)
    return PDGAN("digits", with_latent=False).eval()


def test_auto_never_tries_the_exported_backends_first():
    """`auto` on CUDA tried TensorRT first: an ONNX export and minutes of engine build, never run on a
    GPU, and an FP32 engine with the default dtype. Now the exported backends run only by name."""
    assert AUTO_ORDER["cuda"][0] == "native"
    assert not {"tensorrt", "onnxruntime", "compile"} & set(AUTO_ORDER["cuda"] + AUTO_ORDER["cpu"])


def test_auto_moves_on_from_value_errors(model, monkeypatch):
    """A backend raising ValueError (TensorRT's dtype check did) stopped `auto` instead of being skipped."""
    import pdgan_infer.engine as engine_mod
    real = engine_mod.create

    def create_or_fail(name, *args, **kwargs):
        if name == AUTO_ORDER["cpu"][0]:
            raise ValueError("the exported graphs run in float32 or float16, got torch.bfloat16")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(engine_mod, "create", create_or_fail)
    engine = engine_mod.Engine(model, device="cpu", verbose=False)
    assert engine.backend == AUTO_ORDER["cpu"][1]


def test_onnxruntime_cpu_and_gpu_wheels_clash(monkeypatch):
    from importlib import metadata
    installed = {"onnxruntime": "1.20.0"}

    def version(dist):
        if dist not in installed:
            raise metadata.PackageNotFoundError(dist)
        return installed[dist]
    monkeypatch.setattr(metadata, "version", version)
    assert onnxruntime_wheel_clash() is None
    installed["onnxruntime-gpu"] = "1.20.0"
    assert "pip uninstall" in onnxruntime_wheel_clash()
