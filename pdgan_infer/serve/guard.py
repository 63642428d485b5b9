"""`RequestGuard`: pdgan-serve's HTTP front. It checks each request's size and tensor shapes before tritonserver's
HTTP endpoint (on a loopback port of its own) parses it, and forwards the rest unchanged.

    guard = RequestGuard("127.0.0.1", 8000, upstream_port=40123).start()   # serves in a thread
    ...
    guard.stop()

Why: Triton 2.51's HTTP front end (the one nvidia-pytriton 0.7 ships; no newer wheel exists) crashes on an inference
request whose input shape declares more elements than memory holds (`"shape": [1099511627776, 1]`: SIGABRT;
`[2**62, 1]`: SIGSEGV), and it has no option to cap request sizes. The guard answers such a request itself:

  * a body over `max_body` bytes: 413; a body without Content-Length (chunked) or compressed: 411 / 415;
  * a request with a body (on any path, so no spelling of /v2/models/NAME[/versions/V]/infer slips past; every
    Triton HTTP API takes JSON) whose JSON header does not parse, or with an "inputs" entry whose shape is not a
    list of non-negative integers, or whose element count exceeds the request's size in bytes (every element takes
    at least one byte, in JSON and in binary data alike, so no real request does): 400;
  * Triton's own 500 for a request it cannot parse ("Unable to parse ...", "failed to parse the request JSON"): 400,
    the same message.

Errors are Triton's JSON, {"error": "..."}. Every other request (health, metadata, config, statistics; the
restricted APIs, which Triton answers 403) is forwarded as it is. gRPC does not pass here (gRPC's own 2 GB message
limit applies, and its shape handling does not crash).
"""
from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("pdgan")
MAX_BODY = 64 << 20  # bytes of one request (the default of later Tritons' --http-max-input-size); 8 M binary seeds
PARSE_ERRORS = ("Unable to parse", "failed to parse the request JSON")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
              "content-length", "host", "expect"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_infer_request(body: bytes, header_length: str | None) -> None:
    """BadRequest(400) unless BODY's JSON header (its first `header_length` bytes: the Inference-Header-Content-Length
    of binary-data requests; else all of it) is an object whose every input has a shape of non-negative integers
    whose product is at most len(BODY)."""
    if header_length is None:
        size = len(body)
    elif not header_length.isdigit() or int(header_length) > len(body):
        raise BadRequest(400, f"Inference-Header-Content-Length {header_length!r} is not a length within the body "
                              f"({len(body)} bytes)")
    else:
        size = int(header_length)
    try:
        request = json.loads(body[:size])
    except (ValueError, RecursionError) as e:
        raise BadRequest(400, f"the request JSON does not parse: {str(e)[:200]}") from None
    if not isinstance(request, dict):
        raise BadRequest(400, "the request JSON must be an object with an 'inputs' list")
    inputs = request.get("inputs", [])
    if not isinstance(inputs, list):
        raise BadRequest(400, "'inputs' must be a list")
    for i, spec in enumerate(inputs):
        name = spec.get("name", i) if isinstance(spec, dict) else i
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise BadRequest(400, f"input {name!r}: 'shape' must be a list of non-negative integers, got "
                                  f"{json.dumps(shape)[:100]}")
        if _elements_exceed(shape, len(body)):
            raise BadRequest(400, f"input {name!r}: shape {json.dumps(shape)[:100]} declares more elements than the "
                                  f"request's {len(body)} bytes hold")


def _elements_exceed(shape: list[int], limit: int) -> bool:
    """prod(shape) > limit, without building the product of a long list of huge dims (that would take minutes)."""
    if 0 in shape:
        return False
    count = 1
    for d in shape:
        count *= d
        if count > limit:
            return True
    return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as tritonclient expects
    server: RequestGuard

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without TCP_NODELAY, Nagle's algorithm and the client's delayed ACK
        # hold the body back for ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream: http.client.HTTPConnection | None = None
        with self.server.lock:
            self.server.handlers.add(self)

    def finish(self) -> None:
        with self.server.lock:
            self.server.handlers.discard(self)
        if self.upstream is not None:
            self.upstream.close()
        super().finish()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("http: " + format % args)

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _forward(self) -> None:
        try:
            body = self._read_body()
            if body:
                check_infer_request(body, self.headers.get("Inference-Header-Content-Length"))
        except BadRequest as e:
            self._reply(e.status, json.dumps({"error": str(e)}).encode(), {"Content-Type": "application/json"})
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            status, reply_headers, reply = self._upstream(body, headers)
        except (OSError, http.client.HTTPException) as e:
            self._reply(503, json.dumps({"error": f"the inference server is not reachable ({e})"}).encode(),
                        {"Content-Type": "application/json"})
            return
        if status == 500 and any(p.encode() in reply[:200] for p in PARSE_ERRORS):
            status = 400  # Triton calls a request it cannot parse an internal error
        self._reply(status, reply, reply_headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise BadRequest(411, "send the request with a Content-Length (chunked bodies are not accepted)")
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            self.close_connection = True
            raise BadRequest(415, "compressed requests are not accepted; send the body uncompressed")
        text = self.headers.get("Content-Length", "0")
        if not text.isdigit():
            self.close_connection = True
            raise BadRequest(400, f"Content-Length {text!r} is not a number")
        length = int(text)
        if length > self.server.max_body:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise BadRequest(413, f"the request has {length} bytes; at most {self.server.max_body} are accepted")
        return self.rfile.read(length)

    def _upstream(self, body: bytes, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in (0, 1):  # a kept-alive upstream connection that Triton closed: reconnect once
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=3600)
            try:
                self.upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = self.upstream.getresponse()
                return response.status, response.getheaders(), response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                self.upstream.close()
                self.upstream = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _reply(self, status: int, body: bytes, headers) -> None:
        self.send_response(status)
        for key, value in (headers.items() if isinstance(headers, dict) else headers):
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class RequestGuard(ThreadingHTTPServer):
    """Listens on (host, port); forwards checked requests to Triton's HTTP endpoint on 127.0.0.1:upstream_port."""

    daemon_threads = True

    def __init__(self, host: str, port: int, upstream_port: int, max_body: int = MAX_BODY):
        self.address_family = socket.AF_INET6 if ":" in host else self.address_family
        self.upstream_port, self.max_body = upstream_port, max_body
        self._thread: threading.Thread | None = None
        self.handlers: set[_Handler] = set()
        self.lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:  # HTTPServer's also looks up the host's name (a DNS query for 0.0.0.0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def start(self) -> RequestGuard:
        self._thread = threading.Thread(target=self.serve_forever, name="pdgan-serve-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """No new connections; each open one ends after the request in progress (reads from clients are shut, so
        idle kept-alive connections, and the upstream connections they hold, close now: Triton's graceful stop
        waits for them)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        with self.lock:
            for handler in self.handlers:
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RD)
        self.server_close()


__all__ = ["RequestGuard", "check_infer_request", "MAX_BODY"]
