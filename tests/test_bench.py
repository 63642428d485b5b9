"""pdgan-bench: a small real run (digits, torch + onnxruntime), its JSON/PNG, the table, the memory
probe and benchmarks/make_table.py."""
from __future__ import annotations

import importlib.util
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from pdgan_infer import bench

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("backend", "dtype", "device", "n", "batch_size", "median_s", "images_per_s", "peak_mem_mb",
            "speedup_vs_torch", "warmup_s", "min_s", "max_s", "preset", "nfe", "paper_target_s")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_bench_digits_torch_onnxruntime(tmp_path, monkeypatch, capsys):
    pytest.importorskip("pdgan_infer.engine")
    monkeypatch.setenv("PDGAN_CACHE_DIR", str(tmp_path / "cache"))
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    threads = torch.get_num_threads()
    try:  # one thread: small batches gain nothing from two, and it is immune to a busy machine
        rc = bench.main(["--preset", "digits", "--n", "20", "--backends", "torch,onnxruntime", "--repeats", "1",
                         "--threads", "1", "--json", str(out), "--png", str(png)])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out.read_text())
    h = data["header"]
    for key in ("device_name", "versions", "git_commit", "date"):
        assert key in h
    assert {"torch", "triton", "onnxruntime", "python"} <= set(h["versions"])
    recs = {r["backend"]: r for r in data["records"]}
    assert set(recs) == {"torch", "onnxruntime"}, data["records"]
    for r in recs.values():
        assert "error" not in r, r
        for key in REQUIRED:
            assert key in r, key
        assert r["n"] == 20 and r["batch_size"] == 20 and r["nfe"] == 2 and r["preset"] == "digits"
        assert r["min_s"] <= r["median_s"] <= r["max_s"] and r["images_per_s"] > 0 and r["peak_mem_mb"] >= 0
        assert r["paper_target_s"] is None  # no paper number for the digits preset
    assert recs["torch"]["reference"] and recs["torch"]["speedup_vs_torch"] == pytest.approx(1.0)
    assert recs["onnxruntime"]["max_pixel_diff_vs_torch"] <= 2  # same seeds, same images (rounding aside)
    assert "| torch | float32 |" in printed and "| onnxruntime | float32 |" in printed
    assert _png_size(png.read_bytes())[0] > 0


def test_fallback_png_chart_decodes(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    rec = {"dtype": "float32", "preset": "cifar10"}
    result = {"header": {"device_name": "Test CPU @ 2.0GHz"},
              "records": [{**rec, "backend": "torch", "images_per_s": 10.0},
                          {**rec, "backend": "onnxruntime", "images_per_s": 25.5},
                          {**rec, "backend": "tensorrt", "error": "ImportError: no", "images_per_s": None}]}
    path = tmp_path / "chart.png"
    bench.write_png(result, path)
    data = path.read_bytes()
    w, h = _png_size(data)
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4:idat])
    pixels = np.frombuffer(zlib.decompress(data[idat + 4:idat + 4 + length]), np.uint8).reshape(h, 1 + 3 * w)
    rgb = pixels[:, 1:].reshape(h, w, 3)
    bar = (rgb == np.array([76, 114, 176], np.uint8)).all(-1)
    widths = [int(bar[y].sum()) for y in range(h) if bar[y].any()]
    assert widths and max(widths) > 2 * min(widths)  # two bars, the second 2.5x longer
    assert (rgb == 0).any()  # some text


def test_table_lists_unavailable_backends():
    result = {"header": {"device_name": "cpu", "device": "cpu", "versions": {"torch": "x"}, "torch_threads": 2,
                         "date": "today", "git_commit": None},
              "records": [{"backend": "tensorrt", "dtype": "float16", "n": 4, "batch_size": 4,
                           "error": "ImportError: needs TensorRT: pip install 'pdgan[gpu]'"}]}
    text = bench.table(result)
    assert "unavailable" in text and "pdgan[gpu]" in text


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS through /proc")
def test_peak_memory_sees_a_temporary_allocation():
    with bench.PeakMemory(torch.device("cpu")) as mem:
        x = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        del x
    assert mem.peak_mb >= 48


def test_make_table_reads_both_formats(tmp_path):
    spec = importlib.util.spec_from_file_location("make_table", ROOT / "benchmarks" / "make_table.py")
    make_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_table)
    rec = {"backend": "torch", "dtype": "float32", "n": 100, "batch_size": 100, "median_s": 2.0, "min_s": 1.9,
           "max_s": 2.2, "images_per_s": 50.0, "s_per_100_images": 2.0, "paper_target_s_per_100": 0.16,
           "warmup_s": 2.5, "build_s": 0.1, "peak_mem_mb": 800.0, "speedup_vs_torch": 1.0}
    b = tmp_path / "bench.json"
    b.write_text(json.dumps({"header": {"device_name": "cpu", "device": "cpu", "versions": {"torch": "2"},
                                        "torch_threads": 2, "date": "d", "git_commit": "c"}, "records": [rec]}))
    p = tmp_path / "kernels.json"
    rows = [{"name": name, "group": "adagn X", "stats": {"median": median},
             "extra_info": {"provider": name, "bytes": 4e6}} for name, median in (("torch", 0.002), ("native", 0.001))]
    p.write_text(json.dumps({"machine_info": {}, "commit_info": {"id": "c"}, "datetime": "d", "benchmarks": rows}))
    text = make_table.render(b)
    assert "| torch | float32 | 100 | 100 | 2.000 |" in text and "0.16" in text
    text = make_table.render(p)
    assert "| adagn X | 2.000 (2.0 GB/s) | 1.000 (4.0 GB/s) | 2.00x |" in text
