"""Every backend on a converted DDGAN model (pdgan-convert's folder of the DDGAN reference fixture, latent slot
"none", DDGAN's schedule) at T = 4 and T = 2, against the torch backend on the same seeds.

Tolerances are the backends' own (tests/infer/test_engine.py, backends/test_openvino.py, tests/serve): float32
x0 within 1e-4 for torch-graph backends and ONNX Runtime (measured <= 3e-6 here), `pdgan_infer.export.onnx.FP32_ATOL`
for OpenVINO (the registered peer backend), images from seeds equal up to one uint8 level. In the default suite
every Engine backend runs at T = 4 (Triton on one image; the exported backends on a graph of the TorchScript
exporter, seconds to write). Slow-marked: the exported backends at T = 2 on the dynamo exporter's graph (~60 s on
the shared 2-core Zen 4), the Triton-server export (its serving graph, ~30 s) and Triton's CPU interpreter on a
whole batch.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ddgan_fixture import load_fixture, register, small_config  # tests/support

from pdgan_infer.backends import BACKENDS
from pdgan_infer.convert import convert_ddgan
from pdgan_infer.engine import Engine
from pdgan_infer.export.onnx import FP32_ATOL
from pdgan_infer.sampler import draw_noise

AVAILABLE = Engine.backends("cpu")
EXPORTED = {"onnxruntime", "openvino"}
SEEDS = [5, 6, 7]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{T: (model folder, torch engine, explicit sampler inputs, torch x0)} for T = 4 and 2."""
    data = load_fixture()
    root = tmp_path_factory.mktemp("ddgan")
    torch.save(data["state_dict"], root / "netG_1.pth")
    with pytest.MonkeyPatch.context() as mp:
        register(mp, data)
        out = {}
        for T in (4, 2):
            folder = convert_ddgan(root / "netG_1.pth", small_config(data, T), root / f"T{T}")
            engine = Engine.from_pretrained(folder, backend="torch", device="cpu", batch_size=4)
            c = engine.config
            noise = draw_noise(SEEDS, T, c.channels, c.resolution, c.generator.nz)
            args = (noise.x_T, noise.z_T_noise, noise.z, noise.eps)  # latent slot none: z_T is that noise
            out[T] = folder, engine, args, engine.runner(*args)
        out["cache"] = root / "export-cache"
        yield out


def _params():
    out = []
    for T in (4, 2):
        for name in BACKENDS:
            marks = []
            if AVAILABLE[name] is not None:
                marks.append(pytest.mark.skip(reason=f"{name}: {AVAILABLE[name]}"))
            if name == "compile" or (name == "triton" and not torch.cuda.is_available()) or (
                    T == 2 and name in EXPORTED):
                marks.append(pytest.mark.slow)
            out.append(pytest.param(T, name, marks=marks, id=f"T{T}-{name}"))
    return out


@pytest.mark.parametrize("T, name", _params())
def test_backend_matches_torch_on_a_converted_model(converted, T, name, request):
    if T == 4 and name in EXPORTED:  # the runners on a TorchScript-exported graph; T = 2 (slow): the dynamo graph
        request.getfixturevalue("torchscript_export")
    folder, ref_engine, args, ref = converted[T]
    assert ref_engine.model.latent_slot == "none" and ref_engine.model.schedule.T == T and ref.std() > 0.1
    options = {"export_cache_dir": str(converted["cache"])} if name in ("onnxruntime", "tensorrt", "openvino") else {}
    engine = Engine.from_pretrained(folder, backend=name, device="cpu", batch_size=4, **options)
    assert engine.backend == name
    out = engine.runner(*args)
    atol = FP32_ATOL if name == "openvino" else 1e-4  # OpenVINO's CPU plugin fuses and reorders float32 ops
    assert out.shape == ref.shape and (out - ref).abs().max().item() <= atol
    images, ref_images = engine.generate(seeds=SEEDS), ref_engine.generate(seeds=SEEDS)
    assert images.shape == (3, 16, 16, 3) and np.abs(images.astype(int) - ref_images.astype(int)).max() <= 1


@pytest.mark.skipif(AVAILABLE["triton"] is not None, reason=f"triton: {AVAILABLE['triton']}")
def test_triton_one_image_at_T4(converted):
    """Triton's kernels (the CPU interpreter here: a few seconds for one image) on the T = 4 model."""
    folder, _, args, ref = converted[4]
    engine = Engine.from_pretrained(folder, backend="triton", device="cpu", batch_size=1)
    out = engine.runner(*(t[:1] if i < 2 else t[:, :1] for i, t in enumerate(args)))
    assert (out - ref[:1]).abs().max().item() <= 1e-4


@pytest.mark.slow  # a serving-graph ONNX export: ~30 s on the shared 2-core Zen 4
@pytest.mark.parametrize("T", [4, 2])
def test_triton_server_export_serves_engines_images(converted, tmp_path, T):
    """The seed-to-uint8 serving graph of `pdgan-export --format triton` in ONNX Runtime, against
    Engine(torch).generate on the same seeds (the export's own verification, asserted here)."""
    pytest.importorskip("onnxruntime")
    from pdgan_infer.serve.repository import export_triton

    _, engine, _, _ = converted[T]
    result = export_triton(engine.model, tmp_path / "repo", sampler_backend="python", max_batch_size=4)
    assert result.max_level_diff is not None and result.max_level_diff <= 1 and result.differing_fraction < 1e-3
    config = (tmp_path / "repo" / "pdgan_sampler" / "config.pbtxt").read_text()
    assert f"{T - 1}" in config  # z and eps have T - 1 steps
