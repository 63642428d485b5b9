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
    import pdgan_infer.sampler as sampler_mod
    from pdgan_infer import PDGAN
    real, devices = sampler_mod.draw_noise, []

    def spy(*args, **kwargs):
        devices.append(kwargs.get("device"))
        return real(*args, **kwargs)
    monkeypatch.setattr(sampler_mod, "draw_noise", spy)
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


def test_engine_graphs_the_latent_ddim_when_the_runner_replays_graphs(monkeypatch):
    """Review 3.1: the latent DDIM (10 steps of the MLP, ~700 launches per batch) ran eagerly outside the CUDA
    graph. With a graph-replaying runner the Engine now replays it from a CUDAGraphSampler too, padded to the
    batch size so one capture serves the last batch. CPU stand-in: a fake graph sampler that records its input
    shapes and runs the function; the images must equal an Engine without graphs (the reference)."""
    import numpy as np

    from pdgan_infer import Engine
    from pdgan_infer import engine as engine_module
    from pdgan_infer.config import PRESETS
    from pdgan_infer.networks import PDGAN

    captured = []

    class FakeGraphSampler:
        def __init__(self, fn):
            self.fn = fn

        def __call__(self, *inputs):
            captured.append(tuple(t.shape for t in inputs))
            return self.fn(*inputs)

    torch.manual_seed(0)
    model = PDGAN(PRESETS["digits"], with_latent=True)
    reference = Engine(model, backend="optimized", device="cpu", batch_size=4).generate(6, seed=3)
    monkeypatch.setattr(engine_module, "CUDAGraphSampler", FakeGraphSampler)
    engine = Engine(model, backend="optimized", device="cpu", batch_size=4)
    assert captured == [] and engine._latent_graph is None  # no graphs on this runner
    engine.runner.cuda_graph = True  # as on CUDA
    engine._latent_graph = engine._latent_sampler()
    assert isinstance(engine._latent_graph, FakeGraphSampler)
    images = engine.generate(6, seed=3)
    nz = model.config.generator.nz
    assert captured == [((4, nz),), ((4, nz),)]  # 4 + 2 images: the last batch padded to the captured shape
    np.testing.assert_array_equal(images, reference)
    captured.clear()  # sample_latents replays the same shapes, so its codes are the ones generate used
    codes = engine.sample_latents(6, seed=3, batch_size=4)
    assert captured == [((4, nz),), ((4, nz),)] and codes.shape == (6, nz)
    np.testing.assert_array_equal(engine.generate_from(codes, seed=3), reference)


def test_onnx_export_copies_the_generator_straight_to_the_cpu(monkeypatch):
    """Review 4.4 (minor): the ONNX export deep-copied the generator on its own device (a second copy of every
    weight on the GPU) and moved it to the CPU after. The tensors are now copied straight to host memory:
    deep-copying any parameter or buffer of the source fails this test; the copy holds equal, separate tensors."""
    from pdgan_infer.config import PRESETS
    from pdgan_infer.export.onnx import cpu_copy
    from pdgan_infer.networks import build_generator

    torch.manual_seed(0)
    g = build_generator(PRESETS["digits"])
    sources = {id(t) for t in [*g.parameters(), *g.buffers()]}
    real = torch.Tensor.__deepcopy__

    def guarded(self, memo):
        assert id(self) not in sources, "a tensor of the source module was deep-copied"
        return real(self, memo)
    monkeypatch.setattr(torch.Tensor, "__deepcopy__", guarded)
    monkeypatch.setattr(torch.nn.Parameter, "__deepcopy__", guarded)
    c = cpu_copy(g)
    for (name, a), (_, b) in zip(g.state_dict().items(), c.state_dict().items()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name
    assert all(p.device.type == "cpu" for p in c.parameters())
