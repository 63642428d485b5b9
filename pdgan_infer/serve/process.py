"""`ServeProcess`: `pdgan-serve ARGS` as a child process on free ports, for tests and benchmarks.

    with ServeProcess(["digits", "--backend", "torch"], python=".venv-serve/bin/python") as server:
        client = tritonclient.http.InferenceServerClient(server.url)
        ...
        server.metrics_text()        # Prometheus text of /metrics

`python`: the interpreter of the serving environment (default: this one). The output goes to `log`.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .tritonserver import ServeError


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class ServeProcess:
    def __init__(self, args: list[str], python: str | Path | None = None, log: str | Path = "pdgan-serve.log",
                 ready_timeout: float = 900.0, cwd: str | Path | None = None):
        self.http, self.grpc, self.metrics = free_ports(3)
        self.log = Path(log)
        cmd = [str(python or sys.executable), "-m", "pdgan_infer.cli.serve", *args, "--http-port", str(self.http),
               "--grpc-port", str(self.grpc), "--metrics-port", str(self.metrics)]
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"pdgan-serve did not become ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (pdgan-serve's clean stop), SIGKILL after `timeout` seconds; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
