"""gpu-review.md points whose fix lives in files without a test file of their own (docs/gpu-readiness.md
lists every point with its test): TensorRT's execution stream (4.2), with TensorRT and CUDA streams faked."""
from __future__ import annotations

import torch

from pdgan_infer.export import tensorrt


def test_tensorrt_executes_on_its_own_stream_ordered_with_the_callers(monkeypatch):
    """Review 4.2: execute_async_v3 got the caller's current stream, the legacy default stream unless the
    caller set one (TensorRT then adds a cudaStreamSynchronize per call). Now the runner's own stream, which
    waits for the caller's stream before and is waited for after; the tensors are recorded on it."""
    log = []

    class Stream:
        def __init__(self, name, handle):
            self.name, self.cuda_stream = name, handle

        def wait_stream(self, other):
            log.append(f"{self.name} waits {other.name}")

    caller, own = Stream("caller", 0), Stream("own", 0x7E57)

    class Context:
        def set_input_shape(self, name, shape):
            pass

        def set_tensor_address(self, name, ptr):
            pass

        def get_tensor_shape(self, name):
            return (2, 3, 4, 4)

        def execute_async_v3(self, handle):
            log.append(f"execute on {handle:#x}")
            return True

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: caller)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: log.append(f"record on {stream.name}"))
    runner = object.__new__(tensorrt.TensorRTRunner)
    runner.graph, runner.device, runner.context = "sampler", torch.device("cpu"), Context()
    runner.stream = own
    runner.dtypes = {name: torch.float32 for name in (*tensorrt.INPUTS["sampler"], tensorrt.OUTPUT)}
    inputs = {"x_T": torch.zeros(2, 3, 4, 4), "z_T": torch.zeros(2, 8), "z": torch.zeros(2, 2, 8),
              "eps": torch.zeros(2, 2, 3, 4, 4)}
    out = runner._run(inputs)
    assert out.shape == (2, 3, 4, 4)
    assert log[0] == "own waits caller" and log[1] == "execute on 0x7e57" and log[-1] == "caller waits own"
    assert log[2:-1] == ["record on own"] * 5  # four inputs and the output


def test_engine_draws_the_noise_on_its_device(monkeypatch):
    """Review 3.1: per-image noise came from CPU torch.Generators and was copied to the GPU (3.9 ms per 256x256
    image, most of generate() on a GPU). Engine now draws the counter-based Philox noise on its own device."""
    import pdgan_infer.engine as engine_mod
    from pdgan_infer import PDGAN
    real, devices = engine_mod.draw_noise, []

    def spy(*args, **kwargs):
        devices.append(kwargs.get("device"))
        return real(*args, **kwargs)
    monkeypatch.setattr(engine_mod, "draw_noise", spy)
    torch.manual_seed(0)
    engine = engine_mod.Engine(PDGAN("digits", with_latent=False), backend="torch", device="cpu", verbose=False)
    engine.generate(2, seed=0, z_T=torch.zeros(2, engine.config.generator.nz))
    assert devices and all(d == engine.device for d in devices)


def test_kernel_benchmarks_time_the_engines_layout():
    """Review 6.6: benchmarks/test_bench_kernels.py timed AdaGN in NCHW only; the engine runs channels_last."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "test_bench_kernels.py"
    spec = importlib.util.spec_from_file_location("bench_kernels_layouts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    marks = {m.args[0]: m.args[1] for m in module.test_adagn_silu.pytestmark if m.name == "parametrize"}
    assert list(marks["layout"])[0] == "channels_last" and set(marks["layout"]) == {"channels_last", "nchw"}
    assert module.LAYOUTS["channels_last"] == torch.channels_last
