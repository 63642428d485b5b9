"""OpenVINO peer rows (pdgan_infer.backends.openvino): the project's exported sampler graph compiled by
OpenVINO gives the reference sampler's images, at float32 within the exported graphs' float32
tolerance, at bfloat16 inference precision within twice torch's own bf16 difference."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from pdgan_infer import bench
from pdgan_infer.backends import create
from pdgan_infer.cli import bench as bench_cli
from pdgan_infer.export.onnx import FP16_ATOL, FP32_ATOL
from pdgan_infer.sampler import draw_noise

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("openvino") is None or
                                 importlib.util.find_spec("onnx") is None,
                                 reason="openvino (pip install 'pdgan[openvino]') and onnx are not installed here"),
              # OpenVINO over a TorchScript-exported graph (seconds to write); the dynamo graphs' own parity is
              # tests/infer/test_export.py's, and pdgan-bench's openvino rows run OpenVINO on them
              pytest.mark.usefixtures("torchscript_export")]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from pdgan_infer.engine import Engine

    engine = Engine.from_preset("digits", seed=3, backend="torch", device="cpu")
    c, n = engine.config, 6
    noise = draw_noise(list(range(n)), engine.model.schedule.T, c.channels, c.resolution, c.generator.nz)
    z_T = torch.randn(n, c.generator.nz, generator=torch.Generator().manual_seed(1))
    inputs = (noise.x_T, z_T, noise.z, noise.eps)
    return engine, inputs, engine.runner(*inputs), tmp_path_factory.mktemp("ovcache")


def test_float32_matches_the_torch_reference(digits):
    from pdgan_infer.backends.openvino import OpenVinoRunner

    engine, inputs, ref, cache = digits
    runner = OpenVinoRunner(engine.model, torch.device("cpu"), torch.float32, cache_dir=str(cache), threads=1)
    assert runner.sampler.inference_precision == "f32"  # set explicitly: OpenVINO's default is bf16 on bf16 CPUs
    out = runner(*inputs)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert (out - ref).abs().max().item() <= FP32_ATOL


@pytest.mark.slow
def test_bfloat16_within_twice_torch_bf16(digits):
    from pdgan_infer.backends.openvino import OpenVinoRunner, OpenVinoSampler

    engine, inputs, ref, cache = digits
    try:
        runner = OpenVinoRunner(engine.model, torch.device("cpu"), torch.bfloat16, cache_dir=str(cache), threads=1)
    except bench_unavailable() as e:
        pytest.skip(f"this CPU has no bf16 for OpenVINO: {e}")
    assert isinstance(runner.sampler, OpenVinoSampler) and runner.sampler.inference_precision == "bf16"
    torch_bf16 = create("torch", engine.model, torch.device("cpu"), torch.bfloat16)(*inputs)
    ov_diff = (runner(*inputs) - ref).abs().max().item()
    torch_diff = (torch_bf16 - ref).abs().max().item()
    assert 0 < ov_diff <= 2 * torch_diff + FP16_ATOL  # > 0: really bf16, not the float32 graph


def bench_unavailable():
    from pdgan_infer.backends.base import BackendUnavailable
    return BackendUnavailable


def test_unsupported_dtype_and_device_name_the_fix(digits):
    from pdgan_infer.backends.openvino import OpenVinoSampler, probe

    engine = digits[0]
    assert probe(torch.device("cpu")) is None
    assert "--device cpu" in probe(torch.device("cuda"))
    with pytest.raises(bench_unavailable(), match="float32 or bfloat16"):
        OpenVinoSampler(engine.model, "cpu", torch.float16)


@pytest.mark.slow
def test_bench_peer_row_same_images_as_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bench.flops, "PEAK_SHAPE", (16, 128, 16, 16))  # small, but not too small for a peak
    out = tmp_path / "out.json"
    threads = torch.get_num_threads()
    try:
        rc = bench_cli.main(["--preset", "digits", "--n", "4", "--repeats", "1", "--latency-repeats", "1",
                             "--threads", "1", "--device", "cpu", "--backends", "openvino:float32", "--json", str(out),
                             "-q"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["header"]["versions"]["openvino"]
    _, ov = data["records"]
    assert (ov["backend"], ov["dtype"], ov["peer"]) == ("openvino", "float32", True) and "error" not in ov
    assert ov["max_pixel_diff_vs_torch"] <= 2  # the onnxruntime row's tolerance
    assert ov["latency_b1_s"] > 0 and 0 < ov["fraction_of_conv_peak"] <= 1.5
