"""The Http2 codecs without sockets: h2 client and server objects talk to them
through an in-memory connection; bytes in, events and bytes out."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from pydantic import ValidationError

from mosn.stream.types import Headers, MatchResult, RequestHead, ResponseHead, StreamResetReason
from mosn_http2 import PREFACE, ClientConnection, Http2Config, ServerConnection, match
from mosn_http2 import frames


class Loop:
    """What the codecs use of an event loop: call_soon, run by ``run()``."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def call_soon(self, fn: Any, *args: Any) -> None:
        self.calls.append((fn, args))

    def run(self) -> None:
        while self.calls:
            fn, args = self.calls.pop(0)
            fn(*args)


class MemoryConnection:
    """A connection that keeps what is written; ``feed`` delivers bytes to its filters."""

    def __init__(self) -> None:
        self.loop = Loop()
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


class Recorder:
    """A RequestHandler / ResponseHandler that records what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_headers(self, head: Any, end_stream: bool) -> None:
        self.events.append(("headers", head, end_stream))

    def on_data(self, data: bytes, end_stream: bool) -> None:
        self.events.append(("data", data, end_stream))

    def on_trailers(self, trailers: Headers) -> None:
        self.events.append(("trailers", trailers))

    def on_reset(self, reason: StreamResetReason) -> None:
        self.events.append(("reset", reason))

    def on_above_write_buffer_high_watermark(self) -> None:
        self.events.append(("above",))

    def on_below_write_buffer_low_watermark(self) -> None:
        self.events.append(("below",))


def server_pair() -> tuple[MemoryConnection, h2.connection.H2Connection, list[Any]]:
    conn = MemoryConnection()
    streams: list[Any] = []

    def new_stream(stream: Any) -> Recorder:
        recorder = Recorder()
        streams.append((stream, recorder))
        return recorder

    ServerConnection(conn, new_stream)
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
    head = frames.request_head([(b":method", b"POST"), (b":scheme", b"http"),
                                (b":authority", b"svc:80"), (b":path", b"/a?b=1"),
                                (b"cookie", b"a=1"), (b"x-y", b"z"), (b"cookie", b"b=2")], "http")
    assert (head.method, head.path, head.authority, head.version) == ("POST", "/a?b=1", "svc:80", "2")
    assert head.headers.items() == [("x-y", "z"), ("cookie", "a=1; b=2")]  # RFC 9113 8.2.3


def test_request_fields_drop_connection_specific_and_map_host():
    head = RequestHead("GET", "/p", "", "http", Headers([
        ("host", "h.example"), ("connection", "keep-alive"), ("keep-alive", "5"),
        ("transfer-encoding", "chunked"), ("te", "gzip"), ("x-a", "1")]))
    fields = frames.request_fields(head)
    assert fields == [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/p"),
                      (b":authority", b"h.example"), (b"x-a", b"1")]
    connect = frames.request_fields(RequestHead("CONNECT", "", "h:443"))
    assert connect == [(b":method", b"CONNECT"), (b":authority", b"h:443")]  # RFC 9113 8.5


def test_server_stream_request_response_and_trailers():
    conn, client, streams = server_pair()
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


def test_server_refuses_streams_over_the_limit():
    conn = MemoryConnection()
    ServerConnection(conn, lambda s: Recorder(),
                     Http2Config(max_concurrent_streams=2).limits())
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


def test_garbage_after_preface_is_goaway_protocol_error():
    conn = MemoryConnection()
    ServerConnection(conn, lambda s: Recorder())
    conn.feed(PREFACE + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")  # window 0
    assert conn.closed
    client = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding="utf-8"))
    client.initiate_connection()
    events = client.receive_data(conn.take())
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == 1  # PROTOCOL_ERROR


def test_client_waits_for_a_free_stream_slot():
    conn = MemoryConnection()
    idle: list[int] = []
    codec = ClientConnection(conn, lambda: idle.append(1))
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
