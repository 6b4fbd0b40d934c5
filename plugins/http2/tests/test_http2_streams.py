"""Streams through mosn's Http2 codecs under stress and failure: many at once, resets
both ways, an upstream GOAWAY, a slow reader, SETTINGS limits and garbage frames.
Clients: httpx, h2load and a raw h2 client (h2_peers.RawClient); upstreams: hypercorn
and a scripted h2 server (h2_peers.ScriptedUpstream) for what hypercorn won't do."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from typing import Any, Iterator

import httpx
import pytest

from h2_fixtures import (  # noqa: F401 (pytest fixtures)
    h2_engine,
    h2_proxy,
    h2_upstream,
    start_upstream,
)
from h2_peers import BODY_CHUNK, RawClient, ScriptedUpstream
from mosn.testing.process import stop_process
from mosn_http2 import PREFACE

TIMEOUT = 10.0  # seconds any one exchange may take on a loaded CI machine


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def scripted(h2_proxy) -> Iterator[tuple[ScriptedUpstream, RawClient]]:
    """The scripted upstream behind mosn, and a raw client connected to mosn."""
    with ScriptedUpstream() as upstream:
        port, _ = h2_proxy(upstream.port)
        client = RawClient(port)
        try:
            yield upstream, client
        finally:
            client.close()


def test_thousand_concurrent_streams_over_few_connections(h2_upstream, h2_proxy):
    """1,000 requests at once from httpx over HTTP/2, multiplexed by mosn onto
    upstream connections that take 100 streams each (hypercorn's limit)."""
    port, mosn = h2_proxy(h2_upstream)

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(http1=False, http2=True, limits=limits,
                                     timeout=30) as client:
            return await asyncio.gather(*(
                client.get(f"http://127.0.0.1:{port}/echo", params={"i": i})
                for i in range(1000)))

    responses = asyncio.run(run())
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in responses)
    assert [r.json()["query"] for r in responses] == [f"i={i}" for i in range(1000)]
    stats = mosn.stats()
    opened = sum(v for k, v in stats.items() if k.endswith("upstream_cx_total"))
    assert 1 <= opened <= 20  # streams shared connections: not one connection each


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
def test_h2load(h2_upstream, h2_proxy):
    port, _ = h2_proxy(h2_upstream)
    out = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "20",
                          f"http://127.0.0.1:{port}/echo"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"requests: 400 total, 400 started, 400 done, 400 succeeded", out.stdout)
    assert re.search(r"status codes: 400 2xx", out.stdout)


def test_trailers_both_ways(scripted):
    """Request trailers reach the upstream; its response trailers reach the client."""
    _, client = scripted
    sid = client.request("/trailers", body=b"body", end=False)
    client.trailers(sid, [("x-checksum", "abc"), ("x-count", "1")])
    client.pump(lambda: client.done(sid))
    result = client.results[sid]
    assert result.status == 200 and result.body == b"t"
    assert result.trailers == {b"x-checksum": b"abc", b"x-count": b"1"}


def test_client_reset_resets_upstream_stream(scripted):
    """RST_STREAM from the client mid-body reaches the upstream as RST_STREAM; the
    client's other streams on the same connection go on."""
    upstream, client = scripted
    sid = client.request("/slow", body=b"partial", end=False)
    wait_until(lambda: upstream.requests_received == ["/slow"])
    client.reset(sid)
    other = client.request("/ok")
    client.pump(lambda: client.done(other))
    assert client.results[other].body == b"ok"
    wait_until(lambda: upstream.resets_received)
    assert len(upstream.resets_received) == 1


def test_upstream_reset_reaches_client_other_streams_unaffected(scripted):
    _, client = scripted
    broken = client.request("/reset-mid-body")
    fine = client.request("/slow")
    client.pump(lambda: client.done(broken, fine))
    assert client.results[broken].reset is not None
    assert client.results[broken].status == 200  # it had begun
    assert client.results[fine].ended and client.results[fine].body == b"slow"


def test_upstream_goaway_finishes_stream_then_uses_new_connection(scripted):
    upstream, client = scripted
    first = client.request("/goaway")
    client.pump(lambda: client.done(first))
    assert client.results[first].ended and len(client.results[first].body) == 65536
    second = client.request("/ok")
    client.pump(lambda: client.done(second))
    assert client.results[second].body == b"ok"
    assert upstream.connections == 2


def test_drain_sends_goaway_and_finishes_streams_in_flight(h2_upstream, h2_proxy):
    """SIGTERM: mosn sends GOAWAY (NO_ERROR) 2^31-1, then (a round trip later) one
    naming the stream in flight, finishes it, and closes the connection then, not at
    the end of the graceful timeout."""
    port, mosn = h2_proxy(h2_upstream, graceful_timeout="20s")
    client = RawClient(port)
    try:
        sid = client.request("/delay/0.5")
        client.pump(lambda: client.conn.highest_outbound_stream_id == sid
                    and client.conn.remote_settings.max_concurrent_streams > 0)
        time.sleep(0.1)
        started = time.monotonic()
        mosn.proc.send_signal(signal.SIGTERM)
        client.pump(lambda: client.goaway is not None)
        assert client.goaway.error_code == 0 and client.goaway.last_stream_id == 2**31 - 1
        client.pump(lambda: client.goaway.last_stream_id != 2**31 - 1)
        assert client.goaway.error_code == 0 and client.goaway.last_stream_id == sid
        client.pump(lambda: client.closed, timeout=TIMEOUT)
        assert client.results[sid].ended and client.results[sid].status == 200
        assert mosn.proc.wait(TIMEOUT) == 0
        assert time.monotonic() - started < TIMEOUT
    finally:
        client.close()


def test_slow_reader_throttles_upstream(scripted):
    """A client that stops acknowledging DATA: the upstream, which sends only as its
    windows allow, is held to a few windows' worth by the proxy's own acknowledgements
    (hypercorn would buffer without bound, so a scripted upstream sends here); once
    the client reads, the whole body arrives."""
    upstream, client = scripted
    size = 16 * 1024 * 1024
    client.auto_ack = False
    sid = client.request(f"/bytes/{size}")
    result = client.results[sid]
    client.pump(lambda: len(result.body) >= 65535 - 16384)
    time.sleep(1.0)  # unthrottled, all 16 MiB would be sent in this time
    assert upstream.sent < 2 * 1024 * 1024
    client.auto_ack = True
    client.ack(sid, len(result.body))
    client.pump(lambda: client.done(sid), timeout=60)
    assert result.ended and len(result.body) == size
    assert upstream.sent == size


def test_settings_limits_enforced(h2_upstream, h2_proxy):
    port, _ = h2_proxy(h2_upstream, extend_config={"Http2": {
        "max_concurrent_streams": 4, "max_header_list_size": 2048}})
    client = RawClient(port)
    try:
        # Five at once, before the client has read the proxy's SETTINGS (as clients do).
        sids = [client.request("/delay/0.3") for _ in range(5)]
        client.pump(lambda: client.done(*sids))
        refused = [s for s in sids if client.results[s].reset is not None]
        assert [client.results[s].reset for s in refused] == [7]  # REFUSED_STREAM
        assert all(client.results[s].status == 200 for s in sids if s not in refused)
        big = client.request("/echo", headers=[("x-big", "v" * 4096)])
        client.pump(lambda: client.goaway is not None or client.done(big))
        assert client.goaway is not None and client.goaway.error_code != 0
    finally:
        client.close()
    r = httpx.Client(http1=False, http2=True).get(f"http://127.0.0.1:{port}/echo")
    assert r.status_code == 200  # a new connection is served as before


def test_garbage_frames_leave_other_connections_unharmed(h2_upstream, h2_proxy):
    port, mosn = h2_proxy(h2_upstream)
    good = RawClient(port)
    try:
        in_flight = good.request("/delay/0.5")
        rng = random.Random(7)
        for i in range(60):
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
                if i % 3 == 0:
                    # a well-formed frame header with a random type/flags/stream and body
                    junk = (len(junk).to_bytes(3, "big") + bytes([rng.randint(0, 12)])
                            + bytes([rng.getrandbits(8)]) + rng.getrandbits(31).to_bytes(4, "big")
                            + junk)
                try:
                    sock.sendall(PREFACE + junk)
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass  # reset by the proxy: fine
        good.pump(lambda: good.done(in_flight))
        assert good.results[in_flight].status == 200 and good.results[in_flight].ended
        again = good.request("/echo")
        good.pump(lambda: good.done(again))
        assert json.loads(good.results[again].body)["path"] == "/echo"
    finally:
        good.close()
    assert mosn.proc.poll() is None


# -- requests the upstream did not process --------------------------------------------


@pytest.mark.parametrize("path", ["/refused", "/goaway-refused"])
def test_unprocessed_request_is_sent_again(h2_proxy, path):
    """A request the upstream refused (RST_STREAM REFUSED_STREAM), or left above the
    last stream id of its GOAWAY, was never processed (RFC 9113 8.7): mosn sends it
    again on another connection, body and all, even a POST, with no retry policy."""
    with ScriptedUpstream() as upstream:
        port, mosn = h2_proxy(upstream.port)
        client = RawClient(port)
        try:
            sid = client.request(path, body=b"x" * 5000)
            client.pump(lambda: client.done(sid))
        finally:
            client.close()
        result = client.results[sid]
        assert result.status == 200 and result.body == b"ok:5000"
        assert upstream.refused == [path] and upstream.bodies[path] == [5000]
        assert upstream.connections == (2 if path == "/goaway-refused" else 1)
        stats = mosn.stats()
        assert stats["cluster.backend.upstream_rq_replay"] == 1
        assert stats["cluster.backend.upstream_rq_retry"] == 0


def test_upstream_connection_ending_under_streams(h2_proxy):
    """An upstream connection that ends with streams open, on both engines.
    ``/goaway-close``: a response's headers, GOAWAY, the rest of the response and the
    close, read together: the response is complete. ``/goaway-cut``, what hypercorn does
    at its ``keep_alive_max_requests`` with responses in flight: a response's headers,
    GOAWAY naming every stream it received, then neither that response's body nor any
    other (``/held``, received before, had no answer yet); the connection closes on the
    next frame it reads (the PING mosn sends after a GOAWAY). The begun response cannot
    be completed: its stream is reset downstream, not sent again; the GET with no answer
    yet is sent again on a new connection and succeeds. ``/reset-connection``: the
    connection reset with no GOAWAY (as when mosn's write fails on a connection the
    upstream reset, and the event loop closes it with the GOAWAY unread): the GET is
    sent again too."""
    with ScriptedUpstream() as upstream:
        port, mosn = h2_proxy(upstream.port)
        client = RawClient(port)
        try:
            whole = client.request("/goaway-close")
            client.pump(lambda: client.done(whole))
            waiting = client.request("/held")
            wait_until(lambda: upstream.requests_received[-1:] == ["/held"])
            cut = client.request("/goaway-cut")
            client.pump(lambda: client.done(waiting, cut))
            reset = client.request("/reset-connection")
            client.pump(lambda: client.done(reset))
        finally:
            client.close()
        results = client.results
        assert results[whole].ended and results[whole].body == b"c" * BODY_CHUNK
        assert results[cut].status == 200 and results[cut].reset is not None
        assert not results[cut].body
        assert results[waiting].ended and results[waiting].body == b"held"
        assert results[reset].ended and results[reset].body == b"again"
        assert upstream.requests_received == ["/goaway-close", "/held", "/goaway-cut", "/held",
                                              "/reset-connection", "/reset-connection"]
        assert upstream.connections == 4
        stats = mosn.wait_stat("cluster.backend.upstream_rq_rx_reset", 3)
        assert stats["cluster.backend.upstream_rq_replay"] == 2  # the unanswered GETs
        assert stats["listener.h2.downstream_rq_tx_reset"] == 1


ROTATE_EVERY = 100
"""Requests hypercorn serves on a connection before its GOAWAY, in the test below."""
ROTATIONS = 20
"""Connections hypercorn ends in the test below: enough for every way a rotation can
meet streams in flight to come up, in a few seconds."""
H2LOAD_COUNTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                           r"(\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")
H2LOAD_STATUSES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def rotate_through(h2_proxy, total: int, connections: int,
                   max_requests: int | None = None) -> tuple[str, dict[str, int]]:
    """h2load (``total`` requests, ``connections`` connections of 10 streams each)
    through mosn to hypercorn ending each connection after ``max_requests``; h2load's
    output and mosn's stats."""
    proc, upstream_port = start_upstream(max_requests=max_requests)
    try:
        port, mosn = h2_proxy(upstream_port)
        out = subprocess.run(["h2load", "-n", str(total), "-c", str(connections), "-m", "10",
                              f"http://127.0.0.1:{port}/echo"],
                             capture_output=True, text=True, timeout=max(120, total // 50))
        return out.stdout + out.stderr, mosn.stats()
    finally:
        stop_process(proc)


def assert_nothing_lost(out: str, stats: dict[str, int], total: int) -> None:
    """Every request done and answered 2xx, none timed out; the only failures are
    responses hypercorn began and never finished (at its GOAWAY it drops the rest of
    every response in flight: docs/http2.md), each an upstream stream reset by the
    connection's end and not sent again, and a stream reset downstream."""
    counts = H2LOAD_COUNTS.search(out)
    statuses = H2LOAD_STATUSES.search(out)
    assert counts is not None and statuses is not None, out
    _, started, done, succeeded, failed, errored, timeout = map(int, counts.groups())
    assert started == done == total and timeout == 0, out
    assert tuple(map(int, statuses.groups())) == (total, 0, 0, 0), out  # no 502: replayed
    cut = stats["cluster.backend.upstream_rq_rx_reset"] - stats["cluster.backend.upstream_rq_replay"]
    assert failed == errored == cut == stats.get("listener.h2.downstream_rq_tx_reset", 0), \
        (out, cut)
    assert succeeded == total - cut


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
def test_upstream_goaway_rotation_loses_nothing(h2_proxy):
    """hypercorn ends each connection with GOAWAY after ROTATE_EVERY requests (and then
    answers none of the streams still open on it): under h2load, no request is lost.
    Streams above the GOAWAY's last stream id are sent again on a new connection; the
    unanswered ones below it, GETs, once hypercorn closes the connection (on the PING
    mosn sends after a GOAWAY, or on the next request that crossed the GOAWAY)."""
    total = ROTATIONS * ROTATE_EVERY
    out, stats = rotate_through(h2_proxy, total, 4, max_requests=ROTATE_EVERY)
    assert_nothing_lost(out, stats, total)
    assert stats["cluster.backend.upstream_cx_total"] >= ROTATIONS  # it rotated
    assert stats["cluster.backend.upstream_rq_replay"] > 0


@pytest.mark.long
@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
def test_upstream_goaway_rotation_100k(h2_proxy):
    """The same at hypercorn's default rotation (1,000 requests a connection) over
    100,000 requests (a few minutes; ``pytest -m long``)."""
    total = 100_000
    out, stats = rotate_through(h2_proxy, total, 10)
    assert_nothing_lost(out, stats, total)
