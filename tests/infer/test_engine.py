"""The Engine and its backends (digits preset, random weights with every layer active).

Backends against the `torch` reference, same explicit noises and latents:
  fp32: max |x0 - ref| <= 1e-4 (x0 in [-1, 1]; measured <= 1e-5 for `optimized`).
  bf16: the rule of test_optimize: mean / max error <= 2x that of torch autocast bf16 + atol.
Unavailable backends are skipped with the probe's reason; `compile` (minutes of Inductor compilation)
and, without a GPU, `triton` (Triton's CPU interpreter) are slow and run with -m slow.
"""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
from tiny_models import tiny_config  # tests/support: a shrunken digits model

from pdgan_infer import PDGAN, draw_noise, save_checkpoint
from pdgan_infer.backends import BACKENDS, BackendUnavailable, create
from pdgan_infer.engine import Engine, image_seeds, redraw_zero_init
from pdgan_infer.optimize import reduced_dtype_supported

CPU = torch.device("cpu")
BF16_OK = reduced_dtype_supported(torch.bfloat16, CPU) is None
AVAILABLE = Engine.backends("cpu")
# compile: minutes of Inductor compilation; triton without a GPU: Triton's interpreter (~2 min here)
SLOW_BACKENDS = {"compile"} | (set() if torch.cuda.is_available() else {"triton"})


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.from_preset("digits", seed=0, backend="optimized", device="cpu", batch_size=4, verbose=False)


@pytest.fixture(scope="module")
def explicit(engine):
    n, nz = 3, engine.config.generator.nz
    noise = draw_noise([11, 12, 13], 2, 3, 32, nz)
    z_T = torch.randn(n, nz, generator=torch.Generator().manual_seed(3))
    args = (noise.x_T, z_T, noise.z, noise.eps)
    return args, create("torch", engine.model, CPU, torch.float32)(*args)


def assert_same_images(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to a rare 1-level rounding flip: a different batch size can change the convolutions'
    summation order (oneDNN picks kernels by shape), i.e. x0 by ~1e-6."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def _backend_params():
    out = []
    for name in BACKENDS:
        marks = [pytest.mark.slow] if name in SLOW_BACKENDS else []
        if AVAILABLE[name] is not None:
            marks.append(pytest.mark.skip(reason=f"{name}: {AVAILABLE[name]}"))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _backend_params())
def test_backend_matches_torch_fp32(engine, explicit, name):
    args, ref = explicit
    assert ref.std() > 0.1
    runner = create(name, engine.model, CPU, torch.float32)
    out = runner(*args)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.skipif(AVAILABLE["triton"] is not None, reason=f"triton: {AVAILABLE['triton']}")
def test_triton_engine_one_image_matches_torch(engine, explicit):
    """The Triton backend end to end in the default suite (tests-and-kernels review D7: TritonRunner and
    kernel_step with the Triton posterior ran only with -m slow on a CPU): one image through Triton's
    interpreter (a few seconds), against the torch reference on the same explicit noise."""
    args, ref = explicit
    runner = create("triton", engine.model, CPU, torch.float32)
    out = runner(*(t[:1] if i < 2 else t[:, :1] for i, t in enumerate(args)))
    assert (out - ref[:1]).abs().max().item() <= 1e-4


@pytest.mark.skipif(not BF16_OK, reason="this CPU has no native bfloat16")
@pytest.mark.parametrize("name", [p for p in _backend_params() if p.values[0] not in ("torch", "onnxruntime")])
def test_backend_matches_torch_bf16(engine, explicit, name):
    args, ref = explicit
    same_dtype = (create("torch", engine.model, CPU, torch.bfloat16)(*args) - ref).abs()
    err = (create(name, engine.model, CPU, torch.bfloat16)(*args) - ref).abs()
    assert err.mean() <= 2 * same_dtype.mean() + 1e-3
    assert err.max() <= 2 * same_dtype.max() + 0.02


def test_backends_report(engine):
    assert set(AVAILABLE) == set(BACKENDS)
    assert AVAILABLE["torch"] is None and AVAILABLE["optimized"] is None
    assert AVAILABLE["tensorrt"] is not None and "CUDA" in AVAILABLE["tensorrt"]  # no GPU here
    for name, reason in AVAILABLE.items():
        if reason is not None:
            with pytest.raises(BackendUnavailable, match=name):
                create(name, engine.model, CPU, torch.float32)


def test_auto_picks_and_reports(engine, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="pdgan"):
        e = Engine(engine.model, backend="auto", device="cpu", batch_size=4)
    assert e.backend in BACKENDS and AVAILABLE[e.backend] is None
    assert [r.name for r in caplog.records] == ["pdgan"] and f"chose {e.backend!r}" in caplog.text
    assert capsys.readouterr().err == ""  # a library logs, it does not print
    Engine(engine.model, backend="auto", device="cpu", batch_size=4, verbose=True)
    assert f"chose {e.backend!r}" in capsys.readouterr().err  # unless asked to


def test_generate_is_reproducible_and_batch_independent(engine):
    a = engine.generate(5, seed=7)
    assert a.shape == (5, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(engine.generate(5, seed=7), a)
    assert_same_images(engine.generate(3, seed=7, batch_size=2), a[:3])  # image i depends on (seed, i)
    b = engine.generate(5, seed=8)
    assert (a != b).mean() > 0.5
    assert a.std() > 20  # real images, not a constant
    assert image_seeds(7, 3, 2) == [7 * 2**16 + 3, 7 * 2**16 + 4]


def test_seed_none_is_reported_and_reproducible(engine):
    a = engine.generate(2)
    assert isinstance(engine.last_seed, int)
    np.testing.assert_array_equal(engine.generate(2, seed=engine.last_seed), a)


def test_generate_zero_and_streaming(engine):
    empty = engine.generate(0, seed=1)
    assert empty.shape == (0, 32, 32, 3) and empty.dtype == np.uint8
    batches = list(engine.iter_batches(5, seed=2, batch_size=2, progress=False))
    assert [len(b) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(batches), engine.generate(5, seed=2, batch_size=2))
    assert_same_images(np.concatenate(batches), engine.generate(5, seed=2))


def test_padding_for_static_shape_backends(engine, monkeypatch):
    want = engine.generate(3, seed=4, batch_size=2)
    seen = []
    runner = engine.runner

    def spy(*args):
        seen.append(args[0].shape[0])
        return type(runner).__call__(runner, *args)

    monkeypatch.setattr(engine, "runner", spy)
    spy.static_shapes = True
    got = engine.generate(3, seed=4, batch_size=2)
    assert seen == [2, 2]  # the last batch of 1 was padded to 2
    assert_same_images(got, want)


@pytest.mark.parametrize("n, exc", [(-1, ValueError), (2.0, TypeError), (True, TypeError), ("3", TypeError),
                                    (None, TypeError)])
def test_bad_n(engine, n, exc):
    with pytest.raises(exc, match="n must be"):
        engine.generate(n, seed=0)


def test_bad_arguments(engine):
    nz = engine.config.generator.nz
    with pytest.raises(ValueError, match=rf"z_T must have shape \(2, {nz}\)"):
        engine.generate(2, seed=0, z_T=torch.zeros(3, nz))
    with pytest.raises(ValueError, match="z_T must have shape"):
        engine.generate_from(torch.zeros(2, nz + 1))
    with pytest.raises(TypeError, match="floating-point"):
        engine.generate_from(torch.zeros(2, nz, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        engine.generate_from(torch.full((1, nz), float("nan")))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        engine.generate(2, seed=0, batch_size=0)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 65536\)"):
        engine.generate(1, seed=-1)
    with pytest.raises(ValueError, match="runs past"):
        engine.generate(2**16 + 1, seed=65535)
    with pytest.raises(ValueError, match="unknown backend 'fast'.*torch, optimized, compile"):
        Engine(engine.model, backend="fast", verbose=False)
    with pytest.raises(TypeError, match="dtype must be"):
        Engine(engine.model, backend="torch", dtype=16, verbose=False)
    with pytest.raises(ValueError, match="unknown dtype"):
        Engine(engine.model, backend="torch", dtype="int8", verbose=False)
    with pytest.raises(ValueError, match="bfloat16"):
        Engine(engine.model, backend="torch", dtype=torch.float16, device="cpu", verbose=False)
    with pytest.raises(ValueError, match="unknown preset"):
        Engine.from_preset("mnist")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Engine(engine.model, backend="torch", device="cuda", verbose=False)


def test_one_code_for_all_images(engine):
    z = engine.sample_latents(1, seed=3)[0]
    imgs = engine.generate(2, seed=5, z_T=z)
    np.testing.assert_array_equal(imgs, engine.generate_from(torch.stack([z, z]), seed=5))


def test_latent_path_equals_generate_from_its_codes(engine):
    codes = engine.sample_latents(3, seed=9)
    assert codes.shape == (3, engine.config.generator.nz)
    np.testing.assert_array_equal(engine.generate_from(codes, seed=9), engine.generate(3, seed=9))


def test_encode_then_generate_from(engine):
    imgs = engine.generate(3, seed=1)
    z = engine.encode(imgs)
    assert z.shape == (3, engine.config.generator.nz) and z.dtype == torch.float32
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    torch.testing.assert_close(engine.encode(x), z)  # float NCHW in [-1, 1] is the same input
    out = engine.generate_from(z, seed=2)
    assert out.shape == imgs.shape and out.dtype == np.uint8
    with pytest.raises(ValueError, match="NHWC"):
        engine.encode(imgs.transpose(0, 3, 1, 2).copy())
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        engine.encode(x * 255)


def test_checkpoint_without_latent(engine, tmp_path):
    model = PDGAN("digits", with_latent=False)
    redraw_zero_init(model)
    path = save_checkpoint(model, tmp_path / "nolatent")
    e = Engine.from_checkpoint(path, backend="torch", device="cpu", verbose=False)
    with pytest.raises(ValueError, match="pass z_T.*train the latent denoiser"):
        e.generate(2, seed=0)
    z = torch.randn(2, e.config.generator.nz)
    assert e.generate_from(z, seed=0).shape == (2, 32, 32, 3)
    # the optimised backend gives the same uint8 images as the reference (fp32)
    e2 = Engine.from_checkpoint(path, backend="optimized", device="cpu", verbose=False)
    a, b = e.generate_from(z, seed=0), e2.generate_from(z, seed=0)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_save_grid_writes_a_png(engine, tmp_path):
    from PIL import Image

    imgs = engine.generate(6, seed=0)
    path = engine.save_grid(imgs, tmp_path / "grid.png", nrow=3)
    with Image.open(path) as im:  # decoded by Pillow, not by our own code
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (3 * 34 + 2, 2 * 34 + 2)
        rows = np.asarray(im)
    np.testing.assert_array_equal(rows[2:34, 2:34], imgs[0])
    np.testing.assert_array_equal(rows[36:68, 70:102], imgs[5])
    assert (rows[:2] == 255).all() and (rows[:, 34:36] == 255).all()  # white padding between images


# --- the seed rule (pdgan_infer.seeds) -----------------------------------------------------------------
def test_image_i_comes_from_seeds_i_alone(engine):
    """Each image is made one at a time, from its own seed: the reference the batched call must match."""
    seeds = [7, 0, 123456, 2**32 - 1, 7]
    one_by_one = np.concatenate([engine.generate(seeds=[s], batch_size=1) for s in seeds])
    assert_same_images(engine.generate(seeds=seeds), one_by_one)
    np.testing.assert_array_equal(one_by_one[0], one_by_one[4])  # the same seed twice: the same image
    assert (one_by_one[0] != one_by_one[1]).mean() > 0.5
    # image 7 of range(16) is image 0 of [7] and of [7, 3, 100] (it ignores the others)
    batch = engine.generate(seeds=range(16))
    assert_same_images(batch[7:8], engine.generate(seeds=[7, 3, 100])[:1])
    assert_same_images(batch[7:8], one_by_one[:1])


def test_generate_n_seed_is_seeds_s_times_65536_plus_i(engine):
    seeds = [3 * 2**16 + i for i in range(5)]
    assert image_seeds(3, 0, 5) == seeds
    np.testing.assert_array_equal(engine.generate(5, seed=3), engine.generate(seeds=seeds))
    np.testing.assert_array_equal(engine.generate(seeds=range(4)), engine.generate(4, seed=0))
    np.testing.assert_array_equal(engine(seeds=range(2)), engine.generate(seeds=[0, 1]))  # __call__
    torch.testing.assert_close(engine.sample_latents(seeds=seeds), engine.sample_latents(5, seed=3))
    batches = list(engine.iter_batches(seeds=seeds, batch_size=2, progress=False))
    assert [len(b) for b in batches] == [2, 2, 1]
    z = engine.sample_latents(seeds=[9, 10])
    np.testing.assert_array_equal(engine.generate_from(z, seeds=[9, 10]), engine.generate(seeds=[9, 10]))


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"n": 2, "seed": 0, "seeds": [1, 2]}, ValueError, "not both"),
    ({"n": 3, "seeds": [1, 2]}, ValueError, "n=3 but 2 seeds"),
    ({"seeds": [1, -1]}, ValueError, r"seeds\[1\] = -1 is outside \[0, 2\*\*32\)"),
    ({"seeds": [2**32]}, ValueError, "outside"),
    ({"seeds": [1.0]}, TypeError, "must be an integer"),
    ({"seeds": "0-9"}, TypeError, "sequence of integers"),
    ({}, TypeError, "n must be an integer"),
])
def test_bad_seeds(engine, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        engine.generate(**kwargs)


def _peak_bytes(fn) -> int:
    import tracemalloc
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_seed_ranges_are_checked_without_listing_them(engine):
    """A range of seeds is checked by its end points: `generate` refuses a too-large result, and `iter_batches`
    streams, without a list of every seed (10**7 of them listed are ~0.4 GB)."""
    def refused():
        with pytest.raises(ValueError, match="GiB of images in memory"):
            engine.generate(seeds=range(10**7))
    assert _peak_bytes(refused) < 8 << 20
    with pytest.raises(ValueError, match="GiB of images in memory"):
        engine.generate(seeds=range(2**32 - 1))
    first = []
    assert _peak_bytes(lambda: first.append(next(engine.iter_batches(seeds=range(3 * 10**6), progress=False)))) \
        < 8 << 20
    np.testing.assert_array_equal(first[0], engine.generate(seeds=[0, 1, 2, 3]))
    next(engine.iter_batches(seeds=range(3 * 10**8), progress=False))  # the reviewer's size: no list, no wait
    with pytest.raises(ValueError, match=r"seeds\[-1\] = 4294967296 is outside"):
        engine.iter_batches(seeds=range(2**32 + 1))


def test_progress_bar_off_without_tty(engine, capsys):
    engine.generate(2, seed=0)
    if not sys.stderr.isatty():
        assert "img/s" not in capsys.readouterr().err


def test_misspelt_keywords_are_refused(engine):
    """Reliability review, defect 14: Engine(..., bach_size=4) ignored the misspelt keyword."""
    with pytest.raises(TypeError, match=r"unknown option 'bach_size'; backend options are cuda_graph .*"
                                        r"the Engine's own: backend, device, dtype, batch_size"):
        Engine(engine.model, backend="torch", device="cpu", bach_size=4)
    with pytest.raises(TypeError, match="unknown options 'cuda_grpah', 'x'"):
        create("torch", engine.model, CPU, torch.float32, cuda_grpah=False, x=1)
    create("torch", engine.model, CPU, torch.float32, export_cache_dir=None)  # a known option is fine anywhere


@pytest.mark.parametrize("n, seed, match", [
    (10**7, 0, r"generate\(10000000\) would hold 28.6 GiB .*iter_batches\(n, seed\) or .*pdgan-generate"),
    (2**31, 0, r"generate\(2147483648\) would hold 6144.0 GiB .*iter_batches"),
    (10**12, None, r"n=1000000000000 is more than the 2\*\*32 per-image seeds"),
    (2**32 + 1, 0, r"more than the 2\*\*32 per-image seeds")])
def test_huge_n_fails_before_allocating(engine, monkeypatch, n, seed, match):
    """Defect 21: generate(10**7) died in MemoryError after allocating; 2**31 passed the seed check and
    asked numpy for 6 TiB; 10**12 with seed=None failed in secrets.randbelow ('Upper bound must be
    positive'). One line now, before any allocation or sampling, naming the streaming ways."""
    monkeypatch.setattr(np, "empty", lambda *a, **k: pytest.fail("generate allocated its result"))
    monkeypatch.setattr(engine, "_sample_batch", lambda *a, **k: pytest.fail("generate sampled"))
    with pytest.raises(ValueError, match=match) as e:
        engine.generate(n, seed=seed)
    assert "\n" not in str(e.value)


def test_iter_batches_streams_a_run_generate_refuses(engine, monkeypatch):
    """The message points at iter_batches: it must take the same n without building n seeds."""
    seen = []
    monkeypatch.setattr(engine, "_sample_batch", lambda seeds, z, pad_to: seen.append(list(seeds))
                        or torch.zeros(len(seeds), 3, 32, 32))
    batches = engine.iter_batches(2**31, seed=0, batch_size=4)
    assert next(batches).shape == (4, 32, 32, 3) and next(batches).shape == (4, 32, 32, 3)
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_encode_warns_on_images_in_0_1(engine):
    """Defect 21: float images in [0, 1] were encoded as if in [-1, 1], without a word."""
    x = torch.rand(2, 3, 32, 32)
    with pytest.warns(UserWarning, match=r"as if they were in \[0, 1\]; encode wants \[-1, 1\]"):
        engine.encode(x)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.encode(x * 2 - 1)  # [-1, 1]: no warning


def test_backend_unavailable_is_a_pdgan_error():
    from pdgan_infer import PDGANError
    assert issubclass(BackendUnavailable, PDGANError) and issubclass(BackendUnavailable, RuntimeError)


# --- noise and graphs on the device; inputs on the meta device -------------------------------------
# regression: GPU review 3.1
def test_engine_draws_the_noise_on_its_device(monkeypatch):
    """Per-image noise came from CPU torch.Generators and was copied to the GPU (3.9 ms per 256x256
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


# regression: GPU review 3.1
def test_engine_graphs_the_latent_ddim_when_the_runner_replays_graphs(monkeypatch):
    """The latent DDIM (10 steps of the MLP, ~700 launches per batch) ran eagerly outside the CUDA
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


@pytest.fixture(scope="module")
def tiny_engine() -> Engine:
    torch.manual_seed(0)
    return Engine(PDGAN(tiny_config()), backend="torch", device="cpu", batch_size=4)


# regression: reliability re-run, api.genfrom.15
def test_generate_from_meta_latents_is_a_value_error(tiny_engine):
    """z_T on the meta device ended in "RuntimeError: Tensor.item() cannot be called on meta
    tensors" (from the finiteness check); it is a one-line ValueError naming z_T."""
    nz = tiny_engine.config.generator.nz
    with pytest.raises(ValueError, match="z_T is on the meta device"):
        tiny_engine.generate_from(torch.zeros(2, nz, device="meta"), seed=0)
    with pytest.raises(ValueError, match="z_T is on the meta device"):
        tiny_engine.generate(2, seed=0, z_T=torch.zeros(nz, device="meta"))


def test_encode_meta_images_is_a_value_error(tiny_engine):
    """The same for encode (a float batch on the meta device)."""
    r = tiny_engine.config.resolution
    with pytest.raises(ValueError, match="images is on the meta device"):
        tiny_engine.encode(torch.zeros(2, 3, r, r, device="meta"))


@pytest.fixture(scope="module")
def varied_engine() -> Engine:
    """The tiny model with its zero-initialised layers re-drawn: images of full contrast, not uint8 127/128."""
    torch.manual_seed(0)
    model = PDGAN(tiny_config())
    redraw_zero_init(model)
    return Engine(model, backend="torch", device="cpu", batch_size=4)


def test_output_type_and_return_dict(varied_engine):
    """"np" is the default path, unchanged; "pil" and "pt" hold the same uint8 images (decoded by Pillow, and
    rounded back from [0, 1] by hand); return_dict gives GenerateOutput with the per-image seeds."""
    from pdgan_infer import GenerateOutput
    ref = varied_engine.generate(3, seed=1)
    assert len(np.unique(ref)) > 100  # images, not a flat grey
    np.testing.assert_array_equal(varied_engine(3, seed=1, output_type="np"), ref)
    pils = varied_engine.generate(3, seed=1, output_type="pil")
    assert [p.mode for p in pils] == ["RGB"] * 3
    np.testing.assert_array_equal(np.stack([np.asarray(p) for p in pils]), ref)
    pt = varied_engine(3, seed=1, output_type="pt")
    assert pt.dtype == torch.float32 and tuple(pt.shape) == (3, 3, *ref.shape[1:3])
    assert float(pt.min()) >= 0.0 and float(pt.max()) <= 1.0
    np.testing.assert_array_equal(np.rint(pt.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8), ref)
    out = varied_engine(3, seed=1, return_dict=True)
    assert isinstance(out, GenerateOutput) and out.seeds == [65536, 65537, 65538]
    np.testing.assert_array_equal(out.images, ref)
    out = varied_engine(seeds=[9, 4], output_type="pil", return_dict=True)
    assert out.seeds == [9, 4] and len(out.images) == 2
    np.testing.assert_array_equal(np.asarray(out.images[1]), varied_engine.generate(seeds=[4])[0])
    z_T = varied_engine.sample_latents(seeds=[9, 4])
    out = varied_engine.generate_from(z_T, seeds=[9, 4], output_type="pt", return_dict=True)
    np.testing.assert_array_equal(np.rint(out.images.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8),
                                  varied_engine.generate(seeds=[9, 4]))


def test_generator_points_to_seeds(varied_engine):
    """diffusers' generator= (a torch.Generator or a list of them) is answered with the seed rule."""
    for call in (lambda: varied_engine(2, generator=torch.Generator().manual_seed(0)),
                 lambda: varied_engine.generate(generator=[torch.Generator(), torch.Generator()]),
                 lambda: varied_engine.generate_from(torch.zeros(2, varied_engine.config.generator.nz),
                                                   generator=torch.Generator())):
        with pytest.raises(TypeError, match=r"one integer seed of its own .* pass seeds=\[s0, s1, ...\]"):
            call()
    with pytest.raises(ValueError, match="unknown output_type 'latent'"):
        varied_engine(2, seed=0, output_type="latent")


@pytest.mark.usefixtures("torchscript_export")
def test_export_cache_dir_and_its_old_name(varied_engine, tmp_path):
    """export_cache_dir= is where the onnxruntime backend caches its graph; cache_dir= (its old name) warns and
    still puts the graph there; giving both is a TypeError."""
    if AVAILABLE["onnxruntime"] is not None:
        pytest.skip(AVAILABLE["onnxruntime"])
    with pytest.warns(DeprecationWarning, match="cache_dir= is now called export_cache_dir="):
        old = Engine(varied_engine.model, backend="onnxruntime", device="cpu", cache_dir=tmp_path / "c")
    graphs = list((tmp_path / "c").rglob("*.onnx"))
    assert len(graphs) == 1
    new = Engine(varied_engine.model, backend="onnxruntime", device="cpu", export_cache_dir=tmp_path / "c")
    assert list((tmp_path / "c").rglob("*.onnx")) == graphs  # found in the same cache, not exported again
    np.testing.assert_array_equal(old.generate(2, seed=0), new.generate(2, seed=0))
    assert_same_images(new.generate(2, seed=0), varied_engine.generate(2, seed=0))
    with pytest.raises(TypeError, match="give export_cache_dir= only"):
        Engine(varied_engine.model, backend="torch", cache_dir=tmp_path, export_cache_dir=tmp_path)
    with pytest.warns(DeprecationWarning, match="cache_dir= is now called export_cache_dir="):
        create("torch", varied_engine.model, CPU, torch.float32, cache_dir=None)


def test_progress_off_a_terminal_only_when_asked(engine, caplog, capfd, monkeypatch):
    """A plain script (stderr not a terminal): generate shows nothing by default (a library does not fill a log);
    progress=True logs start, progress and end lines; the images are the same either way."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("PDGAN_PROGRESS_INTERVAL", "0")
    caplog.set_level(logging.INFO, logger="pdgan.progress")
    quiet = engine.generate(seeds=[1, 2, 3, 4, 5])
    assert [r for r in caplog.records if r.name == "pdgan.progress"] == [] and capfd.readouterr().err == ""
    shown = engine.generate(seeds=[1, 2, 3, 4, 5], progress=True)  # batches of 4: 4 images, then 1
    got = [r.getMessage() for r in caplog.records if r.name == "pdgan.progress"]
    desc = f"pdgan {engine.backend}"
    assert got[0] == f"{desc}: started, 5 img" and got[-1].startswith(f"{desc}: done, 5 img in ")
    assert [m.split(" (")[0] for m in got[1:-1]] == [f"{desc}: 4/5 img", f"{desc}: 5/5 img"]
    np.testing.assert_array_equal(quiet, shown)


def test_dtype_auto_is_bfloat16_where_the_cpu_runs_it_natively(monkeypatch):
    import pdgan_infer.optimize as optimize
    from pdgan_infer.engine import resolve_dtype
    assert resolve_dtype("auto", CPU) == (torch.bfloat16 if BF16_OK else torch.float32)
    monkeypatch.setattr(optimize, "reduced_dtype_supported", lambda dtype, device: "no native bfloat16")
    assert resolve_dtype("AUTO", CPU) == torch.float32
    monkeypatch.setattr(optimize, "reduced_dtype_supported", lambda dtype, device: None)
    assert resolve_dtype("auto", CPU) == torch.bfloat16
    assert resolve_dtype(None, CPU) == torch.float32  # the default stays float32
