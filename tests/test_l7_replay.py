"""Requests the upstream did not process are sent again, without a retry policy: here
HTTP/1.1, where a server closes a reused keep-alive connection as a request goes out
on it (its idle timeout racing the request). With no byte of a response, the request
may or may not have been processed: an idempotent one is sent again on a new
connection (RFC 9110 9.2.2), a non-idempotent one never is. (HTTP/2's REFUSED_STREAM
and GOAWAY: plugins/http2/tests/test_http2_streams.py.)"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from typing import Any, Iterator

import httpx
import pytest

from conftest import free_port, wait_for_port
from test_http_proxy import cluster, http_config, to

TIMEOUT = 10.0  # seconds any one exchange may take on a loaded CI machine


class ClosingOnReuse:
    """An HTTP/1.1 server that answers the first request on a connection (keep-alive)
    and closes the connection, unanswered, when a second one comes on it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: Counter[str] = Counter()
        """Request lines received, answered or not."""
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "ClosingOnReuse":
        self._thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TIMEOUT)
            served = 0
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                self.requests[lines[0].split(" ")[0]] += 1
                length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                               if line.lower().startswith("content-length:")), 0)
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                if served:
                    return  # closed as the reused connection's request came
                served += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nserved")


@pytest.fixture
def rude_upstream() -> Iterator[ClosingOnReuse]:
    with ClosingOnReuse() as server:
        yield server


@pytest.fixture
def rude_proxy(start_mosn: Any, rude_upstream: ClosingOnReuse) -> tuple[str, Any]:
    """mosn (HTTP/1.1 both ways) in front of ``rude_upstream``; (its URL, mosn)."""
    port = free_port()
    unused = {name: free_port() for name in ("blue", "green", "shadow")}
    mosn = start_mosn(http_config(port, unused, [to("rude")],
                                  clusters=[cluster("rude", rude_upstream.port)]))
    return f"http://127.0.0.1:{port}/", mosn


def test_idempotent_request_sent_again_when_reused_connection_closes(rude_proxy, rude_upstream):
    url, mosn = rude_proxy
    with httpx.Client(timeout=TIMEOUT) as client:
        first = client.get(url)
        second = client.get(url)  # on the reused upstream connection, closed under it
        put = client.put(url, content=b"abc")
    assert (first.status_code, second.status_code, put.status_code) == (200, 200, 200)
    assert second.text == put.text == "served"
    assert rude_upstream.requests == {"GET": 3, "PUT": 2}  # each sent again once
    stats = mosn.stats()
    assert stats["cluster.rude.upstream_rq_replay"] == 2
    assert stats["cluster.rude.upstream_rq_retry"] == 0  # not a retry: no policy needed


def test_non_idempotent_request_never_sent_twice(rude_proxy, rude_upstream):
    url, mosn = rude_proxy
    with httpx.Client(timeout=TIMEOUT) as client:
        assert client.get(url).status_code == 200
        post = client.post(url, content=b"order one pizza")
    assert post.status_code == 502
    assert "closed_before_response" in post.text
    assert rude_upstream.requests == {"GET": 1, "POST": 1}
    assert mosn.stats()["cluster.rude.upstream_rq_replay"] == 0
