"""Packaging: the optional GPU extras of pyproject.toml do not clash, TensorRT is pinned to the tested major
versions, and the Makefile's default extras install."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def test_export_extras_carry_the_dynamo_exporter_and_serve_carries_the_triton_export():
    """torch's dynamo ONNX exporter needs onnxscript; `pip install 'pdgan[serve]'` then `pdgan-export --format triton`
    needs onnx (write and check the serving graph), onnxscript and onnxruntime (verify it) without the onnx extra."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {k: {r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for r in v}
             for k, v in extras.items()}
    for key in ("onnx", "gpu", "tensorrt", "openvino", "serve"):
        assert {"onnx", "onnxscript"} <= names[key], key
    assert "onnxruntime" in names["serve"]
