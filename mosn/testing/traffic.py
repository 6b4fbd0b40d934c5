"""Real clients and servers on 127.0.0.1 for the conformance suites: one request of
any installed protocol (HTTP/1.1 by :mod:`http.client`, HTTP/2 by httpx, RPC by the
protocol's codec over a socket), an HTTP/1.1 backend (:mod:`http.server`), and TCP
backends that name themselves to every connection.

Each server runs on its own thread and counts what it got; ``stop()`` closes it.
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping

from mosn.rpc.codec import Frame, FrameCodec, FrameKind

__all__ = ["HttpBackend", "NamedBackend", "Reply", "http_request", "rpc_request", "which_backend"]

REQUEST_TIMEOUT = 10.0
"""Seconds one request may take through a mosn on a loaded CI machine."""
MAX_REPLY_BYTES = 16 * 1024 * 1024
"""Bytes read for one RPC reply at most (a test's replies are small)."""


@dataclass(frozen=True)
class Reply:
    """What a client got: ``status`` as the protocol says it (HTTP's, or the RPC
    protocol's own number) and ``http_status`` as mosn reads it (200 for success)."""

    status: int
    http_status: int
    body: bytes = b""
    frame: Frame | None = None


def http_request(version: str, port: int, path: str, headers: Mapping[str, str] = {},
                 method: str = "GET", body: bytes = b"") -> Reply:
    """One request over a new connection; ``version`` ``"1.1"`` or ``"2"`` (h2c with
    prior knowledge, through httpx with its http2 extra)."""
    if version == "2":
        import httpx

        with httpx.Client(http1=False, http2=True, timeout=REQUEST_TIMEOUT) as client:
            r = client.request(method, f"http://127.0.0.1:{port}{path}", headers=dict(headers),
                               content=body or None)
            return Reply(r.status_code, r.status_code, r.content)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request(method, path, body=body or None, headers=dict(headers))
        r = conn.getresponse()
        return Reply(r.status, r.status, r.read())
    finally:
        conn.close()


def rpc_request(codec: FrameCodec, port: int, service: str, method: str = "echo",
                headers: Mapping[str, str] = {}, body: bytes = b"kit",
                request_id: int = 1) -> Reply:
    """One RPC request built by ``codec`` (with ``headers`` added through the codec's
    ``with_headers``), and its response. LookupError if headers are asked for and the
    codec cannot add them."""
    data = codec.request(service, method, body)
    if headers:
        add = getattr(codec, "with_headers", None)
        if add is None:
            raise LookupError(f"{codec.name} cannot add header fields to a request")
        decoded = codec.decode(bytearray(data))
        assert decoded is not None
        data = add(decoded, dict(headers))
    frame = bytearray(data)
    codec.set_request_id(frame, request_id)
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(frame)
        buffer = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{codec.name}: the connection closed with no reply")
            buffer += chunk
            if len(buffer) > MAX_REPLY_BYTES:
                raise ConnectionError(f"{codec.name}: no whole reply in {len(buffer)} bytes")
            reply = codec.decode(buffer)
            if reply is not None and reply.kind is FrameKind.RESPONSE:
                return Reply(reply.status, codec.http_status(reply.status), b"", reply)


class _Counting:
    """A socketserver's count of what it served, across its handler threads."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)  # type: ignore[call-arg]
        self.count = 0
        self.lock = threading.Lock()

    def counted(self) -> None:
        with self.lock:
            self.count += 1


class _Served:
    """A socketserver on a free port of 127.0.0.1, served on its own thread."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self._server: Any = server
        self.port: int = server.server_address[1]  # type: ignore[index]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.server.counted()  # type: ignore[attr-defined]
        body = b"kit backend\n"
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HttpServer(_Counting, ThreadingHTTPServer):
    pass


class HttpBackend(_Served):
    """An HTTP/1.1 server answering every request 200; ``requests`` counts them."""

    def __init__(self) -> None:
        super().__init__(_HttpServer(("127.0.0.1", 0), _Handler))

    @property
    def requests(self) -> int:
        return self._server.count


class _NamedHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.counted()  # type: ignore[attr-defined]
        self.request.sendall(self.server.name + b"\n")  # type: ignore[attr-defined]
        while self.request.recv(65536):  # until the client (or mosn) closes
            pass


class _NamedServer(_Counting, socketserver.ThreadingTCPServer):
    name = b""


class NamedBackend(_Served):
    """A TCP server that writes its ``name`` and a newline to every connection, then
    reads until it closes; ``connections`` counts them. Through a ``tcp_proxy``, the
    first line a client reads says which host the load balancer chose."""

    def __init__(self, name: str) -> None:
        self.name = name
        server = _NamedServer(("127.0.0.1", 0), _NamedHandler)
        server.name = name.encode()
        super().__init__(server)

    @property
    def connections(self) -> int:
        return self._server.count


def which_backend(port: int) -> str:
    """Connect to ``port`` (a ``tcp_proxy`` in front of :class:`NamedBackend` hosts)
    and return the name the host wrote; "" if the connection closed first."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                return ""
            line += chunk
    return line.decode().strip()
