"""The GPU paths that a CPU can check (gpu-review.md, sections 4 and 6): backend selection on CUDA,
TensorRT and ONNX Runtime failure modes (TensorRT and the ONNX Runtime CUDA provider stubbed: neither
is installed here), packaging of the GPU extras, pdgan-bench's CUDA defaults. What only a GPU can
settle runs in `make gpu-check` (benchmarks/gpu_check.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from pdgan_infer import PDGAN
from pdgan_infer.backends import AUTO_ORDER, BackendUnavailable, create, onnxruntime_wheel_clash
from pdgan_infer.export import runtime, tensorrt

ROOT = Path(__file__).resolve().parents[2]


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


def _fake_tensorrt(monkeypatch, built):
    """TensorRT 'installed', a GPU 'present', the export and the engine build recorded instead of run."""
    monkeypatch.setattr(tensorrt, "require_tensorrt", object)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runtime, "cached_onnx", lambda model, dtype, cache_dir=None: (Path("x.onnx"), "w" * 64))

    def from_onnx(onnx_path, profile, weights_sha256, device, **kwargs):
        built.append(profile)
        return object()
    monkeypatch.setattr(tensorrt.TensorRTRunner, "from_onnx", staticmethod(from_onnx))


def test_tensorrt_bf16_is_backend_unavailable(model, monkeypatch):
    """Engine(device='cuda', dtype='bfloat16') with tensorrt installed crashed with a ValueError."""
    built = []
    _fake_tensorrt(monkeypatch, built)
    with pytest.raises(BackendUnavailable, match="float16"):
        runtime.TensorRTSampler(model, "cuda", torch.bfloat16)
    assert not built


def test_tensorrt_profile_follows_the_engine_batch(model, monkeypatch):
    """One 1/100/256 profile for every preset sized celebahq256's context for 256 images; the engine's
    batch size sets it now (also through backends.create, as the Engine calls it)."""
    built = []
    _fake_tensorrt(monkeypatch, built)
    runtime.TensorRTSampler(model, "cuda", torch.float16, batch_size=4)
    assert built[-1] == tensorrt.BatchProfile(1, 4, 4)
    runtime.TensorRTSampler(model, "cuda", torch.float16)
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
    monkeypatch.setattr(runtime, "require", lambda name: None)
    monkeypatch.setattr(runtime, "cached_onnx", lambda model, dtype, cache_dir=None: (Path("x.onnx"), "w" * 64))
    monkeypatch.setattr(runtime, "OnnxRunner", FakeRunner)


def test_onnxruntime_cuda_provider_that_failed_to_load_is_unavailable(model, monkeypatch):
    """ONNX Runtime falls back to the CPU silently when its CUDA provider cannot load; the sampler took
    the requested provider list for granted and bound CUDA buffers to a CPU session."""
    cuda_cpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    _fake_ort(monkeypatch, cuda_cpu, ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailable, match="CUDA provider did not load"):
        runtime.OnnxRuntimeSampler(model, "cuda")
    _fake_ort(monkeypatch, cuda_cpu, cuda_cpu)
    sampler = runtime.OnnxRuntimeSampler(model, "cuda")
    assert sampler.providers == cuda_cpu and sampler.runner.providers == cuda_cpu


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


def test_gpu_extras_do_not_clash_and_tensorrt_is_pinned():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {k: [r.split(">")[0].split("<")[0].split("=")[0].strip() for r in v] for k, v in extras.items()}
    assert "onnxruntime" not in names["gpu"] and "onnxruntime-gpu" not in names["onnx"]
    for key in ("gpu", "tensorrt"):
        pin = next(r for r in extras[key] if r.startswith("tensorrt"))
        assert "<12" in pin.replace(" ", ""), f"{key}: {pin} (pip resolves TensorRT 11.x, never tested)"
    makefile = (ROOT / "Makefile").read_text()
    default_extras = next(line for line in makefile.splitlines() if line.startswith("EXTRAS ?="))
    assert not {"onnx", "gpu"} <= set(default_extras.split("=", 1)[1].strip().split(","))


def test_bench_default_cuda_list_leaves_out_slow_builds(monkeypatch):
    """`pdgan-bench` on CUDA timed every available backend, including minutes of torch.compile autotuning
    and a TensorRT engine build; those now run only when named."""
    from pdgan_infer import bench
    probed = {name: None for name in ("torch", "optimized", "compile", "triton", "native", "onnxruntime",
                                      "tensorrt")}
    assert bench.default_backends(probed, torch.device("cuda")) == ["torch", "optimized", "triton", "native",
                                                                    "onnxruntime"]
    assert "compile" in bench.default_backends(probed, torch.device("cpu"))


def test_bench_cuda_timing_uses_the_device_and_reports_runner_time(monkeypatch):
    """CUDA events were recorded on the current device's stream (wrong for cuda:1); `timed` now enters
    the device. Checked with a stand-in torch.cuda (no GPU here)."""
    from pdgan_infer import bench
    entered = []

    class Device:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(self.device)

        def __exit__(self, *exc):
            return False

    class Event:
        def __init__(self, enable_timing=False):
            self.t = 0.0

        def record(self, stream=None):
            import time
            self.t = time.perf_counter()

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return (other.t - self.t) * 1e3

    monkeypatch.setattr(torch.cuda, "device", Device)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    seconds, out = bench.timed(lambda: 7, torch.device("cuda", 1))
    assert out == 7 and seconds >= 0 and entered == [torch.device("cuda", 1)]


@pytest.mark.slow  # two fresh processes that import torch and build a model: ~15 s of the CPU budget
@pytest.mark.skipif(sys.platform != "linux", reason="subprocess isolation is tested on Linux")
def test_bench_isolates_backends_in_subprocesses(tmp_path):
    """One CUDA fault poisons the context for every later backend; on CUDA each backend is timed in its own
    process (`--isolate`, the CUDA default). Run here on the CPU with a small preset."""
    from pdgan_infer import bench
    out = tmp_path / "b.json"
    rc = bench.main(["--device", "cpu", "--preset", "digits", "--n", "2", "--repeats", "1", "--backends",
                     "optimized", "--isolate", "--json", str(out)])
    import json
    records = json.loads(out.read_text())["records"]
    assert rc == 0 and [r["backend"] for r in records] == ["torch", "optimized"]
    assert all(r.get("median_s") and r.get("isolated") for r in records)
    assert records[1]["max_pixel_diff_vs_torch"] is not None
