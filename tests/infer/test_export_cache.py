"""The exported-graph caches trust nothing but content: a cached ONNX file is reused only if its sha256 is the one
recorded when it was exported (a graph of other weights whose metadata was rewritten to name this model's was used
before), a cache path that is a folder or a cache folder that is a file is a clean error, a failed verification never
replaces a good export, and OnnxRunner reports the providers its session really runs (issue 15: a CUDA provider that
did not load). The TensorRT engine cache (sidecar NAME.engine.json with the engine's sha256): test_export.py, beside
its other TensorRT cache tests."""
# regression: reliability review, section 5; defects 4, 17, 18
from __future__ import annotations

import dataclasses
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from pdgan_infer import PDGAN, PDGANError
from pdgan_infer.backends.onnxruntime import OnnxRuntimeSampler
from pdgan_infer.checkpoint import OutputPathError, sha256_file
from pdgan_infer.config import PRESETS
from pdgan_infer.export import cache as export_cache
from pdgan_infer.export import onnx as ox

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.usefixtures("one_thread", "torchscript_export")


@pytest.fixture(scope="module")
def model() -> PDGAN:
    """A small model (not a preset) with every weight non-zero, so that other weights give other images."""
    cfg = PRESETS["digits"]
    cfg = cfg.replace(generator=dataclasses.replace(cfg.generator, nf=16, ch_mult=(1, 2), attn_resolutions=(), nz=16,
                                                    z_emb_dim=32, n_mlp=1),
                      encoder=dataclasses.replace(cfg.encoder, nf=16, ch_mult=(1, 2)))
    torch.manual_seed(0)
    m = PDGAN(cfg, with_latent=False).eval()
    with torch.no_grad():
        for p in m.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def cache(model, tmp_path_factory):
    """A cache holding the model's sampler graph, exported for real (no verification: test_export's)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as m:  # the torchscript_export fixture's exporter, for this module-wide graph
        m.setattr(ox, "dynamo_unavailable", lambda: "the test asked for the TorchScript exporter")
        path, _ = export_cache.cached_onnx(model, "float32", folder)
    return folder, path


def _sampler_output(model, path) -> torch.Tensor:
    inputs = ox.example_inputs(model, "sampler", 2, seed=3)
    return ox.OnnxRunner(path)(**inputs)


def test_cached_graph_is_reused_only_with_its_recorded_sha256(model, cache, monkeypatch, tmp_path):
    folder, good = cache
    record = export_cache.cache_record_path(good)
    assert record.name == good.name + ".json" and json.loads(record.read_text())["sha256"] == sha256_file(good)
    want = _sampler_output(model, good)
    exports = []
    monkeypatch.setattr(export_cache, "export_onnx", lambda *a, **k: exports.append(a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert export_cache.cached_onnx(model, "float32", folder)[0] == good and not exports  # reused, silently
    monkeypatch.undo()
    # The review's forgery: other weights, with the metadata rewritten to name this model's.
    forged = tmp_path / "forged.onnx"
    proto = onnx.load(str(good))
    init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    values = np.frombuffer(init.raw_data, np.float32).copy()
    init.raw_data = (values + 0.5).astype(np.float32).tobytes()
    onnx.save(proto, str(forged))
    assert ox.read_metadata(forged)["pdgan.weights_sha256"] == ox.weights_sha256(model.generator)
    assert (_sampler_output(model, forged) - want).abs().max() > 0.05  # it would give other images
    shutil.copy(forged, good)
    with pytest.warns(UserWarning, match="its content is not what was exported"):
        path, _ = export_cache.cached_onnx(model, "float32", folder)
    assert path == good and sha256_file(good) == json.loads(record.read_text())["sha256"]
    torch.testing.assert_close(_sampler_output(model, good), want, rtol=0, atol=1e-6)
    record.unlink()  # a cache written before the record existed: re-exported once
    with pytest.warns(UserWarning, match="no record of its sha256"):
        export_cache.cached_onnx(model, "float32", folder)
    assert record.exists()


def test_cached_graph_with_other_weights_and_a_rewritten_record_is_not_used(model, cache, tmp_path):
    """Whoever can write the cache can change the graph's weights and rewrite its sha256 record and metadata:
    the one-seed comparison with torch catches it, and the graph is exported again."""
    folder, good = cache
    forged_cache = tmp_path / "c"
    shutil.copytree(folder, forged_cache)
    path = forged_cache / "onnx" / good.name
    want = _sampler_output(model, path)
    proto = onnx.load(str(path))
    init = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    init.raw_data = (np.frombuffer(init.raw_data, np.float32) * 10).astype(np.float32).tobytes()
    onnx.save(proto, str(path))
    record = export_cache.cache_record_path(path)
    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": sha256_file(path)}))
    assert ox.read_metadata(path)["pdgan.weights_sha256"] == ox.weights_sha256(model.generator)
    assert (_sampler_output(model, path) - want).abs().max() > 0.05
    with pytest.warns(UserWarning, match=r"on one seed it differs from torch by .*: its weights are not these"):
        again, _ = export_cache.cached_onnx(model, "float32", forged_cache)
    assert again == path
    torch.testing.assert_close(_sampler_output(model, path), want, rtol=0, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the good graph passes its check: no warning, no export
        export_cache.cached_onnx(model, "float32", forged_cache)


def test_cache_paths_that_are_folders_or_files_are_clean_errors(model, cache, tmp_path):
    """IsADirectoryError / NotADirectoryError tracebacks before."""
    folder, good = cache
    odd = tmp_path / "c1"
    shutil.copytree(folder, odd)
    target = odd / "onnx" / good.name
    target.unlink()
    target.mkdir()
    with pytest.raises(OutputPathError, match="is a folder; remove it") as e:
        export_cache.cached_onnx(model, "float32", odd)
    assert isinstance(e.value, PDGANError) and "\n" not in str(e.value)
    (tmp_path / "afile").write_text("x")
    for cache_dir in (tmp_path / "afile", tmp_path / "c2"):
        if cache_dir.name == "c2":
            cache_dir.mkdir()
            (cache_dir / "onnx").write_text("x")
        with pytest.raises(OutputPathError, match="is a file, not a folder"):
            export_cache.cached_onnx(model, "float32", cache_dir)


def test_failed_verification_leaves_the_previous_export(model, tmp_path, monkeypatch):
    """Defect 18: the export replaced the target, then verified it; a failure (exit 1) had already
    overwritten a good export. Now the temporary file is verified and only then renamed."""
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous, good export")
    monkeypatch.setattr(ox, "verify_against_torch", lambda runner, *a, **k: ({1: 0.5}, {1: 1e-4}, {1: 1.0}))
    result = ox.export_onnx(model, out, "sampler", "float32", verify=True, verify_batches=(1,))
    assert not result.ok and not result.written
    assert out.read_bytes() == b"the previous, good export" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    monkeypatch.setattr(ox, "verify_against_torch", lambda runner, *a, **k: ({1: 0.0}, {1: 1e-4}, {1: 1.0}))
    result = ox.export_onnx(model, out, "sampler", "float32", verify=True, verify_batches=(1,))
    assert result.ok and result.written and ox.read_metadata(out)["pdgan.format"] == ox.FORMAT


class _FakeSession:
    """An ONNX Runtime session that runs on `actual` whatever was requested (a CUDA provider that failed
    to load is dropped silently by ONNX Runtime)."""

    def __init__(self, path, sess_options=None, providers=None, actual=("CPUExecutionProvider",)):
        self.requested, self.actual = list(providers), list(actual)

    def get_providers(self):
        return list(self.actual)

    def get_inputs(self):
        return [type("I", (), {"name": n})() for n in ox.INPUTS["sampler"]]

    def run(self, names, feed):
        return [np.zeros_like(feed["x_T"])]


@pytest.mark.parametrize("actual, binds", [(["CPUExecutionProvider"], False),
                                           (["CUDAExecutionProvider", "CPUExecutionProvider"], True)])
def test_onnx_runner_records_the_providers_its_session_runs(cache, monkeypatch, actual, binds):
    """Issue 15: OnnxRunner kept the requested providers, so a CPU-only session (CUDA provider not
    loaded) would have been handed CUDA buffers through I/O binding."""
    _, good = cache
    requested = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ox, "providers_for", lambda device: list(requested))
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: _FakeSession(*a, **k, actual=actual))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = ox.OnnxRunner(good, "cuda")
    assert runner.providers == actual and runner.requested_providers == requested and runner.binds_cuda == binds
    assert any("could not load its CUDA provider" in str(w.message) for w in caught) == (not binds)
    bound = []
    monkeypatch.setattr(runner, "_run_cuda", lambda inputs: bound.append(1) or torch.zeros(1, 3, 32, 32))
    x = {k: torch.zeros(1, 3, 32, 32).as_subclass(_LooksCuda) for k in ox.INPUTS["sampler"]}
    assert runner(**x).shape == (1, 3, 32, 32)
    assert bound == ([1] if binds else [])  # CUDA inputs are bound only to a session that runs CUDA


class _LooksCuda(torch.Tensor):
    """A CPU tensor that says it is on CUDA (which input path the runner takes, without a GPU)."""

    @property
    def is_cuda(self):
        return True


def test_onnxruntime_sampler_on_cpu_reports_the_real_providers(model, cache):
    folder, _ = cache
    sampler = OnnxRuntimeSampler(model, "cpu", cache_dir=folder)
    assert sampler.providers == sampler.runner.session.get_providers() == ["CPUExecutionProvider"]
