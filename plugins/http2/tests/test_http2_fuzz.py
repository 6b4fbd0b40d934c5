"""HTTP/2 under random input, the sides the other fuzz tests leave: the client codec
reading any frames a server could send (each request ends exactly once, nothing
raises), HPACK blocks of random bytes (our decoder agrees with hpack's, refusing only
with HPACKDecodingError), and exchanges between our own client and server codecs
(what one writes the other reads back as it was given, with HPACK's dynamic table
carried from request to request)."""

from __future__ import annotations

import string
from typing import Any

from hpack import Encoder as HpackEncoder
from hyperframe.frame import (
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, given, settings, strategies as st

from mosn.network.filter import ConnectionEvent
from mosn.stream.types import Headers, RequestHead, ResponseHead
from mosn.testing.streams import Recorder
from mosn_http2 import PREFACE, ClientConnection, ServerConnection
from test_http2_codec import MemoryConnection, frame_bytes, frame_types

EXAMPLES = 200
"""Hypothesis examples per test."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _block(fields: list[tuple[str, str]], stream_id: int, end: bool) -> bytes:
    frame = HeadersFrame(stream_id, data=HpackEncoder().encode(fields), flags=["END_HEADERS"])
    if end:
        frame.flags.add("END_STREAM")
    return frame.serialize()


SERVER_FRAMES = [
    SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 1}).serialize(),
    SettingsFrame(0, flags=["ACK"]).serialize(),
    _block([(":status", "200"), ("x-a", "1")], 1, False),
    _block([(":status", "204")], 1, True),
    _block([(":status", "100")], 1, False),
    _block([("x-trailer", "t")], 1, True),
    _block([(":status", "200")], 3, True),
    _block([("x-no-status", "1")], 1, True),
    DataFrame(1, data=b"abc").serialize(),
    DataFrame(1, data=b"z", flags=["END_STREAM"]).serialize(),
    DataFrame(3, data=b"q", flags=["END_STREAM"]).serialize(),
    RstStreamFrame(1, error_code=7).serialize(),
    GoAwayFrame(0, last_stream_id=1, error_code=0).serialize(),
    GoAwayFrame(0, last_stream_id=0, error_code=2).serialize(),
    PingFrame(0, opaque_data=b"12345678").serialize(),
    WindowUpdateFrame(1, window_increment=100).serialize(),
    WindowUpdateFrame(0, window_increment=0).serialize(),
    PushPromiseFrame(1, promised_stream_id=2, data=HpackEncoder().encode(
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")]),
        flags=["END_HEADERS"]).serialize(),
]
"""Frames a server could send a client with one or two requests open."""


SERVER_BYTES = st.one_of(st.sampled_from(SERVER_FRAMES), frame_bytes())
"""A server's frame, a client's, a random frame header with a random payload, or bytes."""


def terminal_once(events: list[tuple]) -> bool:
    """The handler heard exactly one end (a whole response or a reset), last."""
    ends = [i for i, e in enumerate(events)
            if e[0] in ("reset", "trailers") or (e[0] in ("headers", "data") and e[2])]
    return len(ends) == 1 and ends[0] == len(events) - 1


@SETTINGS
@given(st.integers(1, 3), st.lists(SERVER_BYTES, max_size=10))
def test_any_server_frames_end_each_request_exactly_once(requests, chunks):
    check_client_frames(requests, chunks)


def check_client_frames(requests: int, chunks: list[bytes]) -> None:
    """``requests`` sent, then ``chunks`` from the server (also what bench/fuzz runs)."""
    conn = MemoryConnection()
    codec = ClientConnection(conn, lambda: None)
    handlers = []
    for _ in range(requests):
        handlers.append(Recorder())
        codec.new_stream(handlers[-1]).send_headers(RequestHead("GET", "/", "a"), True)
    conn.take()
    for chunk in chunks:
        conn.feed(chunk)
        conn.take()
    for callbacks in conn.callbacks:
        callbacks.on_event(ConnectionEvent.REMOTE_CLOSE)
    for handler in handlers:
        assert terminal_once(handler.events), handler.events


# -- our client and server codecs talking --------------------------------------------------

TOKEN = st.text(alphabet=string.ascii_lowercase + string.digits + "-_.", min_size=1,
                max_size=10).map(lambda t: "x-" + t)
VALUE = st.text(alphabet=string.ascii_letters + string.digits + " -_.,;:=/\"'()", max_size=30
                ).map(str.strip)
FIELDS = st.lists(st.tuples(TOKEN, VALUE), max_size=6)
PATH = st.text(alphabet=string.ascii_letters + string.digits + "/-._~%?=&", max_size=30
               ).map(lambda p: "/" + p)


def _exchange(client: MemoryConnection, server: MemoryConnection) -> None:
    """Carry bytes both ways until neither side has anything to say."""
    while True:
        up, down = client.take(), server.take()
        if not up and not down:
            return
        server.feed(up)
        client.feed(down)


@settings(SETTINGS, max_examples=EXAMPLES // 2)  # each example is several exchanges
@given(st.lists(st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), PATH, FIELDS,
                          st.binary(max_size=40), st.integers(200, 599), FIELDS,
                          st.binary(max_size=40), FIELDS),
                min_size=1, max_size=4))
def test_exchanges_between_our_codecs_read_back_as_written(exchanges):
    client_conn, server_conn = MemoryConnection(), MemoryConnection()
    received: list[Recorder] = []

    def new_stream(stream: Any) -> Recorder:
        received.append(Recorder(stream))
        return received[-1]

    client = ClientConnection(client_conn, lambda: None)
    ServerConnection(server_conn, new_stream)
    _exchange(client_conn, server_conn)
    for n, (method, path, fields, body, status, rfields, rbody, trailers) in enumerate(exchanges):
        handler = Recorder()
        stream = client.new_stream(handler)
        stream.send_headers(RequestHead(method, path, "a:80", headers=Headers(fields)), not body)
        if body:
            stream.send_data(body, True)
        _exchange(client_conn, server_conn)
        request = received[n]
        assert (request.head.method, request.head.path, request.head.authority) == (
            method, path, "a:80")
        assert list(request.head.headers.items()) == fields
        assert request.body == body and request.ended
        if status in (204, 304):
            rbody = b""
        request.stream.send_headers(ResponseHead(status, Headers(rfields)),
                                    not rbody and not trailers)
        if rbody:
            request.stream.send_data(rbody, not trailers)
        if trailers:
            request.stream.send_trailers(Headers(trailers))
        _exchange(client_conn, server_conn)
        assert handler.head.status == status
        assert list(handler.head.headers.items()) == rfields
        assert handler.body == rbody and handler.ended
        if trailers:
            assert list(handler.events[-1][1].items()) == trailers
    assert not client_conn.closed and not server_conn.closed


def test_a_malformed_request_closed_again_in_the_same_read():
    """Found by bench/fuzz (http2_server): a HEADERS frame whose request is malformed
    (no :method) and ends the stream, then another HEADERS frame on that stream, in
    one read. h2 closes the stream for the second frame before mosn handles the
    first, and mosn's reset of it raised StreamClosedError out of the codec."""
    conn = MemoryConnection()
    ServerConnection(conn, lambda stream: Recorder(stream))
    conn.take()
    conn.feed(PREFACE)
    conn.take()
    conn.feed(bytes.fromhex("00000601b500000001838641811f84" "000006010400000001838641811f84"))
    out = conn.take()
    assert 3 in frame_types(out) or 7 in frame_types(out)  # RST_STREAM or GOAWAY
