"""The proxy's timeouts end to end, with short configured values: the request header
timeout against slowloris clients (HTTP/1.1 and HTTP/2) while a normal client is served
throughout, the stream idle timeout (HTTP/1.1, HTTP/2 gRPC, bolt), the maximum
connection duration (HTTP/1.1, HTTP/2, bolt), and route timeouts of zero and
``disabled``. Real sockets; every wait is on a condition with a deadline."""

from __future__ import annotations

import math
import selectors
import socket
import sys
import threading
import time
from typing import Iterator

import hpack
import httpx
import pytest
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame, SettingsFrame

from conftest import ROOT
from mosn.config import ConfigError, validate
from mosn.config.loader import dump
from mosn.config.routers import route_timeout
from mosn.config.types import parse_timeout
from http_scripted import Reply, ScriptedHttpUpstream, exchange, proxy_config as http_config
from mosn.rpc.tools import codec_named
from mosn.testing.mock import call
from mosn.testing.process import free_port, rpc_proxy_config, serving

sys.path.insert(0, str(ROOT / "plugins" / "http2" / "tests"))
from h2_peers import RawClient  # noqa: E402

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
DEADLINE = 20.0
"""Seconds any expected close or reply may take on a loaded CI machine (the timeouts
under test are a second or two)."""
TRICKLE_INTERVAL = 0.25
"""Seconds between the bytes a slowloris client sends: well inside any idle timeout."""
SLOWLORIS_CONNECTIONS = 1000
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """The example HTTP upstream (``/delay/SECONDS``, echo)."""
    with serving(lambda port: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port)]) as port:
        yield port


class Served:
    """A normal client in a thread, asking ``url`` again and again until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    self.statuses.append(client.get(self.url).status_code)
                except httpx.HTTPError as exc:
                    self.statuses.append(repr(exc))

    def stop(self) -> list[int | str]:
        self._stop.set()
        self._thread.join(15)
        return self.statuses


def trickle(socks: list[socket.socket], byte: bytes | None = b"a",
            deadline: float = DEADLINE) -> tuple[dict[socket.socket, bytes], set[socket.socket]]:
    """Send ``byte`` on every socket each TRICKLE_INTERVAL (never if None) until the
    peer has closed them all or ``deadline`` seconds pass; what each one read, and the
    sockets still open."""
    replies = {s: b"" for s in socks}
    still_open = set(socks)
    selector = selectors.DefaultSelector()
    for s in socks:
        selector.register(s, selectors.EVENT_READ)
    end = time.monotonic() + deadline
    next_send = time.monotonic()
    while still_open and time.monotonic() < end:
        if byte is not None and time.monotonic() >= next_send:
            for s in list(still_open):
                try:
                    s.send(byte)
                except OSError:
                    pass  # closed by the peer: the read below sees it
            next_send = time.monotonic() + TRICKLE_INTERVAL
        for key, _ in selector.select(timeout=TRICKLE_INTERVAL):
            s = key.fileobj
            try:
                data = s.recv(65536)  # type: ignore[union-attr]
            except OSError:
                data = b""
            if data:
                replies[s] += data  # type: ignore[index]
            else:
                still_open.discard(s)  # type: ignore[arg-type]
                selector.unregister(s)
    selector.close()
    return replies, still_open


def connect_many(port: int, count: int, first: bytes) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(first)
        socks.append(s)
    return socks


# -- config ---------------------------------------------------------------------------


def test_timeouts_are_validated_with_their_paths():
    with pytest.raises(ConfigError) as info:
        validate(http_config(free_port(), free_port(), request_headers_timeout="soon",
                             stream_idle_timeout=-1, max_connection_duration="1x"))
    proxy = "servers[0].listeners[0].filter_chains[0].filters[0].config"
    for field in ("request_headers_timeout", "stream_idle_timeout", "max_connection_duration"):
        assert any(e.startswith(f"{proxy}.{field}: ") for e in info.value.errors)
    with pytest.raises(ConfigError) as info:
        validate(http_config(free_port(), free_port(), route={"timeout": "never"}))
    assert info.value.errors[0].startswith(
        "servers[0].routers[0].virtual_hosts[0].routers[0].route.timeout: ")


def test_route_timeout_values():
    assert parse_timeout("disabled") == math.inf and parse_timeout("DISABLED") == math.inf
    assert parse_timeout("1m30s") == 90.0
    assert [route_timeout(v) for v in (None, 0.0, 5.0, math.inf)] == [None, 60.0, 5.0,
                                                                        math.inf]
    loaded = validate(http_config(free_port(), free_port(), route={"timeout": "disabled"},
                                  timeout=0))
    route = loaded.config.servers[0].routers[0].virtual_hosts[0].routers[0]
    assert route.route.timeout == math.inf
    assert dump(loaded.config)["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0][
        "route"]["timeout"] == "disabled"


# -- request_headers_timeout ----------------------------------------------------------


def test_slowloris_http1_connections_get_408_while_a_normal_client_is_served(start_mosn,
                                                                              upstream):
    port = free_port()
    mosn = start_mosn(http_config(port, upstream, request_headers_timeout="1s"))
    served = Served(f"http://127.0.0.1:{port}/echo")
    try:
        socks = connect_many(port, SLOWLORIS_CONNECTIONS,
                             b"GET / HTTP/1.1\r\nhost: h\r\nx-slow: ")
        replies, still_open = trickle(socks)
    finally:
        statuses = served.stop()
        for s in socks:
            s.close()
    assert not still_open, f"{len(still_open)} trickling connections never closed"
    # The 408 goes before the close; one whose next trickled byte met the close may
    # read a reset instead of it.
    assert all(r == b"" or r.startswith(b"HTTP/1.1 408 ") for r in replies.values())
    assert any(replies.values())
    assert statuses and all(s == 200 for s in statuses), statuses[:5]
    stats = mosn.wait_stat("listener.http.downstream_rq_header_timeout", SLOWLORIS_CONNECTIONS)
    assert stats["listener.http.downstream_rq_header_timeout"] == SLOWLORIS_CONNECTIONS


def test_a_head_that_completes_in_time_is_served(start_mosn, upstream):
    port = free_port()
    start_mosn(http_config(port, upstream, request_headers_timeout="5s"))
    [s] = connect_many(port, 1, b"GET /echo HTTP/1.1\r\nhost: h\r\n")
    with s:
        for line in (b"x-a: 1\r\n", b"x-b: 2\r\n", b"\r\n"):
            time.sleep(TRICKLE_INTERVAL)  # the client's pace, well inside the timeout
            s.sendall(line)
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_head_bytes_do_not_keep_an_idle_connection_open(start_mosn, upstream):
    port = free_port()
    mosn = start_mosn(http_config(port, upstream, request_headers_timeout="0s",
                                  listener={"connection_idle_timeout": "1s"}))
    socks = connect_many(port, 3, b"GET / HTTP/1.1\r\nhost: h\r\nx-slow: ")
    try:
        replies, still_open = trickle(socks)
    finally:
        for s in socks:
            s.close()
    assert not still_open and all(r == b"" for r in replies.values())
    stats = mosn.wait_stat("listener.http.downstream_cx_idle_timeout", 3)
    assert stats["listener.http.downstream_cx_idle_timeout"] == 3
    assert stats.get("listener.http.downstream_rq_header_timeout", 0) == 0


def h2_frames(data: bytes) -> list[Frame]:
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9:9 + length]))
        frames.append(frame)
        data = data[9 + length:]
    return frames


@pytest.mark.parametrize("slow_part", ["continuation", "headers_payload"])
def test_slowloris_http2_stream_is_reset_and_the_connection_goes_away(start_mosn, upstream,
                                                                      slow_part):
    port = free_port()
    mosn = start_mosn(http_config(port, upstream, downstream="Http2",
                                  request_headers_timeout="1s"))
    block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                                    (":authority", "t"), ("x-pad", "p" * 400)])
    opening = PREFACE + SettingsFrame(0).serialize()
    if slow_part == "continuation":
        # HEADERS without END_HEADERS, then empty CONTINUATION frames: valid, endless.
        opening += HeadersFrame(1, data=block[:2]).serialize()
        byte = ContinuationFrame(1).serialize()
    else:
        # A whole HEADERS frame's header, then its payload a byte at a time.
        whole = HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        opening += whole[:12]
        byte = b"p"
    normal = RawClient(port)
    socks = connect_many(port, 20, opening)
    try:
        replies, still_open = trickle(socks, byte)
        sid = normal.request("/echo")
        normal.pump(lambda: normal.done(sid))
        assert normal.results[sid].status == 200
    finally:
        normal.close()
        for s in socks:
            s.close()
    assert not still_open
    assert any(replies.values())
    for reply in replies.values():
        if reply:  # see the HTTP/1 case: a reset may overtake what was written
            kinds = [(type(f).__name__, f.stream_id) for f in h2_frames(reply)]
            assert ("RstStreamFrame", 1) in kinds and ("GoAwayFrame", 0) in kinds, kinds
    stats = mosn.wait_stat("listener.http.downstream_rq_header_timeout", 20)
    assert stats["listener.http.downstream_rq_header_timeout"] == 20


# -- stream_idle_timeout ----------------------------------------------------------------


def test_stream_idle_before_the_response_is_408(start_mosn, upstream, tmp_path):
    port = free_port()
    log = tmp_path / "access.log"
    mosn = start_mosn(http_config(port, upstream, route={"timeout": "disabled"},
                                  access_log=log, stream_idle_timeout="1s"))
    r = httpx.get(f"http://127.0.0.1:{port}/delay/30", timeout=DEADLINE)
    assert (r.status_code, r.text) == (408, "stream timeout\n")
    stats = mosn.wait_stat("listener.http.downstream_rq_idle_timeout", 1)
    assert stats["listener.http.downstream_rq_idle_timeout"] == 1
    assert stats["listener.http.downstream_rq_4xx"] == 1
    deadline = time.monotonic() + DEADLINE
    while "408 SI" not in (log.read_text() if log.exists() else "") \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text() == "408 SI\n"


def test_stream_idle_after_the_response_began_is_a_reset(start_mosn):
    stalled = Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")  # then nothing
    with ScriptedHttpUpstream({"/stall": stalled}) as scripted:
        port = free_port()
        mosn = start_mosn(http_config(port, scripted.port, route={"timeout": "disabled"},
                                      stream_idle_timeout="1s"))
        reply = exchange(port, b"GET /stall HTTP/1.1\r\nhost: h\r\n\r\n", timeout=DEADLINE)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\nabc")  # cut
    stats = mosn.wait_stat("listener.http.downstream_rq_idle_timeout", 1)
    assert stats["listener.http.downstream_rq_idle_timeout"] == 1
    assert stats["listener.http.downstream_rq_tx_reset"] == 1


def test_a_stream_moving_bytes_is_not_idle(start_mosn, upstream):
    port = free_port()
    start_mosn(http_config(port, upstream, stream_idle_timeout="2s"))

    def body() -> Iterator[bytes]:
        for _ in range(12):
            time.sleep(TRICKLE_INTERVAL)  # 3 s in all, never 2 s without a byte
            yield b"x" * 10

    r = httpx.post(f"http://127.0.0.1:{port}/upload", content=body(), timeout=DEADLINE)
    assert r.status_code == 200 and r.json()["size"] == 120


def test_stream_idle_on_grpc_is_deadline_exceeded(start_mosn, upstream):
    port = free_port()
    start_mosn(http_config(port, upstream, downstream="Http2", route={"timeout": "disabled"},
                           stream_idle_timeout="1s"))
    with httpx.Client(http1=False, http2=True, timeout=DEADLINE) as client:
        r = client.post(f"http://127.0.0.1:{port}/delay/30",
                        headers={"content-type": "application/grpc", "te": "trailers"})
    assert r.status_code == 200 and r.headers["grpc-status"] == "4"  # DEADLINE_EXCEEDED


def test_stream_idle_on_bolt_is_the_timeout_status(start_mosn, mock_rpc_server):
    bolt = codec_named("bolt")
    backend = mock_rpc_server(bolt, delay=30)
    port = free_port()
    start_mosn(rpc_proxy_config(port, "bolt", [backend.address], timeout="disabled",
                                proxy_fields={"stream_idle_timeout": "1s"}))
    [result] = call(bolt, port, service="svc", timeout=DEADLINE)
    assert result.frame is not None and result.http_status == 504  # bolt's TIMEOUT


# -- max_connection_duration ----------------------------------------------------------


def test_http1_connections_are_drained_at_max_connection_duration(start_mosn, upstream):
    port = free_port()
    mosn = start_mosn(http_config(port, upstream, max_connection_duration="2s"))
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as idle, \
            socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as busy:
        busy.sendall(b"GET /delay/4 HTTP/1.1\r\nhost: h\r\n\r\n")  # in flight at the limit
        assert idle.recv(65536) == b""  # closed at the limit, idle
        last = b""
        while chunk := busy.recv(65536):
            last += chunk
        assert last.startswith(b"HTTP/1.1 200 ") and b"\r\nconnection: close\r\n" in last
    stats = mosn.wait_stat("listener.http.downstream_cx_max_duration_reached", 2)
    assert stats["listener.http.downstream_cx_max_duration_reached"] == 2


def test_http2_connection_gets_goaway_at_max_connection_duration(start_mosn, upstream):
    """The drain's final GOAWAY names the stream in flight, which is answered; a
    stream the client opens after it (against RFC 9113 6.8) is refused and counted."""
    port = free_port()
    mosn = start_mosn(http_config(port, upstream, downstream="Http2",
                                  max_connection_duration="2s"))
    client = RawClient(port)
    try:
        sid = client.request("/delay/4")
        client.pump(lambda: client.goaway is not None and client.goaway.last_stream_id == sid,
                    timeout=DEADLINE)
        late = client.request("/status/200")
        client.pump(lambda: client.done(sid), timeout=DEADLINE)
        assert client.results[sid].status == 200 and client.results[sid].ended
        client.pump(lambda: False, timeout=DEADLINE)  # until the proxy closes it
        assert client.closed
        assert client.results[late].status == 0  # never processed
        assert not client.results[late].ended
    finally:
        client.close()
    stats = mosn.wait_stat("listener.http.downstream_rq_refused_after_goaway", 1)
    assert stats["listener.http.downstream_rq_refused_after_goaway"] == 1
    assert stats["listener.http.downstream_rq_total"] == 1


def test_bolt_connection_is_closed_once_idle_at_max_connection_duration(start_mosn,
                                                                        mock_rpc_server):
    bolt = codec_named("bolt")
    backend = mock_rpc_server(bolt)
    port = free_port()
    mosn = start_mosn(rpc_proxy_config(port, "bolt", [backend.address],
                                       proxy_fields={"max_connection_duration": "1s"}))
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        assert s.recv(65536) == b""
    stats = mosn.wait_stat("listener.rpc.downstream_cx_max_duration_reached", 1)
    assert stats["listener.rpc.downstream_cx_max_duration_reached"] == 1


# -- route timeouts -----------------------------------------------------------------------


@pytest.mark.parametrize("route_timeout, status", [
    (None, 504),  # the proxy's timeout, 1s here
    ("0s", 200),  # MOSN's global default, 60 s
    ("disabled", 200),  # none (Envoy's 0s)
])
def test_route_timeout_zero_is_mosns_global_default_and_disabled_is_none(
        start_mosn, upstream, route_timeout, status):
    port = free_port()
    route = {} if route_timeout is None else {"timeout": route_timeout}
    start_mosn(http_config(port, upstream, route=route, timeout="1s"))
    r = httpx.get(f"http://127.0.0.1:{port}/delay/2", timeout=DEADLINE)
    assert r.status_code == status
