"""The server codec over an in-memory connection: bytes in, handler calls out; proxy
calls in, bytes out."""

from __future__ import annotations

import gc
import weakref

import pytest

from mosn.network.filter import CloseType, ConnectionEvent
from mosn.stream.types import Headers, ResponseHead, StreamResetReason

from http1_fakes import Server
from mosn_http1 import Limits

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Foo: Bar\r\n\r\n"


def ok(body: bytes = b"ok", **extra: str) -> ResponseHead:
    fields = [("content-length", str(len(body)))] + list(extra.items())
    return ResponseHead(200, Headers(fields))


def answer(handler, body: bytes = b"ok") -> None:
    handler.stream.send_headers(ok(body), False)
    handler.stream.send_data(body, True)


# -- requests -----------------------------------------------------------------------


def test_request_head():
    srv = Server()
    srv.conn.receive(GET)
    [h] = srv.handlers
    assert h.events == [("headers", h.head, True)]
    head = h.head
    assert (head.method, head.path, head.authority, head.version, head.scheme) == (
        "GET", "/a?b=1", "example.com", "1.1", "http")
    assert head.headers.items() == [("x-foo", "Bar")]  # lower-cased names, no Host


def test_a_finished_exchange_leaves_no_cycle_with_its_handler():
    """The proxy's stream holds the codec's stream it answers on; once the exchange is
    over the codec lets go of the handler, so both are freed by reference counting
    (a cycle per request would be left to the garbage collector)."""
    srv = Server()
    srv.conn.receive(GET)
    [h] = srv.handlers
    answer(h)
    gone = weakref.ref(h)
    srv.handlers.clear()
    gc.disable()
    try:
        del h
        assert gone() is None
    finally:
        gc.enable()


def test_request_split_across_reads():
    srv = Server()
    for i in range(0, len(GET), 3):
        srv.conn.receive(GET[i:i + 3])
    [h] = srv.handlers
    assert h.head.path == "/a?b=1" and h.head.authority == "example.com"


def test_body_chunks_passed_on_as_they_come():
    srv = Server()
    srv.conn.receive(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    [h] = srv.handlers
    assert h.events[1:] == [("data", b"abc", False)]  # not held for the rest
    srv.conn.receive(b"defg")
    srv.conn.receive(b"hij")
    assert h.kinds() == ["headers", "data", "data", "data"]  # the last one ends it
    assert h.events[-1] == ("data", b"hij", True)
    assert h.body == b"abcdefghij" and h.ended


def test_headers_passed_on_before_the_body_arrives():
    srv = Server()
    srv.conn.receive(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n")
    [h] = srv.handlers
    assert h.events == [("headers", h.head, False)]


def test_chunked_request_decoded_with_trailers():
    srv = Server()
    srv.conn.receive(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n")
    [h] = srv.handlers
    assert h.body == b"abc" and not h.ended
    srv.conn.receive(b"2\r\nde\r\n0\r\nX-Checksum: 42\r\n\r\n")
    assert h.body == b"abcde"
    assert h.events[-1] == ("trailers", Headers([("x-checksum", "42")]))


def test_chunked_request_without_trailers_ends_with_its_last_data_or_empty_data():
    srv = Server()
    srv.conn.receive(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n0\r\n\r\n")
    [h] = srv.handlers
    assert h.events[1:] == [("data", b"abc", True)]  # read whole: one call ends it
    srv = Server()
    srv.conn.receive(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n")
    srv.conn.receive(b"0\r\n\r\n")
    [h] = srv.handlers
    assert h.events[1:] == [("data", b"abc", False), ("data", b"", True)]


def test_keep_alive_serves_requests_one_after_another():
    srv = Server()
    srv.conn.receive(GET)
    answer(srv.handlers[0])
    srv.conn.receive(GET)
    answer(srv.handlers[1])
    assert srv.conn.take().count(b"HTTP/1.1 200 OK") == 2
    assert srv.conn.closed is None


# -- responses: golden bytes ------------------------------------------------------------


def test_response_head_and_body_in_one_write():
    srv = Server()
    srv.conn.receive(GET)
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(200, Headers([("content-type", "text/plain"),
                                                   ("content-length", "5")])), False)
    stream.send_data(b"hello", True)
    assert srv.conn.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello"]


def test_response_head_without_body_yet_goes_out_on_the_next_loop_turn():
    srv = Server()
    srv.conn.receive(GET)
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(200), False)
    assert srv.conn.writes == []
    srv.conn.loop.run()
    assert srv.conn.take() == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    stream.send_data(b"abc", True)
    assert srv.conn.writes == [b"3\r\nabc\r\n0\r\n\r\n"]


def test_large_first_chunk_is_not_copied_onto_the_head():
    srv = Server()
    srv.conn.receive(GET)
    stream = srv.handlers[0].stream
    stream.send_headers(ok(b"x" * 100_000), False)
    stream.send_data(b"x" * 100_000, True)
    assert srv.conn.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n",
                               b"x" * 100_000]


def test_response_reason_given_is_kept():
    srv = Server()
    srv.conn.receive(GET)
    srv.handlers[0].stream.send_headers(ResponseHead(404, Headers(), "Nope"), True)
    assert srv.conn.take() == b"HTTP/1.1 404 Nope\r\ncontent-length: 0\r\n\r\n"


def test_unknown_status_gets_a_reason():
    srv = Server()
    srv.conn.receive(GET)
    srv.handlers[0].stream.send_headers(ResponseHead(599), True)
    assert srv.conn.take().startswith(b"HTTP/1.1 599 Unknown\r\n")


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_length_added_to_bodiless_statuses(status):
    srv = Server()
    srv.conn.receive(GET)
    srv.handlers[0].stream.send_headers(ResponseHead(status), True)
    assert srv.conn.take() == b"HTTP/1.1 %d %s\r\n\r\n" % (
        status, b"No Content" if status == 204 else b"Not Modified")


def test_head_response_has_no_body():
    srv = Server()
    srv.conn.receive(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(200, Headers([("content-length", "5")])), False)
    stream.send_data(b"hello", True)  # a proxied body to HEAD is dropped
    assert srv.conn.take() == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
    srv.conn.receive(GET)  # and the connection goes on
    assert len(srv.handlers) == 2


def test_head_response_ended_on_headers_gets_no_content_length():
    srv = Server()
    srv.conn.receive(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    srv.handlers[0].stream.send_headers(ResponseHead(200), True)
    assert srv.conn.take() == b"HTTP/1.1 200 OK\r\n\r\n"


def test_chunked_response_when_no_length():
    srv = Server()
    srv.conn.receive(GET)
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(200, Headers([("x", "1")])), False)
    stream.send_data(b"hello", False)
    stream.send_data(b"", False)  # nothing to write: an empty chunk would end the body
    stream.send_data(b"world!", True)
    assert srv.conn.writes == [
        b"HTTP/1.1 200 OK\r\nx: 1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"6\r\nworld!\r\n0\r\n\r\n",
    ]


def test_chunked_response_trailers():
    srv = Server()
    srv.conn.receive(GET)
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(200), False)
    stream.send_data(b"abc", False)
    stream.send_trailers(Headers([("grpc-status", "0")]))
    assert srv.conn.take().endswith(b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\n\r\n")


def test_transfer_encoding_from_the_proxy_is_replaced_by_the_codecs_own():
    srv = Server()
    srv.conn.receive(GET)
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(200, Headers([("transfer-encoding", "chunked")])), False)
    stream.send_data(b"x", True)
    assert srv.conn.take() == (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                               b"1\r\nx\r\n0\r\n\r\n")


def test_header_with_line_break_is_not_written():
    srv = Server()
    srv.conn.receive(GET)
    bad = Headers([("a", "1"), ("evil", "x\r\nset-cookie: y"), ("b", "2")])
    srv.handlers[0].stream.send_headers(ResponseHead(200, bad), True)
    assert srv.conn.take() == b"HTTP/1.1 200 OK\r\na: 1\r\nb: 2\r\ncontent-length: 0\r\n\r\n"


# -- pipelining ----------------------------------------------------------------------


def test_pipelined_responses_written_in_request_order():
    srv = Server()
    srv.conn.receive(b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(3)))
    h0, h1, h2 = srv.handlers
    answer(h2, b"two")
    answer(h1, b"one")
    assert srv.conn.take() == b""  # held: /0 is not answered yet
    answer(h0, b"zero")
    wire = srv.conn.take()
    assert wire.index(b"zero") < wire.index(b"one") < wire.index(b"two")
    assert srv.conn.closed is None


def test_held_response_over_the_limit_pauses_its_producer():
    srv = Server(Limits(max_held_response_bytes=10))
    srv.conn.receive(GET + GET)
    h0, h1 = srv.handlers
    h1.stream.send_headers(ResponseHead(200), False)
    h1.stream.send_data(b"x" * 20, False)
    assert h1.events[-1] == ("above",)
    answer(h0)  # h1's turn: what it held is written, and it may go on
    assert h1.events[-1] == ("below",)
    assert srv.conn.take().endswith(b"14\r\n" + b"x" * 20 + b"\r\n")


def test_pipeline_limit_defers_requests_and_reading():
    srv = Server(Limits(max_pipelined_requests=2))
    srv.conn.receive(b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(4)))
    assert len(srv.handlers) == 2
    assert srv.conn.disabled == 1  # nothing more is read meanwhile
    srv.conn.receive(b"GET /4 HTTP/1.1\r\nHost: h\r\n\r\n")  # held by the connection
    answer(srv.handlers[0])
    assert [h.head.path for h in srv.handlers] == ["/0", "/1", "/2"]
    assert srv.handlers[2].events == [("headers", srv.handlers[2].head, True)]
    answer(srv.handlers[1])
    assert [h.head.path for h in srv.handlers] == ["/0", "/1", "/2", "/3"]
    assert srv.conn.disabled == 1  # /4 was read, and waits like /2 and /3 did
    answer(srv.handlers[2])
    assert [h.head.path for h in srv.handlers][-1] == "/4"
    assert srv.conn.disabled == 0


def test_deferred_request_body_is_replayed():
    srv = Server(Limits(max_pipelined_requests=1))
    srv.conn.receive(GET + b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    answer(srv.handlers[0])
    h = srv.handlers[1]
    assert h.kinds() == ["headers", "data"] and h.body == b"abc" and h.ended


# -- 100-continue, HTTP/1.0, Connection: close --------------------------------------


def test_expect_100_continue_answered_by_the_codec():
    srv = Server()
    srv.conn.receive(b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\n\r\n")
    assert srv.conn.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    h = srv.handlers[0]
    assert "expect" not in h.head.headers
    srv.conn.receive(b"abc")
    assert h.body == b"abc"
    h.stream.send_headers(ResponseHead(100), False)  # the upstream's own: not repeated
    assert srv.conn.take() == b""


def test_http10_gets_no_100_continue():
    srv = Server()
    srv.conn.receive(b"PUT /f HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n")
    assert srv.conn.take() == b""


def test_http10_closes_after_the_response():
    srv = Server()
    srv.conn.receive(b"GET / HTTP/1.0\r\n\r\n")
    h = srv.handlers[0]
    assert h.head.version == "1.0" and h.head.authority == ""
    answer(h)
    assert srv.conn.take() == (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
                               b"connection: close\r\n\r\nok")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_http10_keep_alive_on_request():
    srv = Server()
    srv.conn.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    answer(srv.handlers[0])
    assert b"connection: keep-alive\r\n" in srv.conn.take()
    assert srv.conn.closed is None
    srv.conn.receive(b"GET / HTTP/1.0\r\n\r\n")
    assert len(srv.handlers) == 2


def test_http10_response_without_length_is_close_delimited():
    srv = Server()
    srv.conn.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(200), False)
    stream.send_data(b"abc", False)
    assert srv.conn.closed is None
    stream.send_data(b"def", True)
    assert srv.conn.take() == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabcdef"
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_connection_close_request_closes_after_the_response():
    srv = Server()
    srv.conn.receive(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + GET)
    assert len(srv.handlers) == 1  # nothing after a last request is read
    answer(srv.handlers[0])
    assert b"connection: close\r\n" in srv.conn.take()
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_connection_close_response_closes_after_it():
    srv = Server()
    srv.conn.receive(GET)
    srv.handlers[0].stream.send_headers(ResponseHead(200, Headers([("connection", "close")])),
                                        True)
    assert srv.conn.take() == b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_response_before_the_request_ends_closes_the_connection():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nabc")
    answer(srv.handlers[0])  # e.g. 413 from the proxy
    assert srv.conn.closed is CloseType.FLUSH_WRITE


# -- upgrade -------------------------------------------------------------------------

WS = (b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


def test_upgrade_becomes_a_tunnel_on_101():
    srv = Server()
    srv.conn.receive(WS + b"early")
    h = srv.handlers[0]
    assert h.events == [("headers", h.head, False)]
    assert h.head.headers.get("upgrade") == "websocket"
    assert h.head.headers.get("connection") == "Upgrade"
    assert srv.conn.disabled == 1  # the bytes after the head wait for the answer
    h.stream.send_headers(ResponseHead(101, Headers([("upgrade", "websocket"),
                                                     ("connection", "Upgrade")])), False)
    assert srv.conn.take() == (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                               b"connection: Upgrade\r\n\r\n")
    assert h.events[-1] == ("data", b"early", False) and srv.conn.disabled == 0
    srv.conn.receive(b"GET / HTTP/1.1\r\n\r\n")  # raw now, not parsed
    assert h.events[-1] == ("data", b"GET / HTTP/1.1\r\n\r\n", False)
    h.stream.send_data(b"\x81\x02hi", False)
    assert srv.conn.take() == b"\x81\x02hi"
    assert srv.conn.receive_eof() is True  # still writable for the other direction
    assert h.events[-1] == ("data", b"", True)
    h.stream.send_data(b"", True)
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_tunnel_upstream_end_half_closes():
    srv = Server()
    srv.conn.receive(WS)
    stream = srv.handlers[0].stream
    stream.send_headers(ResponseHead(101, Headers([("upgrade", "websocket")])), False)
    stream.send_data(b"bye", True)
    assert srv.conn.eof_sent and srv.conn.closed is None


def test_refused_upgrade_closes_after_the_response():
    srv = Server()
    srv.conn.receive(WS + b"junk")
    answer(srv.handlers[0])
    assert srv.conn.closed is CloseType.FLUSH_WRITE
    assert all(e[0] != "data" for e in srv.handlers[0].events)


def test_connect_tunnel():
    srv = Server()
    srv.conn.receive(b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n\x00\x01")
    h = srv.handlers[0]
    assert (h.head.method, h.head.path) == ("CONNECT", "db:5432")
    h.stream.send_headers(ResponseHead(200), False)
    assert srv.conn.take() == b"HTTP/1.1 200 OK\r\n\r\n"  # no length: a tunnel follows
    assert h.events[-1] == ("data", b"\x00\x01", False)


# -- limits and malformed requests ----------------------------------------------------


def test_too_many_headers_431_and_close():
    srv = Server()
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(101))
    srv.conn.receive(b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")
    assert srv.handlers == []
    assert srv.conn.take() == (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                               b"content-length: 0\r\nconnection: close\r\n\r\n")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_header_bytes_over_the_limit_431():
    srv = Server(Limits(max_request_head_bytes=1024))
    srv.conn.receive(b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert srv.conn.take().startswith(b"HTTP/1.1 431 ")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_one_header_line_growing_over_many_reads_431():
    srv = Server(Limits(max_request_head_bytes=1024))
    srv.conn.receive(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
    for _ in range(20):
        if srv.conn.closed:
            break
        srv.conn.receive(b"a" * 100)  # never completes the line
    assert srv.conn.take().startswith(b"HTTP/1.1 431 ")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_long_url_431():
    srv = Server(Limits(max_request_head_bytes=1024))
    srv.conn.receive(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n")
    assert srv.conn.take().startswith(b"HTTP/1.1 431 ")


def test_garbage_400_and_close():
    srv = Server()
    srv.conn.receive(b"\x16\x03\x01\x02\x00\x01\x00")  # a TLS hello to a plain port
    assert srv.handlers == []
    assert srv.conn.take() == (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                               b"connection: close\r\n\r\n")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_two_hosts_400():
    srv = Server()
    srv.conn.receive(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert srv.conn.take().startswith(b"HTTP/1.1 400 ")


def test_http11_request_without_host_400_and_close():
    srv = Server()
    srv.conn.receive(b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n")
    assert srv.handlers == []
    assert srv.conn.take().startswith(b"HTTP/1.1 400 ")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_http10_request_without_host_is_served():
    srv = Server()
    srv.conn.receive(b"GET /x HTTP/1.0\r\n\r\n")
    [h] = srv.handlers
    assert (h.head.path, h.head.authority) == ("/x", "")


@pytest.mark.parametrize("target, path, authority", [
    ("http://api.example.com/admin?x=1", "/admin?x=1", "api.example.com"),
    ("HTTP://api.example.com:8080", "/", "api.example.com:8080"),
    ("https://a.example?q", "/?q", "a.example"),
    ("http://a.example/p#frag", "/p", "a.example"),
])
def test_absolute_form_becomes_origin_form_with_its_authority_as_host(target, path, authority):
    srv = Server()
    srv.conn.receive(f"GET {target} HTTP/1.1\r\nHost: other.example\r\n\r\n".encode())
    [h] = srv.handlers
    assert (h.head.path, h.head.authority) == (path, authority)  # RFC 9112 3.2.2


@pytest.mark.parametrize("target", ["http:///x", "http://user@a.example/x", "ftp://a/x",
                                    "admin", "*"])
def test_request_target_in_no_usable_form_400(target):
    srv = Server()
    srv.conn.receive(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert srv.handlers == []
    assert srv.conn.take().startswith(b"HTTP/1.1 400 ")


def test_options_asterisk_and_connect_authority_forms_are_kept():
    srv = Server()
    srv.conn.receive(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert srv.handlers[0].head.path == "*"
    srv = Server()
    srv.conn.receive(b"CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n")
    assert srv.handlers[0].head.path == "db.example:5432"


@pytest.mark.parametrize("codings, status", [
    (b"identity, chunked", 501), (b"gzip, chunked", 501), (b"chunked, gzip", 400),
    (b"gzip", 400), (b"chunked\r\nTransfer-Encoding: chunked", 400),
])
def test_transfer_coding_other_than_chunked_alone_is_refused(codings, status):
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + codings
                     + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert srv.handlers == []  # never re-chunked and forwarded
    assert srv.conn.take().startswith(b"HTTP/1.1 %d " % status)
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_transfer_encoding_in_http10_request_400():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert srv.handlers == []
    assert srv.conn.take().startswith(b"HTTP/1.1 400 ")


def test_chunked_in_any_case_is_read():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"
                     b"3\r\nabc\r\n0\r\n\r\n")
    assert srv.handlers[0].body == b"abc"


def test_http2_request_line_505():
    srv = Server()
    srv.conn.receive(b"GET / HTTP/2.0\r\n\r\n")
    assert srv.conn.take().startswith(b"HTTP/1.1 505 ")


def test_bad_chunk_resets_the_stream_and_answers_400():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    srv.conn.receive(b"zz\r\n")
    h = srv.handlers[0]
    assert h.events[-1] == ("reset", StreamResetReason.PROTOCOL_ERROR)
    assert srv.conn.take().startswith(b"HTTP/1.1 400 ")
    assert srv.conn.closed is CloseType.FLUSH_WRITE
    h.stream.send_headers(ok(), True)  # late answers from the proxy are ignored
    assert srv.conn.take() == b""


def test_bad_request_read_in_one_piece_never_reaches_the_proxy():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"zz\r\n")
    assert srv.handlers == []
    assert srv.conn.take().startswith(b"HTTP/1.1 400 ")


def test_malformed_request_after_a_pending_one_waits_its_turn():
    srv = Server()
    srv.conn.receive(GET + b"BAD\x00\r\n\r\n")
    assert srv.conn.take() == b"" and srv.conn.closed is None
    answer(srv.handlers[0])
    wire = srv.conn.take()
    assert wire.index(b"200 OK") < wire.index(b"400 Bad Request")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


# -- resets, closes, backpressure -----------------------------------------------------


def test_client_gone_mid_request_resets_the_stream():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    srv.conn.lose()
    assert srv.handlers[0].events[-1] == ("reset", StreamResetReason.CONNECTION_TERMINATION)


def test_client_gone_resets_unanswered_streams_only():
    srv = Server()
    srv.conn.receive(GET + GET)
    answer(srv.handlers[0])
    srv.conn.lose()
    assert srv.handlers[0].kinds() == ["headers"]
    assert srv.handlers[1].events[-1] == ("reset", StreamResetReason.CONNECTION_TERMINATION)


def test_half_close_mid_request_resets_and_closes():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    assert srv.conn.receive_eof() is False
    assert srv.handlers[0].events[-1] == ("reset", StreamResetReason.CONNECTION_TERMINATION)


def test_half_close_after_a_request_still_gets_the_answer():
    srv = Server()
    srv.conn.receive(GET)
    assert srv.conn.receive_eof() is True
    answer(srv.handlers[0])
    assert srv.conn.take().startswith(b"HTTP/1.1 200 OK")
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_stream_reset_closes_the_connection_after_what_was_sent():
    srv = Server()
    srv.conn.receive(GET + GET)
    h0, h1 = srv.handlers
    h0.stream.send_headers(ResponseHead(200), False)
    h0.stream.send_data(b"partial", False)
    h0.stream.reset(StreamResetReason.LOCAL_RESET)
    assert srv.conn.closed is CloseType.FLUSH_WRITE
    srv.conn.lose(ConnectionEvent.LOCAL_CLOSE)
    assert h0.kinds() == ["headers"]  # the proxy reset it: no on_reset back
    assert h1.events[-1] == ("reset", StreamResetReason.CONNECTION_TERMINATION)


def test_reset_of_a_later_stream_waits_for_the_earlier_answer():
    srv = Server()
    srv.conn.receive(GET + GET)
    h0, h1 = srv.handlers
    h1.stream.reset(StreamResetReason.LOCAL_RESET)
    assert srv.conn.closed is None
    answer(h0)
    assert srv.conn.take().endswith(b"ok") and srv.conn.closed is CloseType.FLUSH_WRITE


def test_write_watermarks_go_to_the_stream_being_answered():
    srv = Server()
    srv.conn.receive(GET + GET)
    h0, h1 = srv.handlers
    srv.conn.above()
    assert h0.events[-1] == ("above",) and ("above",) not in h1.events
    answer(h0)
    assert h1.events[-1] == ("above",)  # its turn, and the connection is still full
    srv.conn.below()
    assert h1.events[-1] == ("below",)


def test_read_disable_is_counted_and_undone_when_the_stream_ends():
    srv = Server()
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n")
    stream = srv.handlers[0].stream
    stream.read_disable(True)
    stream.read_disable(True)
    assert srv.conn.disabled == 2
    stream.read_disable(False)
    assert srv.conn.disabled == 1
    srv.conn.receive(b"abc")  # held by the connection
    assert srv.handlers[0].body == b""
    stream.send_headers(ok(), False)
    stream.send_data(b"ok", True)
    stream.read_disable(False)  # after the end: the codec already let go
    assert srv.conn.disabled == 0


def test_go_away_finishes_streams_then_closes():
    srv = Server()
    srv.conn.receive(GET)
    srv.codec.go_away()
    srv.conn.receive(GET)  # not read
    assert len(srv.handlers) == 1
    answer(srv.handlers[0])
    assert b"connection: close\r\n" in srv.conn.take()
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_go_away_when_idle_closes_now():
    srv = Server()
    srv.codec.go_away()
    assert srv.conn.closed is CloseType.FLUSH_WRITE


def test_too_many_trailers_reset_the_stream():
    srv = Server(Limits(max_headers_count=3))
    srv.conn.receive(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    srv.conn.receive(b"1\r\na\r\n0\r\n" + b"".join(b"T%d: v\r\n" % i for i in range(4)) + b"\r\n")
    h = srv.handlers[0]
    assert h.events[-1] == ("reset", StreamResetReason.PROTOCOL_ERROR)
    assert srv.conn.take().startswith(b"HTTP/1.1 431 ")
