"""The client codec's parser under arbitrary responses (every request ends exactly once:
a whole response or a reset, never an exception), and both codecs' writers against
the other's parser: what the client writes the server reads back as it was given,
and the same for responses."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings, strategies as st

from http1_fakes import Client, Server
from mosn.stream.types import Headers, RequestHead, ResponseHead, StreamResetReason
from mosn_http1 import Limits

EXAMPLES = 200
"""Hypothesis examples per test (each is a few codec calls: well under a second per
hundred)."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

RESPONSE_PIECES = st.sampled_from([
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 204 No Content\r\n", b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n", b"HTTP/1.0 200 OK\r\n", b"HTTP/1.1 304 x\r\n",
    b"HTTP/2 200\r\n", b"Content-Length: 3\r\n", b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"Connection: upgrade\r\n",
    b"Upgrade: websocket\r\n", b"Trailer: x\r\n", b"\r\n", b"3\r\nabc\r\n", b"0\r\n\r\n",
    b"0\r\nx-t: 1\r\n\r\n", b"ffffffffffffffffff\r\n", b"abc", b"\x00", b" ", b":", b"\n",
])
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "CONNECT", "OPTIONS"])
TOKEN = st.text(alphabet=string.ascii_lowercase + string.digits + "-_.!#$%&'*+^`|~",
                min_size=1, max_size=12)
VALUE = st.text(alphabet=string.ascii_letters + string.digits + " -_.,;:=/\"'()<>@?[]{}",
                max_size=40).map(str.strip)
FIELDS = st.lists(st.tuples(TOKEN.map(lambda t: "x-" + t), VALUE), max_size=8)
PATH = st.text(alphabet=string.ascii_letters + string.digits + "/-._~%!$&'()*+,;=:@?",
               max_size=40).map(lambda p: "/" + p)


def terminal_once(events: list[tuple]) -> bool:
    """The handler heard exactly one end (a whole response or a reset), last."""
    ends = [i for i, e in enumerate(events)
            if e[0] in ("reset", "trailers") or (e[0] in ("headers", "data") and e[2])]
    return len(ends) == 1 and ends[0] == len(events) - 1


@SETTINGS
@given(METHODS, st.booleans(),
       st.lists(st.one_of(st.binary(max_size=48),
                          st.lists(RESPONSE_PIECES, max_size=10).map(b"".join)), max_size=8),
       st.booleans())
def test_any_response_bytes_end_the_request_exactly_once(method, body, chunks, eof):
    check_response_bytes(method, body, chunks, eof)


def check_response_bytes(method: str, body: bool, chunks: list[bytes], eof: bool) -> None:
    """A request (with a body, or an upgrade for a GET, if ``body``) answered with
    ``chunks`` (also what bench/fuzz runs)."""
    client = Client(Limits(max_response_head_bytes=512, max_headers_count=8))
    stream, handler = client.request()
    fields = [("connection", "upgrade"), ("upgrade", "websocket")] if method == "GET" and body \
        else []
    stream.send_headers(RequestHead(method, "/", "a", headers=Headers(fields)), not body)
    if body:
        stream.send_data(b"hello", True)
    client.conn.loop.run()
    for chunk in chunks:
        client.conn.receive(chunk)
        client.conn.loop.run()
    if eof:
        client.conn.receive_eof()
    client.conn.lose()
    assert terminal_once(handler.events), handler.events
    if handler.events[-1][0] == "reset":
        assert handler.events[-1][1] in StreamResetReason


@SETTINGS
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]), PATH, FIELDS,
       st.binary(max_size=64), st.booleans(), st.integers(1, 64))
def test_a_request_reads_back_as_written(method, path, fields, body, sized, piece):
    """Client writer -> server parser: method, path, authority, fields, body; the body
    framed by Content-Length or chunked, the bytes arriving ``piece`` at a time."""
    client, server = Client(), Server()
    stream, _ = client.request()
    if body and sized:
        fields = fields + [("content-length", str(len(body)))]
    stream.send_headers(RequestHead(method, path, "backend:80", headers=Headers(fields)),
                        not body)
    if body:
        stream.send_data(body, True)
    client.conn.loop.run()
    wire = client.conn.take()
    for i in range(0, len(wire), piece):
        server.conn.receive(wire[i:i + piece])
    server.conn.loop.run()
    assert len(server.handlers) == 1 and server.conn.closed is None
    got = server.handlers[0]
    assert (got.head.method, got.head.path, got.head.authority) == (method, path, "backend:80")
    framing = ("content-length", "transfer-encoding")
    assert [f for f in got.head.headers.items() if f[0] not in framing] == \
        [f for f in fields if f[0] not in framing]
    assert got.body == body and got.ended


@SETTINGS
@given(st.integers(200, 599), FIELDS, st.binary(max_size=64), st.booleans(),
       st.integers(1, 64))
def test_a_response_reads_back_as_written(status, fields, body, sized, piece):
    """Server writer -> client parser: status, fields, body."""
    server, client = Server(), Client()
    server.conn.receive(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    if status in (204, 304):
        body = b""
    if body and sized:
        fields = fields + [("content-length", str(len(body)))]
    out = server.handlers[0].stream
    out.send_headers(ResponseHead(status, Headers(fields)), not body)
    if body:
        out.send_data(body, True)
    server.conn.loop.run()
    wire = server.conn.take()
    stream, handler = client.request()
    stream.send_headers(RequestHead("GET", "/", "a"), True)
    for i in range(0, len(wire), piece):
        client.conn.receive(wire[i:i + piece])
    client.conn.loop.run()
    assert handler.head.status == status
    framing = ("content-length", "transfer-encoding")
    assert [f for f in handler.head.headers.items() if f[0] not in framing] == \
        [f for f in fields if f[0] not in framing]
    assert handler.body == body and handler.ended
    assert client.codec.reusable()


def test_eof_after_an_early_answer_to_a_request_still_being_read():
    """Found by bench/fuzz (http1_server): a chunked request answered in full before
    its body was read closes the connection; an EOF read after that raised
    IndexError out of the codec (its stream was "done" twice)."""
    server = Server(Limits(max_request_head_bytes=512, max_headers_count=8,
                           max_pipelined_requests=2))
    wire = (b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n")
    for at in range(0, len(wire), 16):
        server.conn.receive(wire[at:at + 16])
        for handler in server.handlers:
            handler.stream.send_headers(ResponseHead(200, Headers([("content-length", "0")])),
                                        True)
    assert not server.conn.receive_eof()
    assert server.conn.closed is not None
    assert server.conn.take().startswith(b"HTTP/1.1 200 OK\r\n")
