"""ONNX export: graph checks, ONNX Runtime vs torch on explicit inputs, corrupt files, the runtime
sampler's cache, missing extras and the TensorRT cache key (TensorRT itself is untested: not installed).

Tolerances (outputs in [-1, 1]): float32 |ort - torch| <= 1e-4 here (digits; the library's default 5e-4
covers celebahq256, measured 8e-5); float16 |ort16 - ref32| <= 2 |torch16 - ref32| + 2e-3 (the
flash-attention rule). The untrained generator's last conv is zero-initialised, so the
weights are perturbed first to make the outputs O(1) and the comparison meaningful.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil

import pytest
import torch

from pdgan_infer import PDGAN, load_checkpoint, read_header, sample, save_checkpoint
from pdgan_infer.backends.onnxruntime import OnnxRuntimeSampler
from pdgan_infer.backends.tensorrt import TensorRTSampler
from pdgan_infer.cli.export import main as export_main
from pdgan_infer.export import cache, tensorrt
from pdgan_infer.export import onnx as ox
from pdgan_infer.sampler import SamplerNoise

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

DIGITS_FP32_ATOL = 1e-4  # measured ~5e-6
DIGITS_FP16_ATOL = 1e-2  # measured 4-6e-3 on the step graph: about one uint8 level (7.8e-3) of the fp32 output


def _perturbed(preset: str) -> PDGAN:
    torch.manual_seed(0)
    m = PDGAN(preset).eval()
    with torch.no_grad():
        for p in m.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> PDGAN:
    return _perturbed("digits")


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """Exports shared by the tests: (graph, dtype) -> ExportResult (verified at batch 1 and 5)."""
    d = tmp_path_factory.mktemp("onnx")
    out = {}
    for graph, dtype in (("step", "float32"), ("sampler", "float32"), ("step", "float16")):
        out[graph, dtype] = ox.export_onnx(model, d / f"{graph}-{dtype}.onnx", graph, dtype, checkpoint_sha256="abc")
    return out


@pytest.mark.parametrize("graph,dtype", [("step", "float32"), ("sampler", "float32"), ("step", "float16")])
def test_onnxruntime_matches_torch(exported, graph, dtype):
    r = exported[graph, dtype]
    assert set(r.max_abs_err) == {1, 5}
    for n, err in r.max_abs_err.items():
        assert err <= r.tolerance[n], (n, err, r.tolerance[n])
    # a fixed bound too: r.tolerance is computed by the code under test (from its own fp16 torch run)
    assert max(r.max_abs_err.values()) <= (DIGITS_FP32_ATOL if dtype == "float32" else DIGITS_FP16_ATOL)


def test_graph_structure_and_metadata(exported, model):
    proto = ox.load_onnx(exported["sampler", "float32"].path)
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [ox.OPSET]
    ops = {n.op_type for n in proto.graph.node}
    assert "InstanceNormalization" in ops and "GroupNormalization" not in ops
    assert not ops & {"RandomNormal", "RandomNormalLike"}  # all noise is an input
    assert not [n for n in proto.graph.node if n.metadata_props]  # no exporter debugging metadata
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims == {"x_T": ["N", 3, 32, 32], "z_T": ["N", 32], "z": ["N", 1, 32], "eps": ["N", 1, 3, 32, 32]}
    assert [d.dim_param for d in proto.graph.output[0].type.tensor_type.shape.dim][:1] == ["N"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["pdgan.exporter"] == "dynamo" and meta["pdgan.opset"] == "18" and meta["pdgan.format_version"] == "2"
    assert meta["pdgan.graph"] == "sampler" and meta["pdgan.dtype"] == "float32" and meta["pdgan.T"] == "2"
    assert meta["pdgan.latent_slot"] == "first"
    assert meta["pdgan.weights_sha256"] == ox.weights_sha256(model.generator)
    assert meta["pdgan.checkpoint_sha256"] == "abc"
    assert json.loads(meta["pdgan.config"]) == json.loads(model.config.to_json())


def test_float16_graph_keeps_norm_statistics_in_float32(exported):
    proto = ox.load_onnx(exported["step", "float16"].path)
    weights = [i for i in proto.graph.initializer if i.name.startswith("generator.")]  # named after the parameters
    assert len(weights) > 100 and {i.data_type for i in weights} == {onnx.TensorProto.FLOAT16}
    # the other float initializers are float32 constants: InstanceNormalization's ones and zeros, the sinusoidal
    # time embedding (float32 by construction)
    users = {}
    for n in proto.graph.node:
        for name in n.input:
            users.setdefault(name, set()).add(n.op_type)
    float32 = [i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    assert set().union(*(users[name] for name in float32)) <= {"InstanceNormalization", "Mul", "Add"}
    io = [v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.output)]
    assert set(io) == {onnx.TensorProto.FLOAT}  # float32 I/O, casts inside
    typed = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in typed.graph.value_info}
    norms = [n for n in typed.graph.node if n.op_type == "InstanceNormalization"]
    assert norms and all(types[n.output[0]] == onnx.TensorProto.FLOAT for n in norms)


def test_sampler_graph_equals_reference_sampler(exported, model):
    """The sampler export is verified against `pdgan_infer.sample` itself (same explicit inputs);
    the outputs are O(1), so the comparison is not trivially between zeros; other batch sizes work."""
    r = exported["sampler", "float32"]
    assert min(r.ref_max_abs.values()) > 0.1
    runner = ox.OnnxRunner(r.path)
    x = ox.example_inputs(model, "sampler", 3, seed=77)
    assert x["z"].shape == (3, 1, 32) and x["eps"].shape == (3, 1, 3, 32, 32)  # batch first
    noise = SamplerNoise(x["x_T"], x["z_T"], x["z"].transpose(0, 1), x["eps"].transpose(0, 1))
    ref = sample(model.generator, model.schedule, x["z_T"], noise)
    assert (runner(**x) - ref).abs().max() <= DIGITS_FP32_ATOL


def test_corrupt_onnx_gives_one_line_error(exported, tmp_path):
    good = exported["step", "float32"].path.read_bytes()
    cases = {"garbage.onnx": b"\x08\x07not an onnx file\xff\xfe" * 50, "truncated.onnx": good[: len(good) // 3],
             "empty.onnx": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for opener in (ox.load_onnx, ox.OnnxRunner):
            with pytest.raises(ox.OnnxLoadError) as e:
                opener(tmp_path / name)
            msg = str(e.value)
            assert "\n" not in msg and name in msg and ("corrupt" in msg or "re-export" in msg), msg
    with pytest.raises(ox.OnnxLoadError, match="not found"):
        ox.load_onnx(tmp_path / "missing.onnx")
    foreign = onnx.load(exported["step", "float32"].path)
    del foreign.metadata_props[:]
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(ox.OnnxLoadError, match="not a pdgan export"):
        ox.load_onnx(tmp_path / "foreign.onnx")
    older = onnx.load(exported["sampler", "float32"].path)  # a format-1 file: z and eps with the batch on axis 1
    kept = [p for p in older.metadata_props if p.key != "pdgan.format_version"]
    del older.metadata_props[:]
    older.metadata_props.extend(kept)
    onnx.save(older, tmp_path / "older.onnx")
    for opener in (ox.load_onnx, ox.OnnxRunner):
        with pytest.raises(ox.OnnxLoadError, match=r"format 1, this one reads 2.*re-export it with pdgan-export"):
            opener(tmp_path / "older.onnx")


def test_runtime_sampler_cache_reuses_and_repairs(exported, model, tmp_path, monkeypatch):
    good = exported["sampler", "float32"].path
    calls = []

    def fake_export(m, path, graph, dtype, verify=True):  # the real export is covered above; copy it
        calls.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(good, path)

    monkeypatch.setattr(cache, "export_onnx", fake_export)
    s = OnnxRuntimeSampler(model, cache_dir=tmp_path)
    assert len(calls) == 1 and s.onnx_path.parent == tmp_path / "onnx"
    x = ox.example_inputs(model, "sampler", 3, seed=5)
    out = s(x["x_T"], x["z_T"], x["z"], x["eps"])
    assert out.shape == (3, 3, 32, 32) and out.dtype == torch.float32
    OnnxRuntimeSampler(model, cache_dir=tmp_path)
    assert len(calls) == 1  # reused
    s.onnx_path.write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="re-exporting"):
        s2 = OnnxRuntimeSampler(model, cache_dir=tmp_path)
    assert len(calls) == 2
    assert torch.equal(s2(x["x_T"], x["z_T"], x["z"], x["eps"]), out)
    other = _perturbed("digits")
    with torch.no_grad():
        other.generator.conv_out.bias.add_(1.0)
    assert cache.onnx_cache_key(ox.weights_sha256(other.generator), other.config.to_json(), "float32") != \
        cache.onnx_cache_key(ox.weights_sha256(model.generator), model.config.to_json(), "float32")


def test_missing_extras_name_the_install_command(model, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxruntime", "tensorrt") else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'pdgan\[onnx\]'"):
        OnnxRuntimeSampler(model)
    with pytest.raises(ImportError, match=r"pip install 'pdgan\[gpu\]'"):
        TensorRTSampler(model)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed")
def test_tensorrt_absent_clear_message(model, tmp_path, capsys):
    with pytest.raises(ImportError, match=r"pdgan\[gpu\]"):
        TensorRTSampler(model)
    assert export_main(["--preset", "digits", "--format", "tensorrt", "--out", str(tmp_path / "x.engine")]) == 1
    err = capsys.readouterr().err
    assert "pdgan[gpu]" in err and "Traceback" not in err


def test_engine_cache_key_changes_with_each_field():
    base = dict(gpu_name="NVIDIA H100 80GB HBM3", trt_version="10.3.0", profile=tensorrt.BatchProfile(1, 100, 256),
                weights_sha256="a" * 64, dtype="float16", graph="sampler")
    key = tensorrt.engine_cache_key(**base)
    assert key == tensorrt.engine_cache_key(**base) and len(key) == 64
    changes = {"gpu_name": "NVIDIA A100-SXM4-40GB", "trt_version": "10.4.0",
               "profile": tensorrt.BatchProfile(1, 64, 256), "weights_sha256": "b" * 64, "dtype": "float32"}
    keys = {tensorrt.engine_cache_key(**{**base, k: v}) for k, v in changes.items()}
    assert len(keys) == len(changes) and key not in keys
    assert tensorrt.engine_path_for("/c/x.onnx", key).name == f"x-{key[:16]}.engine"
    with pytest.raises(ValueError, match="min <= opt <= max"):
        tensorrt.BatchProfile(8, 4, 16)


def _fake_tensorrt(monkeypatch):
    """TensorRT 'installed' (version fake.__version__): builds return b'engine:<version>' and are
    recorded (their timing-cache paths), loads refuse other bytes."""
    fake = type("trt", (), {"__version__": "10.0.0"})
    builds = []

    def fake_build(path, profile, timing_cache, log=None):
        builds.append(timing_cache)
        return b"engine:" + fake.__version__.encode()

    def fake_init(self, engine_bytes, metadata, profile, device):
        if not engine_bytes.startswith(b"engine:"):
            raise RuntimeError("TensorRT could not deserialize the engine (stale or truncated)")
        self.engine_bytes = engine_bytes

    monkeypatch.setattr(tensorrt, "require_tensorrt", lambda: fake)
    monkeypatch.setattr(tensorrt, "build_engine", fake_build)
    monkeypatch.setattr(tensorrt.TensorRTRunner, "__init__", fake_init)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    return fake, builds


def test_tensorrt_engine_cache_rebuilds_stale_engines(exported, tmp_path, monkeypatch):
    """The load-or-build logic with TensorRT faked: builds once, reuses, rebuilds a corrupt engine,
    a new TensorRT version, and an explicit engine path whose sidecar names another key."""
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(exported["sampler", "float32"].path, onnx_path)
    fake, builds = _fake_tensorrt(monkeypatch)
    logs = []
    load = lambda **kw: tensorrt.TensorRTRunner.from_onnx(onnx_path, tensorrt.BatchProfile(1, 8, 16), "w" * 64,
                                                           torch.device("cuda"), log=logs.append, **kw)
    load()
    engines = list(tmp_path.glob("m-*.engine"))
    assert len(builds) == 1 and len(engines) == 1 and tensorrt.engine_sidecar(engines[0]).exists()
    load()
    assert len(builds) == 1  # cached
    engines[0].write_bytes(b"truncated")
    assert load().engine_bytes == b"engine:10.0.0" and len(builds) == 2 and "rebuilding" in logs[-1]
    fake.__version__ = "10.1.0"
    load()
    assert len(builds) == 3 and len(list(tmp_path.glob("m-*.engine"))) == 2  # new key, new file
    assert builds[2] != builds[0]  # the timing cache is per TensorRT version
    explicit = tmp_path / "out.engine"
    explicit.write_bytes(b"engine:old")
    tensorrt.engine_sidecar(explicit).write_text(json.dumps({"key": "0" * 64, "fields": {"tensorrt": "9.0"}}))
    assert load(engine_path=explicit).engine_bytes == b"engine:10.1.0" and len(builds) == 4
    assert json.loads(tensorrt.engine_sidecar(explicit).read_text())["fields"]["tensorrt"] == "10.1.0"


def test_tensorrt_sidecar_never_replaces_the_checkpoint_json(exported, tmp_path, monkeypatch):
    """Reliability review, defect 4: `pdgan-export ... --format tensorrt --out runs/x/model.engine` wrote
    its cache sidecar to path.with_suffix('.json'): runs/x/model.json, the checkpoint's own sidecar.
    Defect 17 for engines: an engine whose bytes were replaced (same key) was deserialized as is."""
    _, builds = _fake_tensorrt(monkeypatch)
    ckpt_json = tmp_path / "model.json"
    ckpt_json.write_text('{"format": "pdgan-checkpoint"}')
    engine = tmp_path / "model.engine"
    logs = []
    load = lambda: tensorrt.TensorRTRunner.from_onnx(exported["sampler", "float32"].path,  # noqa: E731
                                                      tensorrt.BatchProfile(1, 4, 4), "w" * 64, torch.device("cuda"),
                                                      engine_path=engine, log=logs.append)
    load()
    sidecar = tensorrt.engine_sidecar(engine)
    assert sidecar.name == "model.engine.json" and ckpt_json.read_text() == '{"format": "pdgan-checkpoint"}'
    assert json.loads(sidecar.read_text())["sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    assert load().engine_bytes == b"engine:10.0.0" and len(builds) == 1  # reused
    engine.write_bytes(b"engine:forged")  # deserializable, but not what was built
    assert load().engine_bytes == b"engine:10.0.0" and len(builds) == 2 and "sha256 differs" in logs[-1]


def test_input_shapes_from_metadata(exported):
    meta = ox.read_metadata(exported["sampler", "float32"].path)
    assert tensorrt.input_shapes(meta, 7) == {"x_T": (7, 3, 32, 32), "z_T": (7, 32), "z": (7, 1, 32),
                                              "eps": (7, 1, 3, 32, 32)}
    step = ox.read_metadata(exported["step", "float32"].path)
    assert tensorrt.input_shapes(step, 2) == {"x_t": (2, 3, 32, 32), "z": (2, 32), "t": (2,)}


def _graph_ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_dynamo_failure_falls_back_to_torchscript_with_the_reason(model, tmp_path, monkeypatch, caplog):
    """The TorchScript exporter runs only when the dynamo one cannot: the warning names the dynamo error's first
    line, the file records pdgan.exporter = torchscript and has pdgan's lowerings, and it passes the same check."""
    def broken(*args, **kwargs):
        raise RuntimeError("Failed to export the model with torch.export\nmany more lines")

    monkeypatch.setattr(ox, "_export_dynamo", broken)
    with caplog.at_level("WARNING", logger="pdgan"):
        r = ox.export_onnx(model, tmp_path / "ts.onnx", "sampler", "float32", verify_batches=(1,))
    assert r.exporter == "torchscript" and r.opset == ox.OPSET and r.ok, r.summary()
    assert r.max_abs_err[1] <= DIGITS_FP32_ATOL
    meta = ox.read_metadata(r.path)
    assert meta["pdgan.exporter"] == "torchscript" and meta["pdgan.opset"] == str(ox.OPSET)
    warned = [rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING"]
    assert len(warned) == 1 and "TorchScript exporter" in warned[0], warned
    assert "RuntimeError: Failed to export the model with torch.export" in warned[0]
    assert "many more lines" not in warned[0]
    ops = _graph_ops(r.path)
    assert "InstanceNormalization" in ops and "GroupNormalization" not in ops


def test_without_onnxscript_the_torchscript_exporter_says_what_to_install(model, tmp_path, monkeypatch, caplog):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert ox.preferred_exporter() == "torchscript"
    with pytest.raises(ox.OpsetError, match=r"opset 21 is outside 14\.\.20, the opsets the torchscript exporter"):
        ox.export_onnx(model, tmp_path / "no.onnx", "step", opset=21, verify=False)
    assert not (tmp_path / "no.onnx").exists()
    with caplog.at_level("WARNING", logger="pdgan"):
        r = ox.export_onnx(model, tmp_path / "ts.onnx", "step", "float16", verify=False, opset=17)
    assert r.exporter == "torchscript" and ox.read_metadata(r.path)["pdgan.opset"] == "17"
    assert any("pip install onnxscript" in rec.getMessage() for rec in caplog.records)
    assert {o.version for o in onnx.load(str(r.path)).opset_import if o.domain == ""} == {17}


def test_cli_exports_a_bundled_model_at_the_opset_asked_for(tmp_path, capsys):
    """`pdgan-export digits` resolves the bundled name (hub.resolve_model); --opset is written into the graph and
    recorded; an opset outside the exporter's range is a usage error, and export_onnx refuses it before any work."""
    from pdgan_infer.hub import pretrained_path

    out = tmp_path / "digits-step.onnx"
    assert export_main(["digits", "--out", str(out), "--graph", "step", "--opset", "20", "--no-verify"]) == 0
    assert "opset 20, dynamo exporter" in capsys.readouterr().out
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain == ""] == [20]
    meta = ox.read_metadata(out)
    assert meta["pdgan.opset"] == "20" and meta["pdgan.exporter"] == "dynamo"
    assert meta["pdgan.checkpoint_sha256"] == read_header(pretrained_path("digits"))["sha256"]
    for bad in ("17", "24", "x"):
        with pytest.raises(SystemExit) as e:
            export_main(["digits", "--out", str(tmp_path / "bad.onnx"), "--opset", bad])
        assert e.value.code == 2
        assert "--opset" in capsys.readouterr().err
    with pytest.raises(ox.OpsetError, match=r"opset 24 is outside 18\.\.23"):
        ox.export_onnx(PDGAN("digits"), tmp_path / "bad.onnx", "step", opset=24)
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.usefixtures("torchscript_export")  # the command's handling, not the exporter (tested above)
def test_cli_checkpoint_without_latent(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(PDGAN("digits", with_latent=False), tmp_path / "ckpt")
    assert load_checkpoint(ckpt).latent is None
    out = tmp_path / "step.onnx"
    assert export_main([str(ckpt), "--format", "onnx", "--out", str(out), "--graph", "step", "--no-verify"]) == 0
    captured = capsys.readouterr()
    assert "no latent denoiser" in captured.err and "z_T as an input" in captured.err
    assert ox.read_metadata(out)["pdgan.checkpoint_sha256"] == read_header(ckpt)["sha256"]
    assert export_main([str(tmp_path / "nope"), "--out", str(out)]) == 1  # a failed run: 1
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a wrong command line: 2
        export_main([str(ckpt), "--out", str(out), "--graph", "nope"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        export_main(["--version"])
    assert e.value.code == 0 and "pdgan-export (pdgan) 0." in capsys.readouterr().out


def test_verification_inputs_are_engine_generate_noises(exported, model):
    """The export check runs on the noises of Engine.generate(n, seed): per-image seeds seed * 2**16 + i.
    With the same z_T the exported sampler gives Engine.generate's images."""
    from pdgan_infer.engine import Engine
    from pdgan_infer.sampler import draw_noise, to_uint8

    x = ox.example_inputs(model, "sampler", 3, seed=5)
    cfg = model.config
    want = draw_noise([5 * 65536, 5 * 65536 + 1, 5 * 65536 + 2], 2, cfg.channels, cfg.resolution, cfg.generator.nz)
    assert torch.equal(x["x_T"], want.x_T) and torch.equal(x["eps"], want.eps.transpose(0, 1))
    assert torch.equal(x["z"], want.z.transpose(0, 1))
    engine = Engine(model, backend="torch", device="cpu")
    x["z_T"] = engine.sample_latents(3, seed=5)
    got = to_uint8(ox.OnnxRunner(exported["sampler", "float32"].path)(**x)).numpy()
    diff = abs(got.astype(int) - engine.generate(3, seed=5).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["digits", "cifar10", "celebahq256"])
def test_export_every_preset(preset, tmp_path):
    """Each preset's sampler graph in float32 and float16: checker + ONNX Runtime vs torch at batch 1."""
    m = _perturbed(preset)
    for dtype in ("float32", "float16"):
        r = ox.export_onnx(m, tmp_path / f"{preset}-{dtype}.onnx", "sampler", dtype, verify_batches=(1,))
        assert r.ok, r.summary()
        onnx.shape_inference.infer_shapes(onnx.load(r.path), strict_mode=True)  # well typed (TensorRT's
        print(r.summary())  # strongly typed mode takes every type from the file)


# regression: GPU review 4.2
def test_tensorrt_executes_on_its_own_stream_ordered_with_the_callers(monkeypatch):
    """execute_async_v3 got the caller's current stream, the legacy default stream unless the
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


# regression: GPU review 4.4, minor
def test_onnx_export_copies_the_generator_straight_to_the_cpu(monkeypatch):
    """The ONNX export deep-copied the generator on its own device (a second copy of every
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
