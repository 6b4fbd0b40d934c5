"""HTTP/1.1 messages the proxy refuses or corrects on their way, end to end: a request
without Host (400), a transfer coding it cannot read exactly (501), and the
Content-Length a 204 must not carry (dropped, to HTTP/1.1 and HTTP/2 clients alike).
Real sockets: a scripted upstream that records what reaches it, httpx and raw clients."""

from __future__ import annotations

import socket

import httpx
import pytest

from http_scripted import Reply, ScriptedHttpUpstream, exchange, proxy_config
from mosn.testing.process import free_port

NO_CONTENT_WITH_LENGTH = Reply(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n"
                               b"x-upstream: scripted\r\n\r\n")
DIRECT_204 = [{"match": {"prefix": "/direct-204"}, "direct_response": {"status": 204, "body": ""}}]


@pytest.fixture
def scripted(start_mosn):
    """mosn (HTTP/1.1 and HTTP/2 listeners) in front of a scripted upstream; yields
    (HTTP/1.1 port, HTTP/2 port, upstream)."""
    with ScriptedHttpUpstream({"/no-content": NO_CONTENT_WITH_LENGTH}) as upstream:
        port, h2_port = free_port(), free_port()
        start_mosn(proxy_config(port, upstream.port, routes=DIRECT_204))
        start_mosn(proxy_config(h2_port, upstream.port, routes=DIRECT_204, downstream="Http2"))
        yield port, h2_port, upstream


def test_http11_request_without_host_is_400_and_never_forwarded(scripted):
    port, _, upstream = scripted
    reply = exchange(port, b"GET /x HTTP/1.1\r\nuser-agent: raw\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ") and b"connection: close" in reply
    assert httpx.get(f"http://127.0.0.1:{port}/after").status_code == 200
    assert upstream.targets() == ["/after"]


@pytest.mark.parametrize("codings", ["identity, chunked", "gzip, chunked"])
def test_transfer_coding_before_chunked_is_501_and_never_forwarded(scripted, codings):
    port, _, upstream = scripted
    reply = exchange(port, (f"POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: {codings}"
                            "\r\n\r\n3\r\nabc\r\n0\r\n\r\n").encode())
    assert reply.startswith(b"HTTP/1.1 501 ")
    assert upstream.targets() == []


def test_204_loses_its_content_length_and_the_connection_goes_on(scripted):
    port, _, upstream = scripted
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /no-content HTTP/1.1\r\nhost: h\r\n\r\n")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 204 ")
        assert b"content-length" not in head.lower() and b"x-upstream: scripted" in head
        s.sendall(b"GET /next HTTP/1.1\r\nhost: h\r\n\r\n")  # no stray body bytes before it
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert upstream.targets() == ["/no-content", "/next"]


def test_direct_response_204_has_no_content_length(scripted):
    port, _, _ = scripted
    reply = exchange(port, b"GET /direct-204 HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 204 ") and b"content-length" not in reply.lower()


def test_204_to_an_http2_client_has_no_content_length(scripted):
    _, h2_port, _ = scripted
    with httpx.Client(http1=False, http2=True) as client:
        for path in ("/no-content", "/direct-204"):
            r = client.get(f"http://127.0.0.1:{h2_port}{path}")
            assert (r.http_version, r.status_code) == ("HTTP/2", 204)
            assert "content-length" not in r.headers
