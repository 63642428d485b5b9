"""Run NVIDIA's `tritonserver` (shipped in the nvidia-pytriton wheel) on a model repository, in the foreground.

    with TritonServer(repo, http_port=8000, grpc_port=8001, metrics_port=8002) as server:
        server.wait_ready()        # GET /v2/health/ready answers 200
        server.wait()              # until it exits or stop() is called (SIGTERM/SIGINT handlers call it)

The wheel's server and its Python backend (libtriton_python.so) are used as they are; the backend stub that
matches this interpreter (python_backend_stubs/3.X/) is copied next to them in a private backend folder,
as PyTriton itself does.

Which Pythons work: the stub embeds CPython through the shared library `libpython3.X.so.1.0`, and runs its
Python code with the standard library and site-packages of the first `python3` on PATH (this environment's).
Both must be the same Python: the stub must load *this* interpreter's libpython, so the server is started
with this interpreter's LIBDIR first on LD_LIBRARY_PATH. A Python built without a shared libpython (e.g.
pyenv's default build; `sysconfig.get_config_var("Py_ENABLE_SHARED") == 0`) cannot run the stub: the loader
would take another libpython (the system's, e.g. Debian's 3.11.2) and pair it with this Python's standard
library, which fails (AttributeError: '_thread.RLock' object has no attribute '_recursion_count' for a
3.11.2 libpython with a 3.11.7 library). Stubs exist for Python 3.8 - 3.13.

The server runs in a process group of its own and gets SIGTERM if this process dies (PR_SET_PDEATHSIG);
`stop` sends SIGINT (Triton's graceful shutdown: in-flight requests finish, --exit-timeout-secs), then
kills the whole group (server and stubs) if it is still there after `grace` seconds.

What a client can reach: HTTP, gRPC and metrics listen on `host` only (127.0.0.1 unless told otherwise; HTTP
on `http_host` when given: pdgan-serve puts its request guard in front), and the APIs in RESTRICTED_APIS
(system/CUDA shared memory, log settings, tracing, model load/unload/index) need the header ADMIN_HEADER with a
key drawn at each start and never shown, so every client gets "This API is restricted" (HTTP 403) or "This
protocol is restricted" (gRPC UNAVAILABLE). The key is on tritonserver's command line, so local users of the
machine who can list processes can read it; the restriction is against network clients.

Temporaries carry this process's pid (`pdgan-serve-PID-*` in the temp folder, the Python backend's shared-memory
regions `/dev/shm/pdgan_PID_*`); `sweep_stale` removes those of pdgan-serve processes that died without cleaning
up (SIGKILL), and `start` calls it.
"""
from __future__ import annotations

import collections
import importlib.util
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..distributed import die_with_parent
from ..errors import PDGANError

log = logging.getLogger("pdgan")
# Error lines tritonserver prints on every CPU-only start: no GPU management library, no config timestamp.
HARMLESS = re.compile(r"NVML|DCGM|config modification time|CudaDriverHelper")
INSTALL_HINT = "pip install 'pdgan[serve]' into a venv of its own (it pins numpy<2): make serve-env"
RESTRICTED_APIS = ("shared-memory", "logging", "trace", "model-repository")
ADMIN_HEADER = "pdgan-admin-key"
STUB = "triton_python_backend_stub"
TEMP_PREFIXES = ("pdgan-serve-", "pdgan-repo-")  # + PID + "-": the server's backends, pdgan-serve's repository
SHM_PREFIX = "pdgan_"  # + PID + "_": the Python backend's shared-memory regions in /dev/shm
# What the nvidia-pytriton build of tritonserver can run: its one backend (TritonServer.start gives it only that) and
# the ensembles the server core runs itself. No ONNX Runtime (onnxruntime_onnx) or TensorRT (tensorrt_plan) backend.
SERVED_RUNTIMES = ("python", "ensemble")


class ServeError(PDGANError, RuntimeError):
    """The Triton server cannot be started or stopped as asked; the message says why and what to do."""


def python_problem() -> str | None:
    """Why this interpreter cannot host Triton's Python-backend stub, or None."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return (f"this Python ({sys.executable}, {sys.version.split()[0]}) has no shared libpython, which Triton's "
                "Python backend needs; use a Python built with --enable-shared (Debian/Ubuntu's python3, "
                "conda, the python Docker images, pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared)")
    if not (Path(sysconfig.get_config_var("LIBDIR") or "") / str(sysconfig.get_config_var("INSTSONAME"))).exists():
        return f"this Python's libpython ({sysconfig.get_config_var('INSTSONAME')}) is not in its LIBDIR"
    root = _pytriton_root()
    if root is not None and not (root / "tritonserver/python_backend_stubs" / version).is_dir():
        return f"nvidia-pytriton has no Python-backend stub for Python {version} (it has 3.8 - 3.13)"
    return None


def _pytriton_root() -> Path | None:
    spec = importlib.util.find_spec("pytriton")
    return None if spec is None or not spec.submodule_search_locations else Path(spec.submodule_search_locations[0])


def find_tritonserver() -> tuple[Path, Path, Path]:
    """(tritonserver binary, its Python backend folder, this Python's stub) from the nvidia-pytriton wheel."""
    root = _pytriton_root()
    if root is None:
        raise ServeError(f"NVIDIA Triton Inference Server is not installed here (no nvidia-pytriton); {INSTALL_HINT}")
    problem = python_problem()
    if problem:
        raise ServeError(problem)
    dist = root / "tritonserver"
    binary, backend = dist / "bin/tritonserver", dist / "backends/python"
    stub = dist / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / \
        "triton_python_backend_stub"
    for path in (binary, backend / "libtriton_python.so", stub):
        if not path.exists():
            raise ServeError(f"{path} is missing from nvidia-pytriton; reinstall it ({INSTALL_HINT})")
    return binary, backend, stub


def server_env(libs: Path) -> dict[str, str]:
    """The environment of the server: this Python's libpython first, the wheel's libraries, this env's bin/."""
    env = dict(os.environ)
    paths = [sysconfig.get_config_var("LIBDIR"), str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
    env["PATH"] = f"{Path(sys.exec_prefix) / 'bin'}:{env.get('PATH', '')}"
    return env


def url_host(host: str) -> str:
    """The address a local client uses to reach a server bound to `host` (a wildcard: loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def process_alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (/proc/PID/task/*/children; a scan of /proc where the kernel lacks it)."""
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task")
                for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return []
    children = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def sweep_stale(tmp: str | Path | None = None, shm: str | Path = "/dev/shm") -> list[Path]:
    """Remove this user's pdgan-serve temporaries (TEMP_PREFIXES folders, SHM_PREFIX regions) whose pid is not a
    live process: what a SIGKILLed pdgan-serve or tritonserver leaves. Returns what was removed."""
    removed = []
    candidates = [(p, p.name[len(prefix):].split("-", 1)[0]) for prefix in TEMP_PREFIXES
                  for p in Path(tmp or tempfile.gettempdir()).glob(f"{prefix}*-*")]
    candidates += [(p, p.name[len(SHM_PREFIX):].split("_", 1)[0]) for p in Path(shm).glob(f"{SHM_PREFIX}*_*")]
    for path, pid in candidates:
        try:
            if not pid.isdigit() or process_alive(int(pid)) or path.lstat().st_uid != os.getuid():
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


class TritonServer:
    """One tritonserver process on `repository` (see the module docstring). `on_line` gets every line the
    server (and its model stubs) print; the last 200 are kept for error messages."""

    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", http_port: int = 8000,
                 grpc_port: int = 8001, metrics_port: int = 8002, exit_timeout_s: int = 5, verbose: int = 0,
                 on_line: Callable[[str], None] | None = None, extra_args: list[str] | None = None,
                 http_host: str | None = None):
        self.repository = Path(repository).resolve()
        self.host, self.http_host = host, host if http_host is None else http_host
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.admin_key = secrets.token_hex(16)
        self.exit_timeout_s, self.verbose, self.on_line = exit_timeout_s, verbose, on_line
        self.extra_args = list(extra_args or [])
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.process: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._reader: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"http://{url_host(self.http_host)}:{self.ports['http']}"

    def command(self, binary: Path, backends: Path) -> list[str]:
        restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={self.admin_key}"
        return [str(binary), f"--model-repository={self.repository}", f"--backend-directory={backends}",
                f"--http-address={self.http_host}", f"--http-port={self.ports['http']}",
                f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
                f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}",
                f"--backend-config=python,shm-region-prefix-name={SHM_PREFIX}{os.getpid()}_",
                "--allow-metrics=true", "--allow-gpu-metrics=false",
                f"--exit-timeout-secs={self.exit_timeout_s}", "--strict-readiness=true",
                f"--log-verbose={self.verbose}", *self.extra_args]

    def start(self) -> TritonServer:
        binary, backend, stub = find_tritonserver()
        sweep_stale()
        self._workdir = tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIXES[0]}{os.getpid()}-")
        backends = Path(self._workdir.name) / "backends"
        shutil.copytree(backend, backends / "python", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
        # The copied backend library finds the wheel's libraries through LD_LIBRARY_PATH (its RPATH is relative).
        env = server_env(binary.parent.parent.parent.parent / "nvidia_pytriton.libs")
        self.process = subprocess.Popen(self.command(binary, backends), env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        errors="replace", bufsize=1, start_new_session=True,
                                        preexec_fn=die_with_parent)  # noqa: PLW1509 - prctl only, no locks
        self._reader = threading.Thread(target=self._read, name="tritonserver-log", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            self.tail.append(line)
            if self.on_line is not None:
                self.on_line(line)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stubs(self) -> list[int]:
        """The pids of the server's Python-backend stubs (one per model instance), its children."""
        if not self.alive():
            return []
        return [pid for pid in _children(self.process.pid) if STUB in _cmdline(pid)]

    def watch(self, stubs: list[int], poll_s: float = 1.0) -> int:
        """Wait until the server exits (its status), checking every `poll_s` seconds that every pid of `stubs` still
        runs: a dead model instance leaves Triton "ready" while each request to it fails, so ServeError then."""
        assert self.process is not None
        while True:
            try:
                code = self.process.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                dead = [pid for pid in stubs if not process_alive(pid)]
                if dead and self.alive():
                    raise ServeError(f"a model instance died (Python-backend stub pid {dead[0]}); Triton would "
                                     "answer every request to it with an error, so pdgan-serve stops (exit status "
                                     "1: let a supervisor restart it)") from None
                continue
            self._join_reader()
            return code

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Until /v2/health/ready answers 200; ServeError with the server's own error lines if it exits first."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive():
                self._join_reader()
                raise ServeError(f"tritonserver exited with status {self.process.returncode} before it was "
                                 f"ready: {self.failure()}")
            if time.monotonic() > deadline:
                raise ServeError(f"tritonserver was not ready after {timeout:.0f} s: {self.failure()}")
            time.sleep(0.1)

    def failure(self) -> str:
        """The server's first error line (model load failures, busy ports), else its last line."""
        errors = [line for line in self.tail
                  if (line[:1] == "E" or "error" in line.lower()) and not HARMLESS.search(line)]
        text = (errors or list(self.tail)[-1:] or ["no output"])[0]
        return text if len(text) < 600 else text[:600] + " ..."

    def wait(self) -> int:
        assert self.process is not None
        code = self.process.wait()
        self._join_reader()
        return code

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGINT (graceful), then SIGKILL to the server's process group after `grace` seconds."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal(signal.SIGINT)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning(f"tritonserver did not stop within {grace:.0f} s; killing it")
        self._signal(signal.SIGKILL)  # the stubs too, should any outlive the server
        code = self.process.wait()
        self._join_reader()
        for region in Path("/dev/shm").glob(f"{SHM_PREFIX}{os.getpid()}_*"):  # what killed stubs could not remove
            region.unlink(missing_ok=True)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return code

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
