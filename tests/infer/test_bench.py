"""pdgan-bench: a small real run (digits, torch + onnxruntime), its JSON/PNG, the matplotlib chart,
the table, the CLI conventions, the memory probe and benchmarks/make_table.py."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pdgan_infer import bench
from pdgan_infer.cli import bench as bench_cli

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("backend", "dtype", "device", "n", "batch_size", "median_s", "images_per_s", "peak_mem_mb",
            "speedup_vs_torch", "warmup_s", "min_s", "max_s", "preset", "nfe", "paper_target_s")


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
@pytest.mark.usefixtures("torchscript_export")
def test_bench_digits_torch_onnxruntime(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PDGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bench.flops, "PEAK_SHAPE", (16, 128, 16, 16))  # the peak micro-benchmark, smaller
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    threads = torch.get_num_threads()
    try:  # one thread: small batches gain nothing from two, and it is immune to a busy machine
        rc = bench_cli.main(["--preset", "digits", "--n", "20", "--backends", "torch,onnxruntime", "--repeats", "1",
                         "--threads", "1", "--latency-repeats", "2", "--json", str(out), "--png", str(png)])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out.read_text())
    h = data["header"]
    for key in ("device_name", "versions", "git_commit", "date"):
        assert key in h
    assert {"torch", "triton", "onnxruntime", "python"} <= set(h["versions"])
    caps = torch.cpu.get_capabilities()  # what the CPU has, and so which bf16 convolutions native runs
    assert h["cpu_features"] == {k: bool(caps.get(k, False)) for k in ("avx512_f", "avx512_bf16", "amx_bf16")}
    from pdgan_infer.kernels import native
    assert h["native_bf16_convolutions"] == ("Winograd F(2x2, 3x3)" if native.winograd_bf16_preferred()
                                             else "oneDNN direct")
    assert f"native bf16 3x3 convolutions: {h['native_bf16_convolutions']}" in printed
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
    assert recs["onnxruntime"]["peer"] is True and recs["torch"]["peer"] is False
    peaks = h["conv_peak"]["gflops"]
    assert h["conv_peak"]["shape"] == [16, 128, 16, 16] and peaks["float32"] > 0 and peaks["bfloat16"] > 0
    for r in recs.values():
        assert 0 < r["latency_b1_s"] < r["median_s"] * 20 and len(r["latency_b1_times_s"]) == 2
        assert r["gflop_per_image"] == pytest.approx(h["gflop_per_image"]) and r["gflop_per_image"] > 0
        assert r["achieved_gflops"] == pytest.approx(r["gflop_per_image"] * 20 / r["median_s"])
        assert r["conv_peak_gflops"] == peaks["float32"]
        assert 0 < r["fraction_of_conv_peak"] <= 1.5
    assert "| torch | float32 |" in printed and "| onnxruntime (peer) | float32 |" in printed
    assert "3x3 conv peak (16x128x16x16)" in printed and "GFLOP per image" in printed
    assert _png_size(png)[0] > 0


CHART = {"header": {"device_name": "Test CPU @ 2.0GHz"},
         "records": [{"backend": "torch", "dtype": "float32", "preset": "cifar10", "n": 100, "images_per_s": 10.0,
                      "min_s": 8.0, "max_s": 12.5, "median_s": 10.0},
                     {"backend": "onnxruntime", "dtype": "float32", "preset": "cifar10", "n": 100,
                      "images_per_s": 25.0, "min_s": 3.9, "max_s": 4.2, "median_s": 4.0},
                     {"backend": "tensorrt", "dtype": "float16", "preset": "cifar10", "n": 100,
                      "error": "ImportError: no", "images_per_s": None}]}


def test_unknown_backend_is_refused_before_any_timing(monkeypatch):
    from pdgan_infer.bench import suite
    monkeypatch.setattr(suite, "bench_one", lambda *a, **k: pytest.fail("a backend was timed"))
    monkeypatch.setattr(suite, "conv_peak", lambda *a, **k: pytest.fail("the conv peak was timed"))
    with pytest.raises(ValueError, match="unknown backend 'torhc'; choose from torch, optimized"):
        suite.run(suite.BenchSettings(preset="digits", n=1, repeats=1), "cpu", ["torhc"], isolate=False)


def test_repeats_are_bounded(capsys):
    from pdgan_infer.cli.bench import parser
    assert parser().parse_args(["--repeats", "1000"]).repeats == 1000
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["--repeats", str(10**9)])
    assert e.value.code == 2 and r"--repeats: must be in [1, 1000]" in capsys.readouterr().err


def test_chart_bars_and_error_bars(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.container import BarContainer

    fig = bench.bar_chart(CHART)
    ax = fig.axes[0]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [round(b.get_width(), 6) for b in bars] == [25.0, 10.0]  # reference (torch) on top, unavailable left out
    assert [t.get_text() for t in ax.get_yticklabels()] == ["onnxruntime float32", "torch float32"]
    segments = bars.errorbar.lines[2][0].get_segments()  # from n / max_s to n / min_s
    np.testing.assert_allclose([(s[0][0], s[1][0]) for s in segments], [(100 / 4.2, 100 / 3.9), (8.0, 12.5)])
    bench.write_png(CHART, tmp_path / "chart.png")
    assert _png_size(tmp_path / "chart.png") == (800, 260)


def test_png_without_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'pdgan\[plot\]'"):
        bench.write_png(CHART, tmp_path / "chart.png")
    ran = []
    monkeypatch.setattr(bench, "run", lambda *a: ran.append(a))
    assert bench_cli.main(["--preset", "digits", "--png", str(tmp_path / "c.png")]) == 1  # before any benchmark
    assert ran == [] and "pip install 'pdgan[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "chart.png").exists() and not (tmp_path / "c.png").exists()


def test_cli_conventions(capsys):
    with pytest.raises(SystemExit) as e:
        bench_cli.main(["--version"])
    assert e.value.code == 0 and "pdgan-bench (pdgan)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench_cli.main(["--n", "0"])
    assert e.value.code == 2
    assert bench_cli.parser().parse_args([]).device == "auto"
    assert bench_cli.main(["--preset", "digits", "--device", "tpu", "-q"]) == 1
    assert "tpu" in capsys.readouterr().err


def test_flop_count_of_a_tiny_net_is_the_hand_formula():
    from types import SimpleNamespace

    class Tiny(torch.nn.Module):  # the generator's call signature: (x, z, t)
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8 * 10 * 10, 5)

        def forward(self, x, z, t):
            return self.fc(self.conv(x).flatten(1)) + z.sum() + t.sum()

    net = Tiny()
    conv = 2 * 8 * 10 * 10 * 3 * 3 * 3  # 2 * (output elements) * (C_in * kh * kw) multiply-adds, per image
    fc = 2 * 800 * 5
    x, z, t = torch.zeros(2, 3, 10, 10), torch.zeros(2, 4), torch.zeros(2)
    assert bench.count_flops(net, x, z, t) == 2 * (conv + fc)
    model = SimpleNamespace(config=SimpleNamespace(channels=3, resolution=10, generator=SimpleNamespace(nz=4)),
                            schedule=SimpleNamespace(T=2), generator=net)
    assert bench.model_flops_per_image(model) == 2 * (conv + fc)  # one image, times T = 2 NFE
    assert bench.model_flops_per_image(model, only="conv") == 2 * conv


def test_flop_rates_against_hand_numbers():
    rec = {"n": 100, "median_s": 10.0, "dtype": "float32"}
    bench.add_flop_rates(rec, 28.16, {"float32": 238.0, "bfloat16": 484.0})
    assert rec["achieved_gflops"] == pytest.approx(281.6) and rec["conv_peak_gflops"] == 238.0
    assert rec["fraction_of_conv_peak"] == pytest.approx(281.6 / 238.0)
    rec = {"n": 100, "median_s": 5.0, "dtype": "bfloat16"}
    bench.add_flop_rates(rec, 28.16, {"float32": 238.0, "bfloat16": 484.0})
    assert rec["fraction_of_conv_peak"] == pytest.approx(563.2 / 484.0)
    rec = {"n": 100, "median_s": 5.0, "dtype": "float16"}  # no float16 peak measured: no fraction
    bench.add_flop_rates(rec, 28.16, {"float32": 238.0, "bfloat16": 484.0})
    assert rec["achieved_gflops"] == pytest.approx(563.2) and rec["fraction_of_conv_peak"] is None
    rec = {"n": 100, "median_s": None, "dtype": "float32"}  # a failed row
    bench.add_flop_rates(rec, 28.16, None)
    assert rec["achieved_gflops"] is None and rec["fraction_of_conv_peak"] is None


def test_conv_peak_is_the_measured_rate(monkeypatch):
    monkeypatch.setattr(bench.flops, "timed", lambda fn, device: (0.5, fn()))  # every call "takes" 0.5 s
    shape = (2, 16, 4, 4)
    assert bench.conv_peak_gflops(torch.float32, shape, repeats=2) == pytest.approx(
        2 * 2 * 16 * 16 * 9 * 4 * 4 / 0.5 / 1e9)


def _without_openvino(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))


def test_openvino_probe_names_the_extra_for_each_missing_module(monkeypatch):
    from pdgan_infer.backends import openvino

    real = importlib.util.find_spec
    for missing in ("openvino", "onnx"):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, m=missing: None if name == m else real(name, *a))
        why = openvino.probe(torch.device("cpu"))
        assert why.startswith(missing) and why.endswith("pip install 'pdgan[openvino]'"), why


def test_openvino_missing_named_is_a_failed_run_with_the_pip_command(monkeypatch, tmp_path, capsys):
    _without_openvino(monkeypatch)
    monkeypatch.setattr(bench.flops, "PEAK_SHAPE", (2, 16, 4, 4))
    out = tmp_path / "out.json"
    rc = bench_cli.main(["--preset", "digits", "--n", "2", "--repeats", "1", "--latency-repeats", "0",
                         "--device", "cpu", "--backends", "openvino:bfloat16", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 1 and "Traceback" not in captured.err
    assert "pip install 'pdgan[openvino]'" in captured.err
    rec = json.loads(out.read_text())["records"][1]
    assert rec["backend"] == "openvino" and rec["peer"] and "pip install 'pdgan[openvino]'" in rec["error"]
    assert "| openvino (peer) | bfloat16 | 2 | 2 | unavailable: " in captured.out


def test_openvino_missing_in_the_default_list_is_reported_not_failed(monkeypatch, tmp_path, capsys):
    _without_openvino(monkeypatch)
    monkeypatch.setattr(bench.flops, "PEAK_SHAPE", (2, 16, 4, 4))
    from pdgan_infer.backends import probe
    monkeypatch.setattr(bench.suite, "probe_backends", lambda device: {"torch": None, "tensorrt": "needs a GPU",
                                                                       "openvino": probe("openvino", device)})
    out = tmp_path / "out.json"
    rc = bench_cli.main(["--preset", "digits", "--n", "2", "--repeats", "1", "--latency-repeats", "0",
                         "--device", "cpu", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    rows = [(r["backend"], r["dtype"]) for r in data["records"]]
    assert rows == [("torch", "float32"), ("openvino", "float32"), ("openvino", "bfloat16")]
    for r in data["records"][1:]:
        assert r["optional"] and "pip install 'pdgan[openvino]'" in r["error"]
    assert "pip install 'pdgan[openvino]'" in data["header"]["unavailable"]["openvino"]
    assert "| openvino (peer) | float32 | 2 | 2 | unavailable: " in capsys.readouterr().out


def test_checkpoint_accepts_a_bundled_name(monkeypatch, tmp_path, capsys):
    """--checkpoint digits times the bundled model (hub.resolve_model), as pdgan-generate and pdgan-export take it."""
    from pdgan_infer.hub import pretrained_path

    monkeypatch.setattr(bench.flops, "PEAK_SHAPE", (2, 16, 4, 4))
    seen = []
    real = bench.suite.make_engine
    monkeypatch.setattr(bench.suite, "make_engine", lambda *a: seen.append(a[4]) or real(*a))
    out = tmp_path / "out.json"
    rc = bench_cli.main(["--checkpoint", "digits", "--backends", "torch", "--n", "2", "--repeats", "1",
                         "--latency-repeats", "0", "--device", "cpu", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert seen == [str(pretrained_path("digits"))]
    rec = json.loads(out.read_text())["records"][0]
    assert rec["backend"] == "torch" and rec["preset"] == "digits" and "error" not in rec


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


def _load_benchmark_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_op_classes():
    from types import SimpleNamespace as Event

    prof = _load_benchmark_script("profile_cpu")
    cases = {("aten::mkldnn_convolution", ((8, 64, 16, 16), (64, 64, 3, 3))): "convolution",
             ("aten::mkldnn_convolution", ((8, 64, 16, 16), (64, 1, 4, 4))): "fir resampling",  # depthwise FIR
             ("aten::convolution", ((8, 64, 16, 16), (64, 1, 4, 4))): "fir resampling",
             ("aten::upsample_bilinear2d", ()): "fir resampling", ("aten::native_group_norm", ()): "adagn/group norm",
             ("pdgan::adagn_silu", ()): "adagn/group norm", ("aten::silu", ()): "adagn/group norm",
             ("aten::bmm", ()): "attention", ("aten::_softmax", ()): "attention",
             ("aten::copy_", ()): "reorders/copies", ("aten::cat", ()): "reorders/copies",
             ("aten::empty", ()): "allocation", ("aten::empty_strided", ()): "allocation",
             ("aten::addmm", ()): "other", ("aten::add_", ()): "other"}
    for (name, shapes), cls in cases.items():
        assert prof.op_class(name, [list(s) for s in shapes]) == cls, name
    conv = "aten::mkldnn_convolution"
    events = [Event(key=conv, input_shapes=[[1, 8, 4, 4], [8, 8, 3, 3]], self_cpu_time_total=70.0),
              Event(key=conv, input_shapes=[[1, 8, 4, 4], [8, 1, 4, 4]], self_cpu_time_total=5.0),
              Event(key="aten::addmm", input_shapes=[], self_cpu_time_total=20.0),
              Event(key="aten::empty", input_shapes=[], self_cpu_time_total=5.0)]
    by_class, other = prof.group(events)
    assert by_class == {"convolution": 70.0, "fir resampling": 5.0, "other": 20.0, "allocation": 5.0}
    assert other == {"aten::addmm": 20.0}


def test_make_table_reads_both_formats(tmp_path):
    make_table = _load_benchmark_script("make_table")
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


# --- on CUDA: the default backends, timing on the tensors' device, one process per backend -------------
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
def test_bench_isolates_backends_in_subprocesses(tmp_path, capsys, monkeypatch):
    """One CUDA fault poisons the context for every later backend; on CUDA each backend is timed in its own
    process (`--isolate`, the CUDA default). Run here on the CPU with a small preset. The workers' progress
    lines reach this process's stderr as they come."""
    monkeypatch.setenv("PDGAN_PROGRESS_INTERVAL", "0")
    out = tmp_path / "b.json"
    rc = bench_cli.main(["--device", "cpu", "--preset", "digits", "--n", "2", "--repeats", "1", "--backends",
                     "optimized", "--isolate", "--json", str(out)])
    import json
    records = json.loads(out.read_text())["records"]
    assert rc == 0 and [r["backend"] for r in records] == ["torch", "optimized"]
    assert all(r.get("median_s") and r.get("isolated") for r in records)
    assert records[1]["max_pixel_diff_vs_torch"] is not None
    err = capsys.readouterr().err.splitlines()
    for backend in ("torch", "optimized"):  # one warm-up and one timed call each
        assert f"pdgan-bench:   {backend}: generate(2): started, 2 calls" in err, err
        assert any(line.startswith(f"pdgan-bench:   {backend}: generate(2): 2/2 calls (100%)") for line in err), err


@pytest.mark.skipif(sys.platform != "linux", reason="subprocess isolation is tested on Linux")
def test_a_failed_worker_is_a_record_naming_its_last_stderr_line(tmp_path):
    from pdgan_infer.bench import suite

    settings = suite.BenchSettings(preset="digits", checkpoint=str(tmp_path / "missing.safetensors"), n=1, repeats=1)
    rec, images = suite.bench_isolated("torch", "float32", settings, torch.device("cpu"), "digits")
    assert images is None and rec["isolated"] and rec["backend"] == "torch"
    assert rec["error"].startswith("worker process failed (exit 1): ") and "missing.safetensors" in rec["error"]
