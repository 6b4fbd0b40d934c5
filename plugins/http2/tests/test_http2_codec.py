"""The Http2 codecs without sockets, on each engine: h2 client and server objects
talk to them through an in-memory connection; bytes in, events and bytes out."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from h2_fixtures import ENGINES
from mosn.network.filter import ConnectionEvent
from mosn.stream.types import Headers, MatchResult, RequestHead, ResponseHead, StreamResetReason
from mosn.testing.streams import FakeLoop, Recorder
from mosn_http2 import (
    GOAWAY_NOTICE_WAIT,
    GOAWAY_QUIESCE_WAIT,
    PREFACE,
    ClientConnection,
    Http2Config,
    Limits,
    ServerConnection,
    match,
)
from mosn_http2 import frames


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def limits(engine: str) -> Limits:
    return Limits(engine=engine)


class ClockLoop(FakeLoop):
    """FakeLoop with a clock the test moves (``advance``) and the timers it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.timers: list[list[Any]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any, *args: Any) -> "Timer":
        timer = Timer([self.now + delay, callback, args])
        self.timers.append(timer.entry)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while True:
            due = [t for t in self.timers if t[0] <= self.now]
            if not due:
                break
            for entry in due:
                self.timers.remove(entry)
                entry[1](*entry[2])
            self.run()


class Timer:
    def __init__(self, entry: list[Any]) -> None:
        self.entry = entry

    def cancel(self) -> None:
        self.entry[1] = lambda *args: None


class MemoryConnection:
    """A connection that keeps what is written; ``feed`` delivers bytes to its filters."""

    def __init__(self) -> None:
        self.loop = ClockLoop()
        self.written = bytearray()
        self.read_filters: list[Any] = []
        self.callbacks: list[Any] = []
        self.closed = False
        self.transport = None

    def add_read_filter(self, f: Any) -> None:
        self.read_filters.append(f)

    def add_callbacks(self, cb: Any) -> None:
        self.callbacks.append(cb)

    def write(self, data: bytes) -> None:
        self.written += data

    def take(self) -> bytes:
        self.loop.run()
        data, self.written = bytes(self.written), bytearray()
        return data

    def feed(self, data: bytes) -> None:
        for f in self.read_filters:
            f.on_data(data)

    def close(self, how: Any = None) -> None:
        self.closed = True

    def read_disable(self, disable: bool) -> None:
        pass

    def count_reads_as_activity(self, count: bool) -> None:
        self.reads_are_activity = count


def server_pair(limits: Limits, pause: bool = False,
                ) -> tuple[MemoryConnection, h2.connection.H2Connection, list[Any]]:
    """A server codec and an h2 client with the connection set up; the (stream,
    recorder) of every request (``pause``: each reader paused from the start)."""
    conn = MemoryConnection()
    streams: list[Any] = []

    def new_stream(stream: Any) -> Recorder:
        recorder = Recorder()
        streams.append((stream, recorder))
        if pause:
            stream.read_disable(True)
        return recorder

    ServerConnection(conn, new_stream, limits)
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    client.initiate_connection()
    conn.feed(client.data_to_send())
    client.receive_data(conn.take())
    conn.feed(client.data_to_send())
    return conn, client, streams


def test_matcher():
    assert match(PREFACE + b"\x00") is MatchResult.MATCH
    assert match(PREFACE[:10]) is MatchResult.NEED_MORE
    assert match(b"GET / HTTP/1.1\r\n") is MatchResult.NO_MATCH


def test_request_head_from_pseudo_headers():
    head = frames.request_head(["POST", "http", "svc:80", "/a?b=1", "",
                                "cookie", "a=1", "x-y", "z", "cookie", "b=2"], "http")
    assert (head.method, head.path, head.authority, head.version) == ("POST", "/a?b=1", "svc:80", "2")
    assert head.headers.items() == [("x-y", "z"), ("cookie", "a=1; b=2")]  # RFC 9113 8.2.3


def test_request_fields_drop_connection_specific_and_map_host():
    head = RequestHead("GET", "/p", "", "http", Headers([
        ("host", "h.example"), ("connection", "keep-alive"), ("keep-alive", "5"),
        ("transfer-encoding", "chunked"), ("te", "gzip"), ("x-a", "1")]))
    assert frames.request_pseudo(head) == [":method", "GET", ":scheme", "http", ":path", "/p",
                                           ":authority", "h.example"]
    assert list(frames.regular_fields(head.headers.items())) == [("x-a", "1")]
    connect = frames.request_pseudo(RequestHead("CONNECT", "", "h:443"))
    assert connect == [":method", "CONNECT", ":authority", "h:443"]  # RFC 9113 8.5


def test_server_stream_request_response_and_trailers(limits):
    conn, client, streams = server_pair(limits)
    client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/x"), ("content-type", "application/grpc")])
    client.send_data(1, b"body")
    client.send_headers(1, [("x-trailer", "t")], end_stream=True)
    conn.feed(client.data_to_send())
    stream, recorder = streams[0]
    assert [e[0] for e in recorder.events] == ["headers", "data", "trailers"]
    assert recorder.events[0][1].path == "/x" and recorder.events[0][2] is False
    assert recorder.events[2][1].items() == [("x-trailer", "t")]
    stream.send_headers(ResponseHead(200, Headers([("content-type", "application/grpc")])), False)
    stream.send_data(b"reply", False)
    stream.send_trailers(Headers([("grpc-status", "0")]))
    events = client.receive_data(conn.take())
    kinds = [type(e) for e in events]
    assert h2.events.ResponseReceived in kinds and h2.events.TrailersReceived in kinds
    trailers = next(e for e in events if isinstance(e, h2.events.TrailersReceived))
    assert dict(trailers.headers)["grpc-status"] == "0"


def test_server_refuses_streams_over_the_limit(engine):
    """Streams over SETTINGS_MAX_CONCURRENT_STREAMS sent before the client read the
    SETTINGS are refused one by one (RFC 9113 5.1.2)."""
    conn = MemoryConnection()
    ServerConnection(conn, lambda s: Recorder(),
                     Http2Config(max_concurrent_streams=2, engine=engine).limits())
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    client.initiate_connection()
    for sid in (1, 3, 5):
        client.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                  (":authority", "a"), (":path", "/")])
    conn.feed(client.data_to_send())
    events = client.receive_data(conn.take())
    resets = [e for e in events if isinstance(e, h2.events.StreamReset)]
    assert [(e.stream_id, e.error_code) for e in resets] == [(5, 7)]  # REFUSED_STREAM
    assert not conn.closed


def test_garbage_after_preface_is_goaway_protocol_error(limits):
    conn = MemoryConnection()
    ServerConnection(conn, lambda s: Recorder(), limits)
    conn.feed(PREFACE + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # window 0
    assert conn.closed
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    client.initiate_connection()
    events = client.receive_data(conn.take())
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == 1  # PROTOCOL_ERROR


def test_client_waits_for_a_free_stream_slot(limits):
    conn = MemoryConnection()
    idle: list[int] = []
    codec = ClientConnection(conn, lambda: idle.append(1), limits)
    server = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding="utf-8"))
    server.initiate_connection()
    server.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    server.receive_data(conn.take())
    conn.feed(server.data_to_send())
    handlers = [Recorder(), Recorder()]
    streams = [codec.new_stream(h) for h in handlers]
    for s in streams:
        s.send_headers(RequestHead("GET", "/", "a"), True)
    events = server.receive_data(conn.take())
    assert [e.stream_id for e in events if isinstance(e, h2.events.RequestReceived)] == [1]
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"x" * 1000, end_stream=True)
    conn.feed(server.data_to_send())
    assert handlers[0].events[-1] == ("data", b"x" * 1000, True)
    assert idle == [1]  # the first stream is over: the second went out in its place
    events = server.receive_data(conn.take())
    assert [e.stream_id for e in events if isinstance(e, h2.events.RequestReceived)] == [3]


def test_config_rejects_out_of_range_settings():
    with pytest.raises(ValidationError):
        Http2Config(max_frame_size=1024)
    with pytest.raises(ValidationError):
        Http2Config(initial_stream_window_size=2**31)


FRAME_TYPES = st.integers(0, 10)
HEADERS, GOAWAY = 1, 7


def frame_types(data: bytes) -> list[int]:
    """The type of each frame in ``data`` (9-byte headers, RFC 9113 4.1)."""
    types, i = [], 0
    while i + 9 <= len(data):
        types.append(data[i + 3])
        i += 9 + int.from_bytes(data[i:i + 3], "big")
    return types


def _headers(stream_id: int, fields: list[tuple[str, str]], end: bool) -> bytes:
    frame = HeadersFrame(stream_id, data=Encoder().encode(fields), flags=["END_HEADERS"])
    if end:
        frame.flags.add("END_STREAM")
    return frame.serialize()


_REQUEST = [(":method", "POST"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
VALID_FRAMES = [
    _headers(1, _REQUEST, False), _headers(1, _REQUEST, True), _headers(3, _REQUEST, False),
    _headers(1, [("x-t", "1")], True),
    DataFrame(1, data=b"abc").serialize(), DataFrame(1, data=b"z", flags=["END_STREAM"]).serialize(),
    DataFrame(3, data=b"q", flags=["END_STREAM"]).serialize(),
    RstStreamFrame(1, error_code=8).serialize(), RstStreamFrame(3, error_code=0).serialize(),
    WindowUpdateFrame(0, window_increment=1000).serialize(),
    WindowUpdateFrame(1, window_increment=1000).serialize(),
    PingFrame(0, opaque_data=b"12345678").serialize(),
    SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 10}).serialize(),
]
"""Frames a client could send, for the fuzzer to mix with garbage in any order."""


@st.composite
def frame_bytes(draw: Any) -> bytes:
    """A frame a client could send, one with a well-formed 9-byte header (random type,
    flags and stream) and a random payload, or plain random bytes."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.sampled_from(VALID_FRAMES))
    payload = draw(st.binary(max_size=64))
    if kind == 1:
        return payload
    return (len(payload).to_bytes(3, "big") + bytes([draw(FRAME_TYPES), draw(st.integers(0, 255))])
            + draw(st.integers(0, 7)).to_bytes(4, "big") + payload)


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(frame_bytes(), max_size=8))
def test_fuzzed_frames_end_in_goaway_or_carry_on(engine: str, chunks: list[bytes]):
    """Whatever follows the preface, the codec never raises: the connection carries
    on, or it is closed after a GOAWAY (sent, or received from the peer)."""
    conn = MemoryConnection()
    handlers: list[Recorder] = []

    def new_stream(stream: Any) -> Recorder:
        handlers.append(Recorder(stream))
        return handlers[-1]

    ServerConnection(conn, new_stream, Limits(engine=engine))
    conn.take()
    conn.feed(PREFACE)
    for chunk in chunks:
        conn.feed(chunk)
    for handler in handlers:
        handler.stream.send_headers(ResponseHead(200), True)
    out = conn.take()
    if conn.closed:
        assert GOAWAY in frame_types(out) or any(
            len(c) >= 9 and c[3] == GOAWAY for c in chunks)


def test_rapid_reset_closes_the_connection(limits):
    """A client resetting most of its streams before their response (CVE-2023-44487):
    GOAWAY ENHANCE_YOUR_CALM once enough streams were seen; a well-behaved burst of the
    same size is not."""
    for reset_all in (True, False):
        conn, client, streams = server_pair(limits)
        for i in range(600):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                      (":authority", "a"), (":path", "/")], end_stream=True)
            if reset_all:
                client.reset_stream(sid)
            else:
                conn.feed(client.data_to_send())
                streams[-1][0].send_headers(ResponseHead(204), True)
                client.receive_data(conn.take())
            conn.feed(client.data_to_send())
        assert conn.closed is reset_all
        if reset_all:
            goaway = [e for e in client.receive_data(conn.take())
                      if isinstance(e, h2.events.ConnectionTerminated)]
            assert goaway and goaway[0].error_code == 11  # ENHANCE_YOUR_CALM


def test_oversized_frame_refused_from_its_header(limits):
    """A frame announced larger than SETTINGS_MAX_FRAME_SIZE is a connection error as
    soon as its header is read, not once megabytes of it were buffered."""
    conn = MemoryConnection()
    ServerConnection(conn, lambda s: Recorder(), limits)
    conn.take()
    conn.feed(PREFACE + SettingsFrame(0).serialize()
              + (1 << 20).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01" + b"x" * 100)
    assert conn.closed
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    client.initiate_connection()
    goaway = [e for e in client.receive_data(conn.take())
              if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == 6  # FRAME_SIZE_ERROR


def test_client_resets_its_streams_when_the_upstream_breaks_the_protocol(limits):
    conn = MemoryConnection()
    idle: list[int] = []
    codec = ClientConnection(conn, lambda: idle.append(1), limits)
    handler = Recorder()
    codec.new_stream(handler).send_headers(RequestHead("GET", "/", "a"), True)
    conn.take()
    conn.feed(b"HTTP/1.1 200 OK\r\n\r\n")  # not HTTP/2
    assert handler.events == [("reset", StreamResetReason.PROTOCOL_ERROR)]
    assert conn.closed and not codec.reusable() and idle == []


PING = 6


def test_keepalive_ping_answered_keeps_the_connection(engine):
    limits = Http2Config(engine=engine, connection_keepalive={"interval": "10s", "timeout": "2s"}).limits()
    conn, client, streams = server_pair(limits)
    conn.loop.advance(10)
    events = client.receive_data(conn.take())
    assert any(isinstance(e, h2.events.PingReceived) for e in events)
    conn.feed(client.data_to_send())  # h2 answers it
    conn.loop.advance(5)
    assert not conn.closed
    conn.loop.advance(10)  # the next PING, 10 s after the answer
    assert any(isinstance(e, h2.events.PingReceived) for e in client.receive_data(conn.take()))


def test_keepalive_unanswered_closes_and_resets_streams(engine):
    limits = Http2Config(engine=engine, connection_keepalive={"interval": "10s", "timeout": "2s"}).limits()
    conn, client, streams = server_pair(limits)
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/")], end_stream=True)
    conn.feed(client.data_to_send())
    conn.loop.advance(10)
    assert PING in frame_types(conn.take())
    conn.loop.advance(1.9)
    assert not conn.closed
    conn.loop.advance(0.2)
    assert conn.closed
    assert streams[0][1].events[-1] == ("reset", StreamResetReason.CONNECTION_TERMINATION)


def test_keepalive_any_frame_counts_as_an_answer(engine):
    """Frames keep coming while the PING's answer is queued behind them (Envoy's rule):
    the connection is alive."""
    limits = Http2Config(engine=engine, connection_keepalive={"interval": "10s", "timeout": "2s"}).limits()
    conn, client, streams = server_pair(limits)
    conn.loop.advance(10)
    conn.take()
    conn.loop.advance(1)
    client.ping(b"12345678")
    conn.feed(client.data_to_send())  # a frame, not the PING's answer
    conn.loop.advance(1.5)
    assert not conn.closed


def test_idle_downstream_connection_goes_away(engine):
    limits = Http2Config(engine=engine, idle_timeout="5s").limits()
    conn, client, streams = server_pair(limits)
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/")], end_stream=True)
    conn.feed(client.data_to_send())
    conn.loop.advance(6)
    assert not conn.closed  # a stream is open
    streams[0][0].send_headers(ResponseHead(204), True)
    conn.take()
    conn.loop.advance(4)
    assert not conn.closed
    conn.loop.advance(1.5)
    goaway = [e for e in client.receive_data(conn.take())
              if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == 0 and goaway[0].last_stream_id == 1
    assert conn.closed


def test_idle_upstream_connection_closes(engine):
    conn = MemoryConnection()
    codec = ClientConnection(conn, lambda: None, Http2Config(engine=engine, idle_timeout="5s").limits())
    conn.loop.advance(6)
    assert conn.closed and not codec.reusable()


def test_http1_request_answered_505():
    conn = MemoryConnection()
    ServerConnection(conn, lambda s: Recorder())
    conn.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert conn.take().startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert conn.closed


def test_per_request_ids_are_sent_never_indexed(limits):
    """x-request-id and traceparent, new on every request, go as literals never indexed
    (RFC 7541 6.2.3), so they do not push the fields that repeat out of the upstream's
    HPACK table; the others are indexed as usual."""
    conn = MemoryConnection()
    codec = ClientConnection(conn, lambda: None, limits)
    fields = [("user-agent", "test/1"), ("x-request-id", "7" * 36),
              ("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")]
    codec.new_stream(Recorder()).send_headers(RequestHead("GET", "/", "a", headers=Headers(fields)), True)
    data = conn.take()
    assert data.startswith(PREFACE)
    block = next(p for kind, _, _, p in _frames(data[len(PREFACE):]) if kind == HEADERS)
    sent = Decoder().decode(block, raw=False)
    never = {f[0] for f in sent if isinstance(f, NeverIndexedHeaderTuple)}
    assert never == {"x-request-id", "traceparent"}
    assert [f for f in sent if not f[0].startswith(":")] == fields


def test_goaway_streams_above_last_id_are_refused(limits):
    """An upstream's GOAWAY: streams above its last stream id were never processed,
    and are reset as REFUSED_STREAM (the proxy sends them again); those below finish."""
    conn = MemoryConnection()
    codec = ClientConnection(conn, lambda: None, limits)
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    server.initiate_connection()
    conn.feed(server.data_to_send())
    handlers = [Recorder(), Recorder()]
    for h in handlers:
        codec.new_stream(h).send_headers(RequestHead("GET", "/", "a"), True)
    server.receive_data(conn.take())
    server.send_headers(1, [(":status", "200")])
    conn.feed(server.data_to_send() + GoAwayFrame(0, last_stream_id=1).serialize())
    assert handlers[1].events == [("reset", StreamResetReason.REFUSED_STREAM)]
    assert not codec.reusable()
    conn.feed(DataFrame(1, data=b"done", flags=["END_STREAM"]).serialize())
    assert handlers[0].events[-1] == ("data", b"done", True)


def test_upgrade_request_sent_as_extended_connect(limits):
    """An HTTP/1.1 WebSocket upgrade going to an HTTP/2 upstream that takes extended
    CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL) is sent as one (RFC 8441 4); its 200 is
    the 101 the HTTP/1.1 client waits for, with the Sec-WebSocket-Accept of its key."""
    conn = MemoryConnection()
    codec = ClientConnection(conn, lambda: None, limits)
    server = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding="utf-8", validate_inbound_headers=False))
    server.local_settings = h2.settings.Settings(
        client=False, initial_values={h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    server.initiate_connection()
    handler = Recorder()
    head = RequestHead("GET", "/chat", "a", headers=Headers([
        ("upgrade", "websocket"), ("connection", "upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="), ("sec-websocket-version", "13")]))
    codec.new_stream(handler).send_headers(head, False)  # held until the peer's SETTINGS
    assert not any(isinstance(e, h2.events.RequestReceived) for e in server.receive_data(conn.take()))
    conn.feed(server.data_to_send())
    request = next(e for e in server.receive_data(conn.take())
                   if isinstance(e, h2.events.RequestReceived))
    assert request.headers[:5] == [(":method", "CONNECT"), (":protocol", "websocket"),
                                   (":scheme", "http"), (":path", "/chat"), (":authority", "a")]
    assert ("sec-websocket-version", "13") in request.headers
    assert not {"upgrade", "connection", "sec-websocket-key"} & {k for k, _ in request.headers}
    server.send_headers(1, [(":status", "200")])
    conn.feed(server.data_to_send())
    response = handler.head
    assert response.status == 101 and response.headers.get("upgrade") == "websocket"
    assert response.headers.get("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


def test_end_of_body_goes_out_when_the_window_is_shut(limits):
    """The body filled the client's window exactly and its end comes later: the end
    still goes out (an empty DATA frame, or an empty trailer block, needs no window,
    RFC 9113 6.9.1), without waiting for a WINDOW_UPDATE the client need not send."""
    conn = MemoryConnection()
    streams: list[Any] = []
    ServerConnection(conn, lambda s: streams.append(s) or Recorder(), limits)
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    client.initiate_connection()
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/")], end_stream=True)
    conn.feed(client.data_to_send())
    client.receive_data(conn.take())
    conn.feed(client.data_to_send())  # SETTINGS acknowledged: the window is 10
    streams[0].send_headers(ResponseHead(200), False)
    streams[0].send_data(b"0123456789", False)
    events = client.receive_data(conn.take())
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"0123456789"
    streams[0].send_data(b"", True)
    events = client.receive_data(conn.take())
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_data_past_the_window_of_a_paused_stream_is_flow_control_error(limits):
    """A reader paused (read_disable): its window is not reopened, and a client that
    sends past it breaks flow control (RFC 9113 6.9.1: FLOW_CONTROL_ERROR)."""
    limits = Http2Config(engine=limits.engine, initial_stream_window_size=65535).limits()
    conn, client, _ = server_pair(limits, pause=True)
    client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/")])
    for size in (16384, 16384, 16384, 16383):  # the whole window: still fine
        client.send_data(1, b"x" * size)
    conn.feed(client.data_to_send())
    assert not [e for e in client.receive_data(conn.take()) if isinstance(e, h2.events.StreamReset)]
    conn.feed(DataFrame(1, data=b"y" * 100).serialize())  # past it (h2 would not send it)
    events = client.receive_data(conn.take())
    errors = [e.error_code for e in events
              if isinstance(e, (h2.events.StreamReset, h2.events.ConnectionTerminated))]
    assert errors == [3]  # FLOW_CONTROL_ERROR, on the stream or the connection



def _frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each frame in ``data``."""
    out = []
    while data:
        size = int.from_bytes(data[:3], "big")
        sid = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        out.append((data[3], data[4], sid, data[9:9 + size]))
        data = data[9 + size:]
    return out


def _goaways(data: bytes) -> list[int]:
    """The last stream id of each GOAWAY in ``data``."""
    return [int.from_bytes(p[:4], "big") for kind, _, _, p in _frames(data) if kind == GOAWAY]


def _get(sid: int) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", f"/{sid}")]


def _answer_drain_ping(conn: MemoryConnection, written: bytes, answer: bool, wait: float) -> None:
    """Answer the PING in ``written`` (a graceful shutdown's), or let its wait run out."""
    pings = [p for kind, flags, _, p in _frames(written) if kind == PING and not flags & 0x1]
    assert len(pings) == 1, _frames(written)
    if answer:
        conn.feed(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + pings[0])  # its PING ACK
    else:
        conn.loop.advance(wait + 0.1)
        conn.loop.run()  # the next step waits a loop turn more (input is read first)


class RefusedCount:
    """A ``new_stream`` for ``server_pair``'s codec that also hears ``on_refused_streams``."""

    def __init__(self, new_stream: Any) -> None:
        self.new_stream = new_stream
        self.refused: list[int] = []

    def __call__(self, stream: Any) -> Any:
        return self.new_stream(stream)

    def on_refused_streams(self, count: int) -> None:
        self.refused.append(count)


@pytest.mark.parametrize("answer_ping", [True, False])
def test_graceful_goaway_in_three_steps(engine, answer_ping):
    """``go_away``: (1) a PING, output held until it is answered (or
    GOAWAY_QUIESCE_WAIT); (2) GOAWAY 2^31-1 written first, ahead of the responses held,
    and a PING; (3) once that is answered (or after GOAWAY_NOTICE_WAIT) the final
    GOAWAY naming the last stream taken. Streams the client opened before it read the
    GOAWAYs are taken and answered; one opened after the final GOAWAY is refused and
    counted; then the connection closes."""
    conn, client, streams = server_pair(Http2Config(engine=engine).limits())
    codec = conn.read_filters[0]
    codec.new_stream = counter = RefusedCount(codec.new_stream)
    client.send_headers(1, _get(1), end_stream=True)
    conn.feed(client.data_to_send())
    conn.take()
    codec.go_away()
    quiesce = conn.take()
    assert [kind for kind, *_ in _frames(quiesce)] == [PING]
    streams[0][0].send_headers(ResponseHead(204), True)  # held: nothing is written
    client.send_headers(3, _get(3), end_stream=True)  # the client has read nothing yet
    conn.feed(client.data_to_send())
    assert len(streams) == 2  # taken
    assert conn.take() == b""
    _answer_drain_ping(conn, quiesce, answer_ping, GOAWAY_QUIESCE_WAIT)
    notice = conn.take()
    kinds = [(kind, sid) for kind, _, sid, _ in _frames(notice)]
    assert kinds[0] == (GOAWAY, 0) and _goaways(notice) == [2**31 - 1]
    assert (HEADERS, 1) in kinds  # the response held goes out behind the GOAWAY
    client.send_headers(5, _get(5), end_stream=True)  # before the client read the GOAWAY
    conn.feed(client.data_to_send())
    assert len(streams) == 3  # taken, not refused
    _answer_drain_ping(conn, notice, answer_ping, GOAWAY_NOTICE_WAIT)
    assert _goaways(conn.take()) == [5]
    # A client that opens a stream after the final GOAWAY: refused, never processed.
    conn.feed(HeadersFrame(7, Encoder().encode(_get(7)),
                           flags=["END_HEADERS", "END_STREAM"]).serialize())
    assert len(streams) == 3
    for stream, _ in streams[1:]:
        stream.send_headers(ResponseHead(204), True)
    answered = {sid for kind, _, sid, _ in _frames(conn.take()) if kind == HEADERS}
    assert answered == {3, 5}
    assert conn.closed
    codec.on_event(ConnectionEvent.LOCAL_CLOSE)
    assert counter.refused == [1]
