"""The Engine and its backends (digits preset, random weights with every layer active).

Backends against the `torch` reference, same explicit noises and latents:
  fp32: max |x0 - ref| <= 1e-4 (x0 in [-1, 1]; measured <= 1e-5 for `optimized`).
  bf16: the rule of test_optimize: mean / max error <= 2x that of torch autocast bf16 + atol.
Unavailable backends are skipped with the probe's reason; `compile` (minutes of Inductor compilation)
and, without a GPU, `triton` (Triton's CPU interpreter) are slow and run with -m slow.
"""
from __future__ import annotations

import sys
import zlib

import numpy as np
import pytest
import torch

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


def test_auto_picks_and_reports(engine, capsys):
    e = Engine(engine.model, backend="auto", device="cpu", batch_size=4)
    assert e.backend in BACKENDS and AVAILABLE[e.backend] is None
    assert f"chose {e.backend!r}" in capsys.readouterr().err


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
    imgs = engine.generate(6, seed=0)
    path = engine.save_grid(imgs, tmp_path / "grid.png", nrow=3)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (w, h) == (3 * 34 + 2, 2 * 34 + 2)
    idat = data.index(b"IDAT")
    raw = zlib.decompress(data[idat + 4: idat + 4 + int.from_bytes(data[idat - 4:idat], "big")])
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)[:, 1:].reshape(h, w, 3)
    np.testing.assert_array_equal(rows[2:34, 2:34], imgs[0])


def test_progress_bar_off_without_tty(engine, capsys):
    engine.generate(2, seed=0)
    if not sys.stderr.isatty():
        assert "img/s" not in capsys.readouterr().err
