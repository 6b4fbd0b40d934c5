"""A raw HTTP/1.1 upstream for what a real server cannot be told to do: a body cut
short, a forbidden field, a framing no server library would write. It also records
each request head exactly as it came (the request target and fields as bytes), for
tests of what the proxy forwards. And a raw client exchange, for requests no client
library would send, and the one-listener mosn config the tests put in front of such
an upstream."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

READ_TIMEOUT = 5.0
"""Seconds a connection of the scripted upstream waits for a request before it gives up."""


class Reply:
    """Bytes to write for a request, then close the connection or keep it."""

    def __init__(self, data: bytes, close: bool = False) -> None:
        self.data = data
        self.close = close


class ScriptedHttpUpstream:
    """Serves on a free port in a thread. ``replies`` maps a request target (as sent,
    query included) to its :class:`Reply`; any other target is answered ``200`` with
    the request head as the body. ``heads`` holds every request head received."""

    def __init__(self, replies: dict[str, Reply] | None = None) -> None:
        self.replies = replies or {}
        self.heads: list[bytes] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "ScriptedHttpUpstream":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def targets(self) -> list[str]:
        """The request target of every request received, in order."""
        return [h.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1") for h in self.heads]

    def wait_heads(self, count: int, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.heads) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.heads

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                except OSError:
                    return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[length:]
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
                reply = self.replies.get(target)
                if reply is None:
                    reply = Reply(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s"
                                  % (len(head), head))
                conn.sendall(reply.data)
                if reply.close:
                    return


def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` on a fresh connection; everything read until the peer closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


ACCESS_LOG_FORMAT = "%response_code% %response_flag%"


def proxy_config(port: int, upstream_port: int, *, downstream: str = "Http1",
                 upstream: str = "Http1", routes: list[dict[str, Any]] | None = None,
                 route: dict[str, Any] | None = None, listener: dict[str, Any] | None = None,
                 access_log: Path | None = None, **proxy: Any) -> dict[str, Any]:
    """mosn on ``port`` (listener ``http``) sending everything to the cluster ``up`` at
    ``upstream_port``: ``routes`` go before the catch-all route, which gets ``route``'s
    fields; ``proxy`` adds to the proxy filter's config, ``listener`` to the listener's;
    ``access_log`` writes ``ACCESS_LOG_FORMAT`` lines there."""
    if access_log is not None:
        listener = {**(listener or {}), "access_logs": [
            {"log_path": str(access_log), "log_format": ACCESS_LOG_FORMAT}]}
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "main", "virtual_hosts": [{
                "name": "all", "domains": ["*"], "routers": [
                    *(routes or []),
                    {"match": {"prefix": "/"},
                     "route": {"cluster_name": "up", **(route or {})}}]}]}],
            "listeners": [{
                "name": "http", "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": downstream, "upstream_protocol": upstream,
                    "router_config_name": "main", **proxy}}]}],
                **(listener or {}),
            }],
        }],
        "cluster_manager": {"clusters": [{
            "name": "up", "hosts": [{"address": f"127.0.0.1:{upstream_port}"}]}]},
    }
