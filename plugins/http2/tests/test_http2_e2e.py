"""The Http2 protocol through mosn end to end: curl, httpx and h2load as clients,
hypercorn as the HTTP/2 upstream, real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from websockets.sync.server import serve as ws_serve

from h2_fixtures import h2_engine, h2_proxy, h2_upstream  # noqa: F401 (pytest fixtures)
from h2_peers import RawClient
from mosn.testing.process import serving

ROOT = Path(__file__).resolve().parents[3]

TIMEOUT = 10.0  # seconds any one exchange may take on a loaded CI machine


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), *args],
                          capture_output=True, text=True, timeout=TIMEOUT * 2)


def test_curl_prior_knowledge(h2_upstream, h2_proxy):
    port, _ = h2_proxy(h2_upstream)
    out = curl("--http2-prior-knowledge", "-w", "\n%{http_version}",
               "-H", "x-test: one", f"http://127.0.0.1:{port}/echo?a=1")
    assert out.returncode == 0, out.stderr
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "2"
    info = json.loads(body)
    assert info["http_version"] == "2"  # the upstream hop is HTTP/2 as well
    assert info["path"] == "/echo" and info["query"] == "a=1"
    headers = dict(info["headers"])
    assert headers["x-test"] == "one"
    assert headers["host"] == f"127.0.0.1:{port}"
    assert "x-request-id" in headers


# -- protocol conversion ------------------------------------------------------------


@pytest.fixture(scope="module")
def h1_upstream() -> Iterator[int]:
    """The example upstream on uvicorn: HTTP/1.1 only."""
    with serving(lambda port: [sys.executable, str(ROOT / "examples" / "http_upstream.py"),
                               "--port", str(port), "--name", "h1"]) as port:
        yield port


def test_http1_downstream_to_http2_upstream(h2_upstream, h2_proxy):
    port, _ = h2_proxy(h2_upstream, downstream="Http1", upstream="Http2")
    body = b"x" * 100_000

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 30_000):
            yield body[i:i + 30_000]

    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.post(f"http://127.0.0.1:{port}/upload-echo", content=chunks(),
                        headers={"host": "api.example.com", "keep-alive": "timeout=5",
                                 "x-keep": "yes", "te": "trailers"})
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    info = r.json()
    assert info["http_version"] == "2"
    assert info["body_size"] == len(body)  # chunked on the way in, DATA frames out
    headers = dict(info["headers"])
    assert headers["host"] == "api.example.com"  # Host -> :authority
    assert headers["x-keep"] == "yes" and headers["te"] == "trailers"
    assert not {"connection", "keep-alive", "transfer-encoding"} & set(headers)
    # The response had a content-length; a body streamed without one becomes chunked.
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.get(f"http://127.0.0.1:{port}/bytes/200000")
    assert len(r.content) == 200000
    assert r.headers.get("transfer-encoding") == "chunked"


def test_http2_downstream_to_http1_upstream(h1_upstream, h2_proxy):
    port, _ = h2_proxy(h1_upstream, downstream="Http2", upstream="Http1")

    def chunks() -> Iterator[bytes]:
        yield b"a" * 1000
        yield b"b" * 1000

    with httpx.Client(http1=False, http2=True, timeout=TIMEOUT) as client:
        r = client.post(f"http://127.0.0.1:{port}/echo", content=chunks(),
                        headers={"x-keep": "yes", "cookie": "a=1"})
        assert r.http_version == "HTTP/2"
        info = r.json()
        big = client.get(f"http://127.0.0.1:{port}/bytes/300000")
    assert info["http_version"] == "1.1"
    assert info["body_size"] == 2000  # no content-length: sent chunked upstream
    headers = dict(info["headers"])
    assert headers["host"] == f"127.0.0.1:{port}"  # :authority -> Host
    assert headers["transfer-encoding"] == "chunked"
    assert headers["x-keep"] == "yes" and headers["cookie"] == "a=1"
    assert big.status_code == 200 and len(big.content) == 300000
    assert "transfer-encoding" not in big.headers and "connection" not in big.headers


# -- h2c upgrade ----------------------------------------------------------------------


def test_curl_h2c_upgrade_from_http1(h2_upstream, h2_proxy):
    """curl --http2 on cleartext asks ``Upgrade: h2c``: answered 101, the request
    served as stream 1 over HTTP/2, and the next requests on the same connection too."""
    port, _ = h2_proxy(h2_upstream, downstream="Auto")
    url = f"http://127.0.0.1:{port}/echo"
    out = curl("--http2", "-v", "-w", "\n%{http_version}\n", url, url)
    assert out.returncode == 0, out.stderr
    assert "101 Switching Protocols" in out.stderr
    assert out.stderr.count("Connected to") == 1  # both over the one upgraded connection
    bodies = [line for line in out.stdout.splitlines() if line.startswith("{")]
    versions = [line for line in out.stdout.splitlines() if line in ("1.1", "2")]
    assert versions == ["2", "2"]
    for body in bodies:
        headers = dict(json.loads(body)["headers"])
        assert not {"upgrade", "http2-settings", "connection"} & set(headers)
    assert len(bodies) == 2


def test_h2c_upgrade_without_settings_is_plain_http1(h2_upstream, h2_proxy):
    """An upgrade request without HTTP2-Settings is not upgraded (RFC 7540 3.2.1)."""
    port, _ = h2_proxy(h2_upstream, downstream="Http1")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                     b"Upgrade: h2c\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b'"upgrade"' not in data


def test_route_chooses_http2_upstream(h2_upstream, h2_proxy):
    """A route's upstream_protocol wins over the downstream's protocol."""
    routes = [
        {"match": {"prefix": "/two/"}, "route": {"cluster_name": "backend",
                                                 "upstream_protocol": "Http2"}},
        {"match": {"prefix": "/"}, "route": {"cluster_name": "backend"}},
    ]
    port, _ = h2_proxy(h2_upstream, downstream="Http1", routes=routes)
    with httpx.Client(timeout=TIMEOUT) as client:
        two = client.get(f"http://127.0.0.1:{port}/two/echo").json()
        one = client.get(f"http://127.0.0.1:{port}/one/echo").json()
    assert two["http_version"] == "2" and one["http_version"] == "1.1"


def test_h2c_upgrade_with_a_body_is_served_as_http1(h2_upstream, h2_proxy):
    """An ``Upgrade: h2c`` offer on a request with a body (curl --http2 -d) cannot be
    taken before the body is read: mosn ignores it (RFC 9110 7.8) and answers over
    HTTP/1.1, with the body, keeping the connection for the next request."""
    port, _ = h2_proxy(h2_upstream, downstream="Auto")
    out = curl("--http2", "-d", "hello", "-w", "\n%{http_version}", f"http://127.0.0.1:{port}/echo")
    assert out.returncode == 0, out.stderr
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "1.1" and json.loads(body)["body_size"] == 5
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
                     b"Content-Length: 3\r\n\r\nabc"
                     b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 ") == 2 and b"101" not in data.split(b"\r\n", 1)[0]
    assert b'"body_size": 3' in data


def test_http1_request_on_an_http2_listener_is_505(h2_upstream, h2_proxy):
    """An HTTP/1.1 client on a listener that speaks HTTP/2 only gets an HTTP/1.1 505
    saying so, and the connection closed (not frames it would read as HTTP/0.9)."""
    port, mosn = h2_proxy(h2_upstream)  # downstream_protocol: Http2
    out = curl("-i", f"http://127.0.0.1:{port}/echo")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("HTTP/1.1 505 ")
    assert out.stdout.endswith("\n\nthis listener speaks HTTP/2 only\n")  # (text mode: no CR)
    assert httpx.Client(http1=False, http2=True).get(f"http://127.0.0.1:{port}/echo").status_code == 200


# -- WebSocket over HTTP/2 (RFC 8441) -------------------------------------------------


@pytest.fixture(scope="module")
def websocket_upstream() -> Iterator[int]:
    """An HTTP/1.1 WebSocket echo server (the websockets library)."""
    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with ws_serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.socket.getsockname()[1]
        server.shutdown()
        thread.join(5)


def ws_frame(payload: bytes) -> bytes:
    """A client's text frame: FIN, masked (RFC 6455 5.2; payload under 126 bytes)."""
    mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def test_websocket_over_http2_to_an_http1_upstream(websocket_upstream, h2_proxy):
    """An extended CONNECT (``:protocol websocket``) from an HTTP/2 client becomes the
    HTTP/1.1 upgrade an HTTP/1.1 WebSocket server takes; its 101 is the client's 200,
    and the frames pass both ways in DATA."""
    port, _ = h2_proxy(websocket_upstream, upstream="Http1")
    client = RawClient(port)
    try:
        client.pump(lambda: client.conn.remote_settings.enable_connect_protocol)
        sid = client.connect("/ws", "websocket", [("sec-websocket-version", "13")])
        client.pump(lambda: client.results[sid].status)
        assert client.results[sid].status == 200
        client.send(sid, ws_frame(b"hello over h2"))
        client.pump(lambda: len(client.results[sid].body) >= 2 + len(b"hello over h2"))
        assert bytes(client.results[sid].body) == b"\x81\x0dhello over h2"  # unmasked, echoed
    finally:
        client.close()
