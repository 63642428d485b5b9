"""The exported-graph backends' samplers (pdgan_infer.backends.onnxruntime, .tensorrt) on CUDA, checked on the
CPU with TensorRT and the ONNX Runtime CUDA provider stubbed (neither is installed here): TensorRT's dtypes and
batch profile, an ONNX Runtime CUDA provider that failed to load. What only a GPU can settle runs in
`make gpu-check`."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pdgan_infer import PDGAN
from pdgan_infer.backends import BackendUnavailable, create
from pdgan_infer.backends import onnxruntime as ort_backend
from pdgan_infer.backends import tensorrt as trt_backend
from pdgan_infer.export import tensorrt


@pytest.fixture(scope="module")
def model() -> PDGAN:
    torch.manual_seed(0)
    return PDGAN("digits", with_latent=False).eval()


def _fake_tensorrt(monkeypatch, built):
    """TensorRT 'installed', a GPU 'present', the export and the engine build recorded instead of run."""
    monkeypatch.setattr(tensorrt, "require_tensorrt", object)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(trt_backend, "cached_onnx", lambda model, dtype, cache_dir=None: (Path("x.onnx"), "w" * 64))

    def from_onnx(onnx_path, profile, weights_sha256, device, **kwargs):
        built.append(profile)
        return object()
    monkeypatch.setattr(tensorrt.TensorRTRunner, "from_onnx", staticmethod(from_onnx))


def test_tensorrt_bf16_is_backend_unavailable(model, monkeypatch):
    """Engine(device='cuda', dtype='bfloat16') with tensorrt installed crashed with a ValueError."""
    built = []
    _fake_tensorrt(monkeypatch, built)
    with pytest.raises(BackendUnavailable, match="float16"):
        trt_backend.TensorRTSampler(model, "cuda", torch.bfloat16)
    assert not built


def test_tensorrt_profile_follows_the_engine_batch(model, monkeypatch):
    """One 1/100/256 profile for every preset sized celebahq256's context for 256 images; the engine's
    batch size sets it now (also through backends.create, as the Engine calls it)."""
    built = []
    _fake_tensorrt(monkeypatch, built)
    trt_backend.TensorRTSampler(model, "cuda", torch.float16, batch_size=4)
    assert built[-1] == tensorrt.BatchProfile(1, 4, 4)
    trt_backend.TensorRTSampler(model, "cuda", torch.float16)
    assert built[-1] == tensorrt.BatchProfile(1, 100, 256)
    monkeypatch.setattr("pdgan_infer.backends.probe", lambda name, device: None)
    create("tensorrt", model, torch.device("cuda"), torch.float16, batch_size=16)
    assert built[-1] == tensorrt.BatchProfile(1, 16, 16)


class _FakeSession:
    def __init__(self, providers):
        self._providers = providers

    def get_providers(self):
        return list(self._providers)


def _fake_ort(monkeypatch, requested, actual):
    class FakeRunner:
        def __init__(self, path, device, threads=None):
            self.providers, self.session = list(requested), _FakeSession(actual)
    monkeypatch.setattr(ort_backend, "require", lambda name: None)
    monkeypatch.setattr(ort_backend, "cached_onnx", lambda model, dtype, cache_dir=None: (Path("x.onnx"), "w" * 64))
    monkeypatch.setattr(ort_backend, "OnnxRunner", FakeRunner)


def test_onnxruntime_cuda_provider_that_failed_to_load_is_unavailable(model, monkeypatch):
    """ONNX Runtime falls back to the CPU silently when its CUDA provider cannot load; the sampler took
    the requested provider list for granted and bound CUDA buffers to a CPU session."""
    cuda_cpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    _fake_ort(monkeypatch, cuda_cpu, ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="CUDA provider did not load"):
        ort_backend.OnnxRuntimeSampler(model, "cuda")
    _fake_ort(monkeypatch, cuda_cpu, cuda_cpu)
    sampler = ort_backend.OnnxRuntimeSampler(model, "cuda")
    assert sampler.providers == cuda_cpu and sampler.runner.providers == cuda_cpu
