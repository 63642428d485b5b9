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

from pdgan_infer.serve.guard import BadRequest, check_infer_request
from pdgan_infer.serve.models.pipeline import RequestError, check_request, draw_noise
from pdgan_infer.serve.process import ServeProcess
from pdgan_infer.serve.server import check_repository
from pdgan_infer.serve.tritonserver import ServeError, python_problem, sweep_stale

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
        """tritonserver (pdgan-serve's child) and its children (the Python-backend stubs)."""
        server = [pid for pid, cmd in _processes().items()
                  if "tritonserver" in cmd and _ppid(pid) == self.process.pid]
        return server + [pid for pid in _processes() if _ppid(pid) in server]

    def get(self, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
        """(HTTP status, body) of one raw request to pdgan-serve's HTTP port."""
        import urllib.error
        import urllib.request
        request = urllib.request.Request(f"http://{self.url}{path}", data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


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


@pytest.mark.parametrize("latent_slot", ["first", "all"])
def test_serving_graph_module_is_engine_generate(engine, latent_slot):
    """The serving graph's module (batch-first noises in, the sampler graph's batch-first inputs inside) gives
    Engine.generate's images for the seeds' noises, also when the model reads z_T at every step."""
    import copy

    import torch

    from pdgan_infer import Engine
    from pdgan_infer.serve.repository import ServingGraph, serving_inputs

    model = copy.deepcopy(engine.model).eval()
    model.latent_slot = latent_slot
    seeds = [3, 4, 5]
    with torch.no_grad():
        inputs = {k: torch.from_numpy(v) for k, v in serving_inputs(model, seeds).items()}
        got = ServingGraph(model)(**inputs).numpy()
    assert_images_close(got, Engine(model, backend="torch", device="cpu").generate(seeds=seeds, progress=False))


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


@pytest.mark.parametrize("shape", [[2**40, 1], [2**62, 1], [2**61, 1], [1, 2**62], [3074457345618258603, 1]])
def test_guard_refuses_shapes_no_request_holds(shape):
    """The shapes that crash Triton 2.51's HTTP front end declare more elements than the request has bytes."""
    body = json.dumps({"inputs": [{"name": "SEED", "shape": shape, "datatype": "INT64", "data": [1]}]}).encode()
    with pytest.raises(BadRequest, match="declares") as err:
        check_infer_request(body, None)
    assert err.value.status == 400


@pytest.mark.parametrize("n", [1, 3, 64])
def test_guard_passes_the_requests_tritonclient_writes(n):
    """Binary and JSON requests as tritonclient.http builds them (the reference) pass the guard's checks."""
    import tritonclient.http as httpclient
    seeds = np.arange(n, dtype=np.int64).reshape(-1, 1)
    for binary in (True, False):
        tensor = httpclient.InferInput("SEED", list(seeds.shape), "INT64")
        tensor.set_data_from_numpy(seeds, binary_data=binary)
        body, json_size = httpclient.InferenceServerClient.generate_request_body([tensor])
        check_infer_request(body, None if json_size is None else str(json_size))


@pytest.mark.parametrize("body, header, match", [
    (b"{not json", None, "does not parse"), (b"[1]", None, "must be an object"),
    (b'{"inputs": [{"name": "SEED", "shape": [-1, 1]}]}', None, "non-negative integers"),
    (b'{"inputs": [{"name": "SEED", "shape": ["1", 1]}]}', None, "non-negative integers"),
    (b'{"inputs": [{"name": "SEED", "shape": [true]}]}', None, "non-negative integers"),
    (b'{"inputs": [{"name": "SEED"}]}', None, "non-negative integers"),
    (b'{"inputs": []}', "99", "not a length within the body"), (b'{"inputs": []}', "-1", "not a length"),
    (b'{"inputs": [{"name": "SEED", "shape": [' + b",".join([b"4611686018427387904"] * 200_000) + b"]}]}", None,
     "declares more elements")])
def test_guard_refuses_malformed_requests(body, header, match):
    with pytest.raises(BadRequest, match=match):
        check_infer_request(body, header)


def test_host_is_an_ip_address_and_a_wildcard_warns(monkeypatch, capsys):
    from pdgan_infer.cli import serve as cli
    from pdgan_infer.serve import tritonserver
    with pytest.raises(SystemExit) as usage:
        cli.main(["digits", "--host", "localhost"])
    err = capsys.readouterr().err
    assert usage.value.code == 2 and err.count("\n") == 1 and "expected an IP address" in err, err
    assert cli.build_parser().parse_args(["digits"]).host == "127.0.0.1"
    monkeypatch.setattr(tritonserver, "_pytriton_root", lambda: None)
    assert cli.main(["digits", "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 listens on every network interface" in err and "must not face untrusted clients" in err


def test_help_shows_no_default_for_switches():
    """--no-warmup is a switch: its help has no "(default: True)", the value it does not set."""
    from pdgan_infer.cli import serve as cli
    text = " ".join(cli.build_parser().format_help().split())
    assert "skip the warm-up batches at load --host" in text and "(default: True)" not in text, text


def test_repository_with_a_fifo_is_refused_at_once(tmp_path, capsys):
    """A FIFO config.pbtxt (Triton would block opening it) is named in one line, before any server starts."""
    import threading

    from pdgan_infer.cli import serve as cli
    (tmp_path / "pdgan" / "1").mkdir(parents=True)
    os.mkfifo(tmp_path / "pdgan" / "config.pbtxt")
    status = []
    run = threading.Thread(target=lambda: status.append(cli.main(["--repository", str(tmp_path)])), daemon=True)
    run.start()
    run.join(timeout=60)  # a FIFO opened for reading would block here
    err = capsys.readouterr().err
    assert status == [1], "pdgan-serve --repository blocked on the FIFO"
    assert err.strip().count("\n") == 0 and "config.pbtxt is not a regular file" in err, err
    os.unlink(tmp_path / "pdgan" / "config.pbtxt")
    (tmp_path / "pdgan" / "config.pbtxt").write_text("name: \"pdgan\"\n")
    os.mkfifo(tmp_path / "pdgan" / "1" / "model.py")
    with pytest.raises(ServeError, match=r"model\.py is not a regular file"):
        check_repository(tmp_path)


@pytest.mark.parametrize("variant, runtime", [("onnxruntime", "platform onnxruntime_onnx"),
                                              ("tensorrt", "platform tensorrt_plan"), ("python", None)])
def test_repository_pdgan_serve_cannot_load_is_refused_before_the_start(tmp_path, variant, runtime):
    """pdgan-serve's Triton (nvidia-pytriton) has the Python backend only: a repository that pdgan-export wrote for
    ONNX Runtime or TensorRT is refused at once, naming the model, its runtime and the re-export; the Python
    variant passes. Besides, a hand-written config: an ensemble passes, a config without a runtime is refused."""
    from tiny_models import tiny_config

    from pdgan_infer import PDGAN
    from pdgan_infer.serve.repository import _write_configs

    _write_configs(tmp_path, PDGAN(tiny_config()), {}, variant, 4, 2, 500, 1)
    if runtime is None:
        assert check_repository(tmp_path) == tmp_path
        (tmp_path / "ens" / "1").mkdir(parents=True)
        (tmp_path / "ens" / "config.pbtxt").write_text('name: "ens"\nplatform: "ensemble"\nmax_batch_size: 4\n')
        assert check_repository(tmp_path) == tmp_path
        (tmp_path / "ens" / "config.pbtxt").write_text('name: "ens"\nmax_batch_size: 4\n')
        with pytest.raises(ServeError, match=r"model ens runs on platform \(none given\)"):
            check_repository(tmp_path)
        return
    with pytest.raises(ServeError, match=rf"model pdgan_sampler runs on {runtime}, .*--triton-backend python"):
        check_repository(tmp_path)


def test_sweep_stale_removes_only_dead_servers_temporaries(tmp_path):
    """What a SIGKILLed pdgan-serve leaves (its pid in the name) goes; a live process's and others' files stay."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    shm = tmp_path / "shm"
    shm.mkdir()
    paths = {"dead repo": tmp_path / f"pdgan-repo-{dead.pid}-abc",
             "dead backends": tmp_path / f"pdgan-serve-{dead.pid}-x",
             "live repo": tmp_path / f"pdgan-repo-{os.getpid()}-abc", "other": tmp_path / "pdgan-repo-notapid",
             "dead shm": shm / f"pdgan_{dead.pid}_0123-4567", "live shm": shm / f"pdgan_{os.getpid()}_89ab",
             "triton shm": shm / "triton_python_backend_shm_region_1"}
    for what, path in paths.items():
        if "shm" in what:
            path.write_bytes(b"\0" * 16)
        else:
            (path / "pdgan").mkdir(parents=True)
    removed = sweep_stale(tmp_path, shm)
    assert sorted(removed) == sorted([paths["dead repo"], paths["dead backends"], paths["dead shm"]])
    assert [what for what, path in paths.items() if os.path.lexists(path)] == ["live repo", "other", "live shm",
                                                                               "triton shm"]


def test_triton_reexport_replaces_only_its_own_files(tmp_path):
    """A re-export moves its files in and removes those its previous export listed; the user's files and model
    versions stay (the files are staged as export_triton stages them)."""
    from pdgan_infer.serve.repository import OWNED_MARKER, _install, claim_repository, repository_files

    out = tmp_path / "repo"
    first = tmp_path / "first"
    for rel in repository_files("tensorrt"):
        (first / rel).parent.mkdir(parents=True, exist_ok=True)
        (first / rel).write_text(f"old {rel}")
    _install(first, out, claim_repository(out, "tensorrt"))
    (out / "pdgan" / "NOTES.txt").write_text("user's notes")
    (out / "pdgan" / "2").mkdir()
    (out / "pdgan" / "2" / "model.py").write_text("user's version 2")
    owned = claim_repository(out, "onnxruntime")
    assert sorted(owned) == sorted(repository_files("tensorrt"))
    second = tmp_path / "second"
    for rel in repository_files("onnxruntime"):
        (second / rel).parent.mkdir(parents=True, exist_ok=True)
        (second / rel).write_text(f"new {rel}")
    _install(second, out, owned)
    files = {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file() and p.name != OWNED_MARKER}
    assert files == {**{rel: f"new {rel}" for rel in repository_files("onnxruntime")},
                     "pdgan/NOTES.txt": "user's notes", "pdgan/2/model.py": "user's version 2"}
    assert json.loads((out / OWNED_MARKER).read_text())["files"] == sorted(repository_files("onnxruntime"))


def test_triton_export_refuses_symlinked_and_foreign_folders(tmp_path, capsys):
    """Before the model loads: a symlinked model folder (writing through it would change files outside --out),
    a symlinked --out, and a folder pdgan-export did not write (unless --overwrite) are refused in one line."""
    from pdgan_infer.cli.export import main as export_main

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.pbtxt").write_text("someone else's")
    out = tmp_path / "repo"
    out.mkdir()
    owned = {"written_by": "pdgan", "files": ["pdgan_sampler/config.pbtxt"]}
    (out / ".pdgan-triton.json").write_text(json.dumps(owned))
    (out / "pdgan_sampler").symlink_to(victim)
    link = tmp_path / "link"
    link.symlink_to(victim)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "NOTES.txt").write_text("mine")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for target, overwrite, match in ((out, True, "pdgan_sampler is a symlink"), (link, True, "is a symlink"),
                                     (foreign, False, "was not written by pdgan"), (a_file, True, "is not a folder")):
        args = ["digits", "--format", "triton", "--out", str(target), "-q"] + (["--overwrite"] if overwrite else [])
        assert export_main(args) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err, err
    assert (victim / "config.pbtxt").read_text() == "someone else's" and sorted(os.listdir(victim)) == ["config.pbtxt"]
    assert os.listdir(foreign) == ["NOTES.txt"]


# --- pdgan-serve ---------------------------------------------------------------------------------------------------
def _listening(port: int) -> list[str]:
    """The local addresses of the sockets listening on `port` (the kernel's /proc/net/tcp and tcp6)."""
    import ipaddress
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # TCP_LISTEN
                raw = bytes.fromhex(addr)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # host-order 32-bit words
                address = ipaddress.ip_address(raw)
                found.append(str(getattr(address, "ipv4_mapped", None) or address))
    return found


def test_listens_on_loopback_only(server):
    """HTTP (pdgan-serve's guard and Triton behind it), gRPC and metrics: bound to 127.0.0.1, no other interface."""
    ports = [server.http, server.grpc, server.metrics]
    triton = server.triton_pids()[0]
    upstream = int(re.search(r"--http-port=(\d+)", Path(f"/proc/{triton}/cmdline").read_text()).group(1))
    for port in ports + [upstream]:
        assert _listening(port) and set(_listening(port)) == {"127.0.0.1"}, (port, _listening(port))


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v2/systemsharedmemory/region/x/register", b'{"key": "/x", "offset": 0, "byte_size": 16}'),
    ("GET", "/v2/systemsharedmemory/status", None), ("POST", "/v2/cudasharedmemory/region/x/register", b"{}"),
    ("POST", "/v2/logging", b'{"log_verbose_level": 1}'), ("GET", "/v2/logging", None),
    ("GET", "/v2/trace/setting", None), ("POST", "/v2/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}'),
    ("POST", "/v2/repository/index", b"{}"), ("POST", "/v2/repository/models/pdgan/unload", b"{}")])
def test_restricted_http_apis_are_forbidden(server, method, path, body):
    status, text = server.get(path, method, body)
    assert status == 403 and "This API is restricted" in text, (status, text)
    assert server.get("/v2/health/ready")[0] == 200


def test_restricted_grpc_protocols_are_forbidden(server, serve_python):
    script = ("import sys, tritonclient.grpc as g\nc = g.InferenceServerClient(sys.argv[1])\n"
              "calls = {'shm': lambda: c.register_system_shared_memory('x', '/x', 16), 'log': lambda: "
              "c.update_log_settings({'log_verbose_level': 1}), 'trace': lambda: c.get_trace_settings(), "
              "'repo': lambda: c.get_model_repository_index(), 'unload': lambda: c.unload_model('pdgan')}\n"
              "for name, call in calls.items():\n"
              " try: call(); print(name, 'ALLOWED')\n"
              " except Exception as e: print(name, 'restricted' if 'This protocol is restricted' in str(e) else e)\n"
              "print('ready', c.is_server_ready())")
    out = subprocess.run([str(serve_python), "-c", script, f"127.0.0.1:{server.grpc}"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.stdout.split("\n")[:6] == ["shm restricted", "log restricted", "trace restricted", "repo restricted",
                                          "unload restricted", "ready True"], out.stdout + out.stderr


def test_nothing_a_client_reads_names_a_host_path(server):
    """The model configuration, metadata and server metadata hold no absolute path (the checkpoint's is in a file
    Triton does not serve)."""
    import tempfile
    for path in ("/v2/models/pdgan/config", "/v2/models/pdgan", "/v2", "/v2/models/pdgan/stats"):
        status, text = server.get(path)
        assert status == 200, (path, text)
        assert not re.search(r'"/[^"]', text), (path, text)
        for host_path in (str(ROOT), tempfile.gettempdir() + "/", str(Path.home())):
            assert host_path not in text, (path, host_path)


def test_huge_seed_shape_does_not_take_the_server_down(server, engine):
    """The shapes that crash Triton 2.51's HTTP front end, on every spelling of the infer path: 400, and the
    server still serves."""
    for shape in ([2**40, 1], [2**62, 1], [1, 2**62], [3074457345618258603, 1]):
        body = json.dumps({"inputs": [{"name": "SEED", "shape": shape, "datatype": "INT64", "data": [1]}]}).encode()
        for path in ("/v2/models/pdgan/infer", "/v2/models/pdgan/versions/1/infer", "//v2/models/pdgan/infer",
                     "/v2/models/pdgan/infer?x=/generate", "/v2/models/pdgan/%69nfer"):
            status, text = server.get(path, "POST", body)
            assert status == 400 and "declares" in text, (shape, path, status, text)
    assert server.process.poll() is None and all(_alive(pid) for pid in server.triton_pids())
    image = server.client().infer("pdgan", [seed_input([3])]).as_numpy("IMAGE")
    assert_images_close(image, engine.generate(seeds=[3]))


@pytest.mark.parametrize("case", ["malformed JSON", "string seed", "negative dim", "data does not fit the shape"])
def test_unparseable_requests_get_400(server, case):
    body = {"malformed JSON": b'{"inputs": [', "string seed": b'{"inputs": [{"name": "SEED", "shape": [1, 1], '
            b'"datatype": "INT64", "data": ["a"]}]}', "negative dim": b'{"inputs": [{"name": "SEED", "shape": [-1, 1], '
            b'"datatype": "INT64", "data": [1]}]}', "data does not fit the shape": b'{"inputs": [{"name": "SEED", '
            b'"shape": [1, 1], "datatype": "INT64", "data": [1, 2]}]}'}[case]
    status, text = server.get("/v2/models/pdgan/infer", "POST", body)
    assert status == 400 and json.loads(text)["error"], (status, text)


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


@pytest.mark.slow
def test_triton_reexport_keeps_user_files_and_versions(tmp_path, capsys):
    """pdgan-export --format triton twice into one folder: the user's notes and model version 2 survive the
    re-export, which writes its own files anew; a file pdgan did not write at one of its paths needs --overwrite."""
    from pdgan_infer.cli.export import main as export_main

    repo = tmp_path / "repo"
    args = ["digits", "--format", "triton", "--max-batch", "2", "--no-verify", "--out", str(repo), "-q"]
    assert export_main(args) == 0
    first = (repo / "pdgan_sampler" / "1" / "model.onnx").stat().st_mtime_ns
    (repo / "pdgan" / "NOTES.txt").write_text("user's notes")
    (repo / "pdgan" / "2").mkdir()
    (repo / "pdgan" / "2" / "model.py").write_text("user's version 2")
    assert export_main(args) == 0
    assert (repo / "pdgan" / "NOTES.txt").read_text() == "user's notes"
    assert (repo / "pdgan" / "2" / "model.py").read_text() == "user's version 2"
    assert (repo / "pdgan_sampler" / "1" / "model.onnx").stat().st_mtime_ns != first
    assert not [p for p in repo.iterdir() if p.name.startswith(".pdgan-export-")]  # the staging folder is gone
    (repo / ".pdgan-triton.json").unlink()  # now nothing in the folder is known to be pdgan's
    capsys.readouterr()
    assert export_main(args) == 1 and "was not written by pdgan" in capsys.readouterr().err
    assert export_main([*args, "--overwrite"]) == 0
    assert (repo / "pdgan" / "NOTES.txt").read_text() == "user's notes"


@pytest.mark.slow
def test_killed_model_instance_stops_pdgan_serve(serve_python, tmp_path):
    """SIGKILL of the Python-backend stub: Triton stays "ready" while every request fails, so pdgan-serve exits
    with status 1 within 10 s (a supervisor restarts it), and tritonserver is gone."""
    server = Server(serve_python, ["digits", "--backend", "torch", "--max-batch-size", "2", "--no-warmup"],
                    tmp_path / "pdgan-serve.log")
    try:
        pids = server.triton_pids()
        stubs = [pid for pid in pids if "triton_python_backend_stub" in _processes().get(pid, "")]
        assert len(stubs) == 1, pids
        t0 = time.monotonic()
        os.kill(stubs[0], signal.SIGKILL)
        assert server.process.wait(30) == 1
        assert time.monotonic() - t0 < 10
        assert f"a model instance died (Python-backend stub pid {stubs[0]})" in server.log.read_text()
        time.sleep(0.5)
        assert [pid for pid in pids if _alive(pid)] == []
        assert list(Path("/dev/shm").glob(f"pdgan_{server.process.pid}_*")) == []  # the stub could not remove it
    finally:
        server.stop()


# --- the exported repository ---------------------------------------------------------------------------------------
@pytest.mark.usefixtures("torchscript_export")  # the repository and the server, not the exporter (test_export.py)
def test_export_triton_repository_loads_in_triton_and_matches_engine(serve_python, engine, tmp_path):
    """pdgan-export --format triton writes configs that Triton's ModelConfig proto parses, for every sampler
    variant; the Python variant loads in the real server and serves Engine's images for seeds."""
    from pdgan_infer.cli.export import main as export_main
    from pdgan_infer.serve.repository import TRITON_BACKENDS, _write_configs

    repo = tmp_path / "repo"
    assert export_main(["digits", "--format", "triton", "--triton-backend", "python", "--max-batch", "4",
                        "--out", str(repo), "-q"]) == 0
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == [
        ".pdgan-triton.json", "pdgan/1/model.py", "pdgan/config.pbtxt", "pdgan_sampler/1/model.onnx",
        "pdgan_sampler/1/model.py", "pdgan_sampler/config.pbtxt"]
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
