"""A response the upstream cuts short reaches the client cut, never as a complete one:
HTTP/1.1 clients see the connection closed without the body's end, HTTP/2 clients an
RST_STREAM, and the stream is counted as a reset (``downstream_rq_tx_reset``,
``upstream_rq_rx_reset``, flag ``UC``), not as a 2xx. Real sockets: scripted HTTP/1.1
and HTTP/2 upstreams, httpx and raw clients."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from http_scripted import Reply, ScriptedHttpUpstream, exchange, proxy_config
from mosn.testing.process import free_port

sys.path.insert(0, str(ROOT / "plugins" / "http2" / "tests"))
from h2_peers import RawClient, ScriptedUpstream  # noqa: E402

CHUNKED_CUT = Reply(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nabcde",
                    close=True)
CHUNKED_CUT_AT_CHUNK = Reply(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                             b"5\r\nabcde\r\n", close=True)
LENGTH_CUT = Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabcde", close=True)
CLOSE_DELIMITED = Reply(b"HTTP/1.1 200 OK\r\n\r\nabcde", close=True)


@pytest.fixture
def scripted(start_mosn, tmp_path):
    """mosn in front of a scripted upstream; yields (proxy port, mosn, access log)."""
    with ScriptedHttpUpstream({"/chunked-cut": CHUNKED_CUT,
                               "/chunked-cut-at-chunk": CHUNKED_CUT_AT_CHUNK,
                               "/length-cut": LENGTH_CUT,
                               "/close-delimited": CLOSE_DELIMITED}) as upstream:
        port = free_port()
        log = tmp_path / "access.log"
        yield port, start_mosn(proxy_config(port, upstream.port, access_log=log)), log


def log_lines(log: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The access log's lines once it has ``count`` (it is written off the request path)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def raw_get(port: int, path: str) -> bytes:
    """A GET on a fresh connection; everything read until the proxy closes it."""
    return exchange(port, f"GET {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode())


@pytest.mark.parametrize("path", ["/chunked-cut", "/chunked-cut-at-chunk"])
def test_chunked_body_cut_short_closes_the_client_connection(scripted, path):
    port, mosn, log = scripted
    data = raw_get(port, path)  # returns only because the proxy closed the connection
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in data
    assert not data.endswith(b"0\r\n\r\n"), "a terminating chunk the upstream never sent"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{port}{path}")
    stats = mosn.wait_stat("listener.http.downstream_rq_tx_reset", 2)
    assert stats["listener.http.downstream_rq_tx_reset"] == 2
    assert stats.get("listener.http.downstream_rq_2xx", 0) == 0
    assert stats["cluster.up.upstream_rq_rx_reset"] == 2
    assert stats.get("cluster.up.upstream_rq_2xx", 0) == 0
    assert log_lines(log, 2) == ["200 UC", "200 UC"]


def test_content_length_body_cut_short_closes_the_client_connection(scripted):
    port, mosn, _ = scripted
    data = raw_get(port, "/length-cut")
    assert data == b"" or (data.startswith(b"HTTP/1.1 200 OK\r\n")
                           and len(data.partition(b"\r\n\r\n")[2]) < 100)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{port}/length-cut")
    stats = mosn.wait_stat("cluster.up.upstream_rq_rx_reset", 2)
    assert stats["cluster.up.upstream_rq_rx_reset"] == 2
    assert stats.get("listener.http.downstream_rq_2xx", 0) == 0


def test_close_delimited_body_is_complete(scripted):
    port, mosn, _ = scripted
    r = httpx.get(f"http://127.0.0.1:{port}/close-delimited")
    assert (r.status_code, r.content) == (200, b"abcde")
    stats = mosn.wait_stat("listener.http.downstream_rq_2xx", 1)
    assert stats["listener.http.downstream_rq_2xx"] == 1
    assert stats.get("cluster.up.upstream_rq_rx_reset", 0) == 0


def test_http2_client_sees_rst_stream_when_the_http1_upstream_cuts_the_body(start_mosn,
                                                                          tmp_path):
    with ScriptedHttpUpstream({"/chunked-cut": CHUNKED_CUT}) as upstream:
        port = free_port()
        mosn = start_mosn(proxy_config(port, upstream.port, downstream="Http2"))
        client = RawClient(port)
        try:
            sid = client.request("/chunked-cut")
            client.pump(lambda: client.done(sid))
            result = client.results[sid]
            assert result.status == 200 and not result.ended
            assert result.reset is not None  # RST_STREAM, never END_STREAM
            ok = client.request("/other")  # the connection itself carries on
            client.pump(lambda: client.done(ok))
            assert client.results[ok].ended and client.results[ok].status == 200
        finally:
            client.close()
        stats = mosn.wait_stat("listener.http.downstream_rq_tx_reset", 1)
        assert stats["listener.http.downstream_rq_tx_reset"] == 1
        assert stats["listener.http.downstream_rq_2xx"] == 1  # the second request only


def test_http2_upstream_closing_without_end_stream_cuts_the_http1_client(start_mosn,
                                                                         tmp_path):
    with ScriptedUpstream() as upstream:
        port = free_port()
        log = tmp_path / "access.log"
        mosn = start_mosn(proxy_config(port, upstream.port, upstream="Http2", access_log=log))
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"http://127.0.0.1:{port}/close-mid-body")
        stats = mosn.wait_stat("cluster.up.upstream_rq_rx_reset", 1)
        assert stats["cluster.up.upstream_rq_rx_reset"] == 1
        assert stats["listener.http.downstream_rq_tx_reset"] == 1
        assert stats.get("listener.http.downstream_rq_2xx", 0) == 0
        assert log_lines(log, 1) == ["200 UC"]
