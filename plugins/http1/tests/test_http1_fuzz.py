"""Arbitrary bytes never raise out of the server codec: they are a normal parse or a
4xx/505 reply and a close."""

from __future__ import annotations

import httptools
from hypothesis import given, settings, strategies as st

from http1_fakes import Server
from mosn.stream.types import Headers, ResponseHead
from mosn_http1 import Limits

REQUEST_PIECES = st.sampled_from([
    b"GET / HTTP/1.1\r\n", b"POST /x HTTP/1.0\r\n", b"Host: h\r\n", b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"Connection: Upgrade\r\n",
    b"Upgrade: websocket\r\n", b"Expect: 100-continue\r\n", b"\r\n", b"3\r\nabc\r\n",
    b"0\r\n\r\n", b"abc", b"\x00", b" ", b":", b"\n", b"HTTP/1.1 200 OK\r\n",
])


def _drive(srv: Server, chunks: list[bytes], answer: bool) -> None:
    for chunk in chunks:
        srv.conn.receive(chunk)
        if answer:
            for h in srv.handlers:
                h.stream.send_headers(ResponseHead(200, Headers([("content-length", "0")])),
                                      True)
    srv.conn.receive_eof()


def _check(srv: Server) -> None:
    wire = srv.conn.take()
    for status in (b" 400 ", b" 431 ", b" 505 "):
        if b"HTTP/1.1" + status in wire:
            assert srv.conn.closed is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_arbitrary_bytes(chunks, answer):
    srv = Server(Limits(max_request_head_bytes=256, max_headers_count=8,
                        max_pipelined_requests=2))
    _drive(srv, chunks, answer)
    _check(srv)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(REQUEST_PIECES, max_size=12).map(b"".join), max_size=6),
       st.booleans())
def test_request_like_bytes(chunks, answer):
    srv = Server(Limits(max_pipelined_requests=2))
    _drive(srv, chunks, answer)
    _check(srv)


def _request(i: int, kind: str, body: bytes) -> bytes:
    if kind == "GET":
        return b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i
    if kind == "length":
        return b"POST /%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (
            i, len(body), body)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:3], body[3:]) if p)
    return b"POST /%d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (
        i, chunks)


def _responses(wire: bytes) -> list[bytes]:
    bodies: list[bytes] = []

    class Collect:
        body = b""

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            bodies.append(self.body)
            self.body = b""

    httptools.HttpResponseParser(Collect()).feed_data(wire)
    return bodies


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["GET", "length", "chunked"]),
                          st.binary(min_size=1, max_size=12)), min_size=1, max_size=6),
       st.lists(st.integers(1, 40), min_size=1, max_size=8),
       st.randoms(use_true_random=False), st.integers(1, 4))
def test_pipelined_exchanges_come_back_whole_and_in_order(requests, sizes, rng, limit):
    """Requests read in any pieces, answered in any order with any framing: the client
    reads every response whole, in request order."""
    srv = Server(Limits(max_pipelined_requests=limit))
    wire = b"".join(_request(i, kind, body) for i, (kind, body) in enumerate(requests))
    expected = [b"%d:" % i + (body if kind != "GET" else b"")
                for i, (kind, body) in enumerate(requests)]
    answered: set[int] = set()

    def answer_some(everything: bool) -> None:
        ready = [h for h in srv.handlers if h.ended and id(h) not in answered]
        rng.shuffle(ready)
        for h in ready if everything else ready[: rng.randint(0, len(ready))]:
            answered.add(id(h))
            body = h.head.path[1:].encode() + b":" + h.body
            fields = [("content-length", str(len(body)))] if rng.random() < 0.5 else []
            h.stream.send_headers(ResponseHead(200, Headers(fields)), False)
            h.stream.send_data(body[:2], False)
            srv.conn.loop.run() if rng.random() < 0.3 else None
            h.stream.send_data(body[2:], True)

    pos = 0
    for size in sizes * (len(wire) // sum(sizes) + 1):
        if pos >= len(wire):
            break
        srv.conn.receive(wire[pos:pos + size])
        pos += size
        answer_some(everything=False)
    while len(answered) < len(requests):
        answer_some(everything=True)
    srv.conn.loop.run()
    assert _responses(srv.conn.take()) == expected
    assert srv.conn.closed is None and srv.conn.disabled == 0
