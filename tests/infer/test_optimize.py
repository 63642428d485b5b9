"""Model-level optimisations (`pdgan_infer.optimize`) against the independent reference: the
unmodified `Generator`. fp32: every optimisation alone and all together within 2e-5 on x0 in
[-1, 1] (channels-last / fused attention only change the summation order). bf16: the
flash-attention rule on the whole sampler, |ours - fp32| <= 2 |torch autocast bf16 - fp32| + atol,
on the mean and the max error (measured on digits with random weights: autocast bf16 mean 0.013,
max 0.18; ours mean 0.012, max 0.14)."""
from __future__ import annotations

import copy
import time
from types import SimpleNamespace

import pytest
import torch

from pdgan_infer import PDGAN, draw_noise
from pdgan_infer.engine import redraw_zero_init
from pdgan_infer.kernels.reference import adagn_silu_ref
from pdgan_infer.networks.layers import AdaGNAct, AttnBlock, FIRUpsample, ResnetBlock
from pdgan_infer.optimize import (
    MAX_DEFAULT_BATCH,
    NONE,
    CUDAGraphSampler,
    FastAttnBlock,
    FastFIRUpsample,
    FastGenerator,
    FastResnetBlock,
    Optimizations,
    default_batch_size,
    prepare_generator,
    reduced_dtype_supported,
)

BF16_OK = reduced_dtype_supported(torch.bfloat16, torch.device("cpu")) is None


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> PDGAN:
    torch.manual_seed(0)
    m = PDGAN("digits", with_latent=False).eval()
    redraw_zero_init(m)  # make every layer matter (training zero-initialises some)
    return m


@pytest.fixture(scope="module")
def inputs(model):
    g = torch.Generator().manual_seed(1)
    n, nz = 4, model.config.generator.nz
    return (torch.randn(n, 3, 32, 32, generator=g), torch.randn(n, nz, generator=g),
            torch.tensor([2.0, 2.0, 1.0, 1.0]))


OPTIONS = {
    "none": NONE,
    "merge": Optimizations(channels_last=False, fast_fir=False, fast_attention=False, fold_scales=False),
    "channels_last": Optimizations(merge_linears=False, fast_fir=False, fast_attention=False, fold_scales=False),
    "fast_fir": Optimizations(merge_linears=False, channels_last=False, fast_attention=False, fold_scales=False),
    "fast_attention": Optimizations(merge_linears=False, channels_last=False, fast_fir=False, fold_scales=False),
    "fold_scales": Optimizations(merge_linears=False, channels_last=False, fast_fir=False, fast_attention=False),
    "all": Optimizations(),
}


@pytest.mark.parametrize("label", list(OPTIONS))
@torch.no_grad()
def test_fp32_matches_plain_generator(model, inputs, label):
    ref = model.generator(*inputs)
    assert ref.std() > 0.1  # not a degenerate comparison
    out = prepare_generator(model.generator, OPTIONS[label])(*inputs)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)


def test_merge_is_one_gemm_each_and_leaves_the_original_alone(model):
    g = model.generator
    before = {k: v.clone() for k, v in g.state_dict().items()}
    fast = prepare_generator(g, Optimizations())
    norms = [m for m in g.modules() if isinstance(m, AdaGNAct)]
    blocks = [m for m in g.modules() if isinstance(m, ResnetBlock)]
    assert fast.style_gemm.out_features == sum(2 * m.channels for m in norms)
    assert fast.temb_gemm.out_features == sum(b.temb_proj.out_features for b in blocks)
    linears_left = [m for m in fast.g.modules() if isinstance(m, torch.nn.Linear)]
    assert all(not isinstance(m.style, torch.nn.Linear) for m in fast.g.modules() if isinstance(m, AdaGNAct))
    assert len(linears_left) == len([m for m in g.modules() if isinstance(m, torch.nn.Linear)]) \
        - len(norms) - len(blocks)  # only the mapping and time MLPs remain
    # the original generator and its state-dict format are untouched
    assert all(isinstance(m.style, torch.nn.Linear) for m in norms)
    after = g.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert not any(isinstance(m, (FastFIRUpsample, FastAttnBlock, FastResnetBlock)) for m in g.modules())
    assert not any(isinstance(m, ResnetBlock) for m in fast.modules())  # all replaced by FastResnetBlock


@pytest.mark.parametrize("shape", [(1, 2, 1, 1), (2, 3, 5, 7), (2, 64, 16, 16)], ids=["1x1", "5x7", "16x16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_fast_fir_upsample_is_exact(shape, channels_last):
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref = FIRUpsample(shape[1])(x)
    out = FastFIRUpsample()(x)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    if channels_last and shape[2] > 1:
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@torch.no_grad()
def test_fast_attention_matches(channels_last):
    block = AttnBlock(32).eval()
    torch.nn.init.normal_(block.proj.weight, std=0.2)
    fast = FastAttnBlock(copy.deepcopy(block))
    x = torch.randn(3, 32, 8, 8)
    if channels_last:
        x, fast = x.contiguous(memory_format=torch.channels_last), fast.to(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x), block(x), atol=2e-5, rtol=0)


@torch.no_grad()
def test_adagn_kernel_hook_sees_the_merged_style(model, inputs):
    """The kernels get the merged style GEMM's columns in place: views with strided rows and dense columns
    (the CUDA and Triton kernels read them so), never copies made per AdaGN call."""
    calls = []

    def kernel(x, gamma, beta, groups, eps):
        calls.append((gamma._base is not None and beta._base is not None, gamma.stride(0) > gamma.shape[1],
                      gamma.stride(1), beta.stride(1)))
        return adagn_silu_ref(x, gamma, beta, groups, eps)

    fast = prepare_generator(model.generator, Optimizations())
    fast.set_adagn_kernel(kernel)
    torch.testing.assert_close(fast(*inputs), model.generator(*inputs), atol=2e-5, rtol=0)
    assert calls and all(c == (True, True, 1, 1) for c in calls)
    fast.set_adagn_kernel(None)
    assert all(m.kernel is None for m in fast.modules() if isinstance(m, AdaGNAct))


class _FakeCuda:
    """torch.cuda's stream / graph API as recorded calls, so CUDAGraphSampler's capture logic runs on the CPU."""

    def __init__(self, monkeypatch):
        import contextlib

        import pdgan_infer.optimize as optimize_mod
        self.log, self.pools = [], []
        fake = self

        class Stream:
            def wait_stream(self, other):
                fake.log.append("wait")

        class Graph:
            def replay(self):
                fake.log.append("replay")

        @contextlib.contextmanager
        def graph(g, pool=None):
            fake.pools.append(pool)
            fake.log.append("capture")
            yield

        @contextlib.contextmanager
        def on_device(device):
            fake.log.append(("device", str(device)))
            yield
        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "graph_pool_handle", object)
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)
        monkeypatch.setattr(optimize_mod, "_on_device", on_device)


def test_cuda_graph_sampler_device_pool_and_cudnn_warmup(monkeypatch):
    """Review 3.3 / 3.4 / 3.6, the wiring a CPU can see (fake torch.cuda): capture and replay run with the
    inputs' device current (not device 0), every captured shape shares one memory pool, and the warm-up runs
    with cuDNN's benchmark mode on (off again afterwards)."""
    fake = _FakeCuda(monkeypatch)
    benchmark_seen = []

    def fn(a):
        benchmark_seen.append(torch.backends.cudnn.benchmark)
        return a * 2
    before = torch.backends.cudnn.benchmark
    sampler = CUDAGraphSampler(fn, warmup=2)
    sampler(torch.ones(3))
    sampler(torch.ones(5))  # a second shape: a second graph
    sampler(torch.ones(3))  # replay of the first
    assert fake.log.count("capture") == 2 and len(sampler.graphs) == 2
    assert [e for e in fake.log if isinstance(e, tuple)] == [("device", "cpu")] * 3  # around capture and replay
    assert len(fake.pools) == 2 and fake.pools[0] is not None and fake.pools[0] is fake.pools[1]
    assert benchmark_seen[:2] == [True, True] and torch.backends.cudnn.benchmark == before


def test_cuda_graph_sampler_keeps_the_callers_tf32_setting(monkeypatch):
    """Warm-up and capture switch on cuDNN's benchmark mode and nothing else: a caller who asked for IEEE
    float32 convolutions (the new precision API) keeps them in the graph (cudnn.flags() reset the precision
    and, reading the legacy flag beside the new one, raised, so every capture fell back to eager)."""
    _FakeCuda(monkeypatch)
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = "ieee"
    try:
        seen = []
        sampler = CUDAGraphSampler(lambda a: seen.append(conv.fp32_precision) or a * 2, warmup=1)
        sampler(torch.ones(3))
        assert sampler.eager_reason is None and seen == ["ieee", "ieee"] and conv.fp32_precision == "ieee"
    finally:
        conv.fp32_precision = before


def test_runners_and_engines_are_freed_without_the_cycle_collector(monkeypatch):
    """No reference cycle through a CUDA-graph sampler (it holds its owner's method weakly) or a bound method
    kept as an attribute: a dropped runner or engine, with its graphs and their memory pool, is freed at once."""
    import gc
    import weakref

    from pdgan_infer.backends import create
    from pdgan_infer.engine import Engine

    class Owner:
        def __init__(self):
            self.sampler = CUDAGraphSampler(self.run)

        def run(self, a):
            return a
    gc.collect()
    gc.disable()
    try:
        owner = Owner()
        assert owner.sampler.fn(3) == 3
        sampler, ref = owner.sampler, weakref.ref(owner)
        del owner
        assert ref() is None
        with pytest.raises(ReferenceError, match="no longer exists"):
            sampler.fn(torch.ones(1))
        m = PDGAN("digits", with_latent=True)
        for made in (lambda: create("optimized", m, torch.device("cpu"), torch.float32),
                     lambda: Engine(m, backend="optimized", device="cpu")):
            ref = weakref.ref(made())
            assert ref() is None
    finally:
        gc.enable()


@pytest.mark.skipif(not BF16_OK, reason="this CPU has no native bfloat16")
@torch.no_grad()
def test_fused_kernels_get_float32_style_in_bf16(model, inputs):
    """The kernels compute in float32: gamma/beta reach them in float32, not rounded to the bf16 trunk
    dtype (which the CUDA binding then widened again, two conversions per AdaGN call). The values are
    the float32 merged style GEMM's columns."""
    seen = []

    def kernel(x, gamma, beta, groups, eps):
        seen.append((x.dtype, gamma.dtype, beta.dtype))
        return adagn_silu_ref(x, gamma, beta, groups, eps)

    fast = prepare_generator(model.generator, Optimizations(dtype=torch.bfloat16))
    fast.set_adagn_kernel(kernel)
    fast(*inputs)
    assert seen and all(s == (torch.bfloat16, torch.float32, torch.float32) for s in seen)
    style = fast.style_gemm(fast.g.mapping(inputs[1].float()))  # float32 GEMM output, as the kernels get it
    norm = next(m for m in fast.modules() if isinstance(m, AdaGNAct))
    gamma = norm.style(style).chunk(2, dim=1)[0]
    assert gamma.dtype == torch.float32 and not torch.equal(gamma, gamma.bfloat16().float())
    fast.set_adagn_kernel(None)  # the torch path keeps the trunk dtype
    assert fast.style_dtype == torch.bfloat16
    unmerged = prepare_generator(model.generator, Optimizations(dtype=torch.bfloat16, merge_linears=False))
    unmerged.set_adagn_kernel(kernel)  # per-block style Linears live in the bf16 trunk
    assert unmerged.style_dtype == torch.bfloat16


def test_cuda_graph_sampler_falls_back_to_eager_when_capture_fails(recwarn):
    """A failed capture (here: no CUDA at all) warns once and runs the chain eagerly instead of raising
    on every call."""
    calls = []

    def fn(a, b):
        calls.append(1)
        return a + b

    sampler = CUDAGraphSampler(fn, warmup=0)
    if torch.cuda.is_available():  # make the capture fail on a GPU too
        sampler._capture = lambda inputs: (_ for _ in ()).throw(RuntimeError("operation not permitted"))
    x = torch.ones(3)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        assert torch.equal(sampler(x, x), x + x)
    assert sampler.eager_reason and torch.equal(sampler(x, 2 * x), 3 * x) and len(calls) >= 2
    assert not [w for w in recwarn if "capture failed" in str(w.message)]  # warned once


@pytest.mark.skipif(not BF16_OK, reason="this CPU has no native bfloat16")
@torch.no_grad()
def test_bf16_within_measured_tolerance(model):
    from pdgan_infer.backends import create
    n, nz = 8, model.config.generator.nz
    noise = draw_noise(list(range(n)), 2, 3, 32, nz)
    args = (noise.x_T, torch.randn(n, nz, generator=torch.Generator().manual_seed(2)), noise.z, noise.eps)
    cpu = torch.device("cpu")
    ref = create("torch", model, cpu, torch.float32)(*args)
    same_dtype = (create("torch", model, cpu, torch.bfloat16)(*args) - ref).abs()
    ours = (create("optimized", model, cpu, torch.bfloat16)(*args) - ref).abs()
    assert ours.mean() <= 2 * same_dtype.mean() + 1e-3
    assert ours.max() <= 2 * same_dtype.max() + 0.02
    assert ours.mean() < 0.05  # and in absolute terms: ~3 uint8 levels on average


def test_options_are_checked(model):
    with pytest.raises(ValueError, match="dtype"):
        Optimizations(dtype=torch.int8)
    with pytest.raises(TypeError, match="Generator"):
        prepare_generator(model.encoder, Optimizations())
    assert reduced_dtype_supported(torch.float16, torch.device("cpu")) is not None  # names bfloat16 instead
    assert isinstance(prepare_generator(model.generator), FastGenerator)


@pytest.mark.slow
def test_fir_costs_less_than_a_conv():
    """FIR upsampling has ~C*9/4 times fewer FLOPs than the 3x3 convolution after it; it must not
    take longer than that convolution (the depthwise transposed conv did, by up to 10x in bf16)."""
    x = torch.randn(32, 128, 16, 16).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
    up = FastFIRUpsample()

    def best(f, reps=5):
        f()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    with torch.no_grad():
        y = up(x)
        assert best(lambda: up(x)) < best(lambda: conv(y))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (runs on the GPU box)")
def test_cuda_graph_sampler_matches_eager(ieee_fp32):  # pragma: no cover - GPU only
    dev = torch.device("cuda")
    m = PDGAN("digits", with_latent=False).to(dev).eval()
    redraw_zero_init(m)
    from pdgan_infer.backends import create
    n = 4
    noise = draw_noise(list(range(n)), 2, 3, 32, 32).to(dev)
    args = (noise.x_T, torch.randn(n, 32, device=dev), noise.z, noise.eps)
    eager = create("optimized", m, dev, torch.float32, cuda_graph=False)
    graphed = create("optimized", m, dev, torch.float32, cuda_graph=True)
    assert isinstance(graphed._run, CUDAGraphSampler)
    ref = eager(*args)
    torch.testing.assert_close(graphed(*args), ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(graphed(*args), ref, atol=1e-4, rtol=0)  # replay


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (runs on the GPU box)")
@pytest.mark.parametrize("backend", ["optimized", "native", "triton"])
def test_cuda_graph_replays_fresh_inputs_and_batch_sizes(backend, ieee_fp32):  # pragma: no cover - GPU only
    """Each replay sees the new inputs (static buffers refilled), graphs of two batch sizes share one pool
    and both stay correct, and the fused backends capture (no host sync in their kernels)."""
    from pdgan_infer.backends import BackendUnavailable, create
    dev = torch.device("cuda")
    m = PDGAN("digits", with_latent=False).to(dev).eval()
    redraw_zero_init(m)
    try:
        graphed = create(backend, m, dev, torch.float32, cuda_graph=True)
    except BackendUnavailable as e:
        pytest.skip(str(e))
    eager = create(backend, m, dev, torch.float32, cuda_graph=False)
    # review 2.6: Triton's ~10-20 us Python launches (56-168 per forward) vanish only in the graph: on by default
    assert isinstance(create(backend, m, dev, torch.float32)._run, CUDAGraphSampler)
    for n, seeds in ((4, range(4)), (4, range(10, 14)), (6, range(6)), (4, range(20, 24))):
        noise = draw_noise(list(seeds), 2, 3, 32, 32, device=dev)
        args = (noise.x_T, torch.randn(n, 32, device=dev), noise.z, noise.eps)
        torch.testing.assert_close(graphed(*args), eager(*args), atol=1e-4, rtol=0)
    assert graphed._run.eager_reason is None and len(graphed._run.graphs) == 2


def test_cpu_micro_batches_are_near_equal_and_change_nothing():
    """The CPU runner splits a batch into near-equal passes of at most `micro_batch` images; the images are
    those of the torch reference chain run on the whole batch (each image's chain is independent)."""
    from pdgan_infer.backends.eager import OptimizedRunner, TorchRunner
    from pdgan_infer.optimize import CPU_PIXELS_PER_MICRO_BATCH, cpu_micro_batch
    assert cpu_micro_batch(32) == CPU_PIXELS_PER_MICRO_BATCH // 1024 and cpu_micro_batch(256) == 1
    torch.manual_seed(0)
    model = PDGAN("digits", with_latent=False).eval()
    runner = OptimizedRunner(model, torch.device("cpu"))
    assert runner.micro_batch == cpu_micro_batch(model.config.resolution)
    runner.micro_batch = 3
    sizes = []
    chain = runner._chain
    runner._chain = lambda x, *rest: sizes.append(x.shape[0]) or chain(x, *rest)
    c = model.config
    noise = draw_noise(list(range(7)), model.schedule.T, c.channels, c.resolution, c.generator.nz)
    z_T = torch.randn(7, c.generator.nz, generator=torch.Generator().manual_seed(1))
    out = runner(noise.x_T, z_T, noise.z, noise.eps)
    ref = TorchRunner(model, torch.device("cpu"))(noise.x_T, z_T, noise.z, noise.eps)
    assert sizes == [2, 2, 3]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


# --- device defaults that matter on a GPU, checked on the CPU with the device's properties faked ------------
@pytest.mark.parametrize("gib, cifar10, celebahq256", [(141, 256, 35), (80, 256, 20), (16, 256, 4), (8, 128, 2),
                                                        (2, 32, 1)])
def test_cuda_default_batch_scales_with_gpu_memory(monkeypatch, gib, cifar10, celebahq256):
    """gpu-review 6.7: a fixed 256 * 32 * 32 pixels gave celebahq256 a batch of 4 on a 141 GB H200. The budget
    is 256 * 32 * 32 pixels per 16 GiB: 35 celebahq256 images on an H200, 256 cifar10 ones (the cap)."""
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device=None: SimpleNamespace(total_memory=gib * 2**30))
    assert default_batch_size(32, "cuda") == cifar10
    assert default_batch_size(256, torch.device("cuda:0")) == celebahq256
    assert default_batch_size(32, "cuda") <= MAX_DEFAULT_BATCH


def test_cpu_default_batch_is_unchanged():
    assert default_batch_size(32, "cpu") == 64 and default_batch_size(256, "cpu") == 1
    assert default_batch_size(8, "cpu") == MAX_DEFAULT_BATCH  # 1024 8x8 images would be over the cap
