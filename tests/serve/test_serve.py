"""pdgan-serve on the real NVIDIA Triton Inference Server, and the Triton repository export.

The server runs from the serving environment (.venv-serve, `make serve-env`; `make test` builds it): tritonserver
and its Python backend from the nvidia-pytriton wheel, which pins numpy<2. The clients (tritonclient.http) and the
reference images (`Engine.generate(seeds=...)`, computed here) come from this environment. Without .venv-serve
the tests skip, except under CI (CI=true), where a missing serving environment fails them.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pdgan_infer.serve.models.pipeline import RequestError, check_request, draw_noise
from pdgan_infer.serve.process import ServeProcess
from pdgan_infer.serve.tritonserver import ServeError, python_problem

ROOT = Path(__file__).resolve().parents[2]
SERVE_PYTHON = Path(os.environ.get("PDGAN_SERVE_PYTHON", ROOT / ".venv-serve" / "bin" / "python"))
MAX_BATCH = 16
READY_TIMEOUT = 900  # s: a first start imports torch cold; the shared CI CPU may be busy


def _no_server_reason() -> str | None:
    """Why pdgan-serve cannot run from SERVE_PYTHON, or None. .venv-serve is made from the Python of this venv
    (make serve-env), so this interpreter answers the shared-libpython question."""
    if not SERVE_PYTHON.exists():
        return f"no serving environment at {SERVE_PYTHON} (make serve-env builds it)"
    if not list(SERVE_PYTHON.parent.parent.glob("lib/python3*/site-packages/pytriton/tritonserver/bin/tritonserver")):
        return f"nvidia-pytriton (tritonserver) is not installed in {SERVE_PYTHON.parent.parent} (make serve-env)"
    return python_problem()


@pytest.fixture(scope="module")
def serve_python():
    reason = _no_server_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the serving tests: {reason}")
        pytest.skip(reason)
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] (the dev extra) is not installed")
    return SERVE_PYTHON


class Server(ServeProcess):
    """pdgan-serve from the serving environment; a start that fails fails the test with the server's output."""

    def __init__(self, python: Path, args: list[str], log: Path):
        try:
            super().__init__(args, python=python, log=log, ready_timeout=READY_TIMEOUT, cwd=ROOT)
        except ServeError as e:
            pytest.fail(str(e))

    def client(self, concurrency: int = 1):
        import tritonclient.http as httpclient
        return httpclient.InferenceServerClient(self.url, concurrency=concurrency, connection_timeout=600,
                                                network_timeout=600)

    def triton_pids(self) -> list[int]:
        """tritonserver (found by its --http-port argument) and its children (the Python-backend stubs)."""
        server = [pid for pid, cmd in _processes().items()
                  if "tritonserver" in cmd and f"--http-port={self.http}" in cmd]
        return server + [pid for pid in _processes() if _ppid(pid) in server]


def _processes() -> dict[int, str]:
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def seed_input(seeds, dtype="INT64"):
    import tritonclient.http as httpclient
    arr = np.asarray(seeds, np.int64 if dtype == "INT64" else np.float32).reshape(-1, 1)
    tensor = httpclient.InferInput("SEED", list(arr.shape), dtype)
    tensor.set_data_from_numpy(arr)
    return tensor


def assert_images_close(got: np.ndarray, ref: np.ndarray) -> None:
    """Same images up to convolution summation order (a batch's shape may change oneDNN's algorithm): at most one
    uint8 level apart, and on at most 0.1% of the values."""
    assert got.shape == ref.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), (diff > 0).mean())


@pytest.fixture(scope="module")
def server(serve_python, tmp_path_factory):
    s = Server(serve_python, ["digits", "--backend", "torch", "--max-batch-size", str(MAX_BATCH)],
               tmp_path_factory.mktemp("serve") / "pdgan-serve.log")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def engine():
    from pdgan_infer import Engine
    return Engine.from_pretrained("digits", backend="torch", batch_size=MAX_BATCH)


# --- without a server --------------------------------------------------------------------------------------------
def test_numpy_noise_is_draw_noise():
    """The exported repository's numpy Philox gives `draw_noise`'s numbers, batch first (the reference is the
    project's torch implementation; Box-Muller's float64 libm may differ in the last float32 bit)."""
    from pdgan_infer.sampler import draw_noise as torch_noise
    seeds = [0, 1, 7, 2**32 - 1, 123_456_789]
    got, ref = draw_noise(seeds, 3, 3, 8, 16), torch_noise(seeds, 3, 3, 8, 16)
    for name, want in (("x_T", ref.x_T), ("latent", ref.z_T_noise), ("z", ref.z.transpose(0, 1)),
                       ("eps", ref.eps.transpose(0, 1))):
        np.testing.assert_allclose(got[name], want.numpy(), rtol=0, atol=1e-6, err_msg=name)


def test_request_checks():
    assert check_request(np.array([[3], [0]], np.int64), None, 4) == ([3, 0], None)
    for seeds, match in ((np.array([[-1]]), r"SEED\[0\] = -1 is outside"), (np.array([[0], [2**32]]), r"SEED\[1\]"),
                         (np.array([1, 2]), r"shape \[N, 1\]"), (np.array([[0.5]]), "INT64"), (None, "missing")):
        with pytest.raises(RequestError, match=match):
            check_request(seeds, None, 4)
    with pytest.raises(RequestError, match=r"Z_T must have shape \[1, 4\]"):
        check_request(np.array([[1]]), np.zeros((1, 3), np.float32), 4)
    with pytest.raises(RequestError, match="NaN"):
        check_request(np.array([[1]]), np.full((1, 4), np.nan, np.float32), 4)


def test_default_max_batch_is_the_engines_cpu_batch():
    """Without --max-batch-size the server batches like Engine: 64 * 32 * 32 pixels on the CPU (by hand: 64 images at
    32x32, 4 at 128x128, 1 at 256x256)."""
    from pdgan_infer.serve.server import default_max_batch

    assert [default_max_batch(r, "cpu") for r in (32, 128, 256)] == [64, 4, 1]


def test_python_problem_names_shared_libpython(monkeypatch):
    import sysconfig
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: 0 if name == "Py_ENABLE_SHARED" else None)
    assert "no shared libpython" in python_problem()


def test_pdgan_serve_without_triton_names_the_extra(monkeypatch, capsys):
    from pdgan_infer.cli import serve as cli
    from pdgan_infer.serve import tritonserver
    monkeypatch.setattr(tritonserver, "_pytriton_root", lambda: None)
    assert cli.main(["digits", "--http-port", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pdgan[serve]" in err and "Traceback" not in err, err
    with pytest.raises(SystemExit) as usage:
        cli.main([])
    assert usage.value.code == 2


# --- pdgan-serve ---------------------------------------------------------------------------------------------------
def test_concurrent_requests_match_engine_and_are_batched(server, engine):
    """64 concurrent HTTP requests (one seed each, plus two with several seeds and one with Z_T) give
    Engine.generate's images, and the dynamic batcher ran fewer executions than requests."""
    client = server.client(concurrency=16)
    seeds = list(range(1000, 1064))
    pending = [client.async_infer("pdgan", [seed_input([s])]) for s in seeds]  # 64 requests in flight at once
    got = np.concatenate([p.get_result().as_numpy("IMAGE") for p in pending])
    assert_images_close(got, engine.generate(seeds=seeds))
    multi = client.infer("pdgan", [seed_input([5, 2**32 - 1, 5])]).as_numpy("IMAGE")
    assert_images_close(multi, engine.generate(seeds=[5, 2**32 - 1, 5]))
    assert np.array_equal(multi[0], multi[2])  # a seed's image does not depend on its neighbours

    import tritonclient.http as httpclient
    z_T = engine.sample_latents(seeds=[7, 8]).numpy() * -1.0  # codes the latent sampler would not draw
    z_input = httpclient.InferInput("Z_T", list(z_T.shape), "FP32")
    z_input.set_data_from_numpy(z_T)
    given = client.infer("pdgan", [seed_input([7, 8]), z_input]).as_numpy("IMAGE")
    assert_images_close(given, engine.generate(seeds=[7, 8], z_T=z_T))
    assert not np.array_equal(given, engine.generate(seeds=[7, 8]))

    text = server.metrics_text()
    value = {name: float(re.search(rf'^{name}{{model="pdgan",version="1"}} (\S+)$', text, re.M).group(1))
             for name in ("nv_inference_exec_count", "nv_inference_request_success")}
    assert value["nv_inference_request_success"] >= 66
    assert value["nv_inference_exec_count"] < value["nv_inference_request_success"], value


@pytest.mark.parametrize("case", ["negative seed", "seed >= 2**32", "missing seed", "wrong dtype", "batch too large"])
def test_bad_requests_get_clean_errors(server, engine, case):
    from tritonclient.utils import InferenceServerException
    client = server.client()
    inputs = {"negative seed": [seed_input([4, -1])], "seed >= 2**32": [seed_input([2**32])], "missing seed": [],
              "wrong dtype": [seed_input([1], "FP32")], "batch too large": [seed_input(range(MAX_BATCH + 1))]}[case]
    expect = {"negative seed": r"SEED\[1\] = -1 is outside \[0, 2\*\*32\)", "seed >= 2**32": "outside",
              "missing seed": "missing required input", "wrong dtype": "expects 'INT64'",
              "batch too large": f"batch-size must be <= {MAX_BATCH}"}[case]
    with pytest.raises(InferenceServerException, match=expect) as err:
        client.infer("pdgan", inputs)
    assert err.value.status() == "400" and "Traceback" not in str(err.value)
    image = client.infer("pdgan", [seed_input([3])]).as_numpy("IMAGE")  # still serving
    assert_images_close(image, engine.generate(seeds=[3]))


def test_sigterm_stops_server_and_leaves_no_process(server):
    pids = server.triton_pids()
    assert len(pids) >= 2, pids  # tritonserver and the model's stub
    t0 = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    assert time.monotonic() - t0 < 30
    time.sleep(0.5)
    assert [pid for pid in pids if _alive(pid)] == []
    assert "stopped" in server.log.read_text()


# --- the exported repository ---------------------------------------------------------------------------------------
def test_export_triton_repository_loads_in_triton_and_matches_engine(serve_python, engine, tmp_path):
    """pdgan-export --format triton writes configs that Triton's ModelConfig proto parses, for every sampler
    variant; the Python variant loads in the real server and serves Engine's images for seeds."""
    from pdgan_infer.cli.export import main as export_main
    from pdgan_infer.serve.repository import TRITON_BACKENDS, _write_configs

    repo = tmp_path / "repo"
    assert export_main(["digits", "--format", "triton", "--triton-backend", "python", "--max-batch", "4",
                        "--out", str(repo), "-q"]) == 0
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == [
        "pdgan/1/model.py", "pdgan/config.pbtxt", "pdgan_sampler/1/model.onnx", "pdgan_sampler/1/model.py",
        "pdgan_sampler/config.pbtxt"]
    for variant in TRITON_BACKENDS:  # the other variants' configs (no ONNX Runtime / TensorRT backend here)
        _write_configs(tmp_path / variant, engine.model, {"pdgan.T": "2"}, variant, 4, 2, 1000, 1)
    configs = [str(p) for p in sorted(tmp_path.rglob("config.pbtxt"))]
    script = ("import sys, json; from pdgan_infer.serve.config import parse_config\n"
              "for p in sys.argv[1:]:\n c = parse_config(p)\n print(json.dumps([p, c.name, c.platform or c.backend,"
              " c.max_batch_size, [i.name for i in c.input], c.HasField('dynamic_batching'), len(c.model_warmup),"
              " [g.kind for g in c.instance_group]]))")
    out = subprocess.run([str(serve_python), "-c", script, *configs], capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    parsed = {Path(p).parent.parent.name + "/" + name: rest for p, name, *rest in rows}
    assert parsed["repo/pdgan"][0:3] == ["python", 4, ["SEED", "Z_T"]] and parsed["repo/pdgan"][3]
    assert parsed["onnxruntime/pdgan_sampler"][0] == "onnxruntime_onnx"
    assert parsed["tensorrt/pdgan_sampler"][0] == "tensorrt_plan" and parsed["tensorrt/pdgan_sampler"][5] == [1]
    assert parsed["repo/pdgan_sampler"][4] == 1  # warm-up on the sampler

    server = Server(serve_python, ["--repository", str(repo)], tmp_path / "serve-repo.log")
    try:
        seeds = [11, 12, 13, 14]
        client = server.client(concurrency=4)
        pending = [client.async_infer("pdgan", [seed_input([s])]) for s in seeds]
        got = np.concatenate([p.get_result().as_numpy("IMAGE") for p in pending])
        assert_images_close(got, engine.generate(seeds=seeds))
        from tritonclient.utils import InferenceServerException
        with pytest.raises(InferenceServerException, match="outside"):
            server.client().infer("pdgan", [seed_input([-5])])
    finally:
        server.stop()
    assert server.process.returncode == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
