"""The client codec over an in-memory connection: proxy calls in, bytes out; bytes
in, handler calls out."""

from __future__ import annotations

import pytest

from mosn.network.filter import CloseType, ConnectionEvent
from mosn.stream.types import Headers, RequestHead, StreamResetReason

from http1_fakes import Client
from mosn_http1 import Limits


def get(path: str = "/", method: str = "GET", **fields: str) -> RequestHead:
    return RequestHead(method, path, "backend:8080",
                       headers=Headers([(k.replace("_", "-"), v) for k, v in fields.items()]))


def sent_get(client: Client, method: str = "GET"):
    stream, handler = client.request()
    stream.send_headers(get(method=method), True)
    client.conn.take()
    return stream, handler


# -- request encoding: golden bytes -----------------------------------------------------


def test_get_request_bytes():
    client = Client()
    stream, _ = client.request()
    stream.send_headers(get("/a?b=1", x_request_id="r1", accept="*/*"), True)
    assert client.conn.writes == [
        b"GET /a?b=1 HTTP/1.1\r\nhost: backend:8080\r\nx-request-id: r1\r\naccept: */*\r\n\r\n"]


def test_http10_client_request_is_sent_as_http11():
    client = Client()
    stream, _ = client.request()
    head = get()
    head.version = "1.0"
    stream.send_headers(head, True)
    assert client.conn.take().startswith(b"GET / HTTP/1.1\r\n")


def test_request_body_without_length_is_chunked():
    client = Client()
    stream, _ = client.request()
    stream.send_headers(get("/up", "POST"), False)
    stream.send_data(b"hello", False)
    stream.send_data(b"!", True)
    assert client.conn.writes == [  # the head waits for the first chunk: one write
        b"POST /up HTTP/1.1\r\nhost: backend:8080\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n",
        b"1\r\n!\r\n0\r\n\r\n",
    ]


def test_request_trailers():
    client = Client()
    stream, _ = client.request()
    stream.send_headers(get("/up", "POST"), False)
    stream.send_data(b"x", False)
    stream.send_trailers(Headers([("x-sum", "1")]))
    assert client.conn.take().endswith(b"1\r\nx\r\n0\r\nx-sum: 1\r\n\r\n")


def test_request_body_with_length_is_sent_as_is():
    client = Client()
    stream, _ = client.request()
    stream.send_headers(get("/up", "PUT", content_length="3"), False)
    stream.send_data(b"abc", True)
    assert client.conn.writes == [
        b"PUT /up HTTP/1.1\r\nhost: backend:8080\r\ncontent-length: 3\r\n\r\nabc"]


def test_request_head_without_body_yet_goes_out_on_the_next_loop_turn():
    client = Client()
    stream, _ = client.request()
    stream.send_headers(get("/up", "PUT", content_length="3"), False)
    assert client.conn.writes == []
    client.conn.loop.run()
    assert client.conn.take().endswith(b"content-length: 3\r\n\r\n")
    stream.send_data(b"abc", True)
    assert client.conn.writes == [b"abc"]


def test_empty_post_gets_content_length_zero():
    client = Client()
    stream, _ = client.request()
    stream.send_headers(get("/up", "POST"), True)
    assert client.conn.take() == (b"POST /up HTTP/1.1\r\nhost: backend:8080\r\n"
                                  b"content-length: 0\r\n\r\n")


# -- responses --------------------------------------------------------------------------


def test_response_with_length():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                        b"\r\nhel")
    head = handler.head
    assert (head.status, head.reason) == (200, "OK")
    assert head.headers.items() == [("content-type", "text/plain"), ("content-length", "5")]
    assert client.idle == 0 and client.codec.active_streams() == 1
    client.conn.receive(b"lo")
    assert handler.body == b"hello" and handler.ended
    assert client.idle == 1 and client.codec.reusable() and client.conn.closed is None


def test_response_without_body_ends_on_headers():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert handler.events == [("headers", handler.head, True)]
    assert client.idle == 1


def test_chunked_response_with_trailers():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert handler.kinds() == ["headers", "data"] and handler.body == b"abc"
    client.conn.receive(b"0\r\nGrpc-Status: 0\r\n\r\n")
    assert handler.events[-1] == ("trailers", Headers([("grpc-status", "0")]))
    assert client.codec.reusable()


def test_100_continue_is_swallowed():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                        b"Content-Length: 0\r\n\r\n")
    assert [e[1].status for e in handler.events if e[0] == "headers"] == [201]


def test_head_response_has_no_body_and_the_connection_goes_on():
    client = Client()
    _, handler = sent_get(client, "HEAD")
    client.conn.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert handler.events == [("headers", handler.head, True)]
    assert client.idle == 1 and client.codec.reusable()
    _, second = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert second.body == b"hi" and second.ended


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses(status):
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status)
    assert handler.events == [("headers", handler.head, True)]
    assert client.codec.reusable()


def test_close_delimited_response_ends_at_eof():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\n\r\nsome")
    client.conn.receive(b" body")
    assert not handler.ended
    assert client.conn.receive_eof() is False
    assert handler.body == b"some body" and handler.ended
    assert client.idle == 1 and not client.codec.reusable()


def test_close_delimited_empty_response_ends_at_eof():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.0 200 OK\r\n\r\n")
    client.conn.receive_eof()
    assert handler.events == [("headers", handler.head, False), ("data", b"", True)]


def test_connection_close_response_is_not_reused():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert handler.ended and client.idle == 1
    assert not client.codec.reusable() and client.conn.closed is CloseType.FLUSH_WRITE


def test_http10_response_is_not_reused():
    client = Client()
    sent_get(client)
    client.conn.receive(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not client.codec.reusable()


def test_connection_close_request_is_not_reused():
    client = Client()
    stream, _ = client.request()
    stream.send_headers(get(connection="close"), True)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not client.codec.reusable()


def test_response_before_the_request_ends_is_not_reused():
    client = Client()
    stream, handler = client.request()
    stream.send_headers(get("/up", "POST"), False)
    client.conn.receive(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
    assert handler.ended and not client.codec.reusable()
    stream.send_data(b"late", True)  # ignored: the stream is over
    assert b"late" not in client.conn.take()


def test_upstream_gone_mid_response_resets():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert client.conn.receive_eof() is False
    assert handler.events[-1] == ("reset", StreamResetReason.CONNECTION_TERMINATION)
    assert not client.codec.reusable()


@pytest.mark.parametrize("cut", [b"10\r\nabc", b"3\r\nabc\r\n"])
def test_upstream_gone_mid_chunked_response_resets(cut):
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + cut)
    # The proxy strips hop-by-hop fields from the head it forwards: the codec keeps
    # the framing it read, not what is left in the head.
    handler.head.headers.remove("transfer-encoding")
    assert client.conn.receive_eof() is False
    assert handler.events[-1] == ("reset", StreamResetReason.CONNECTION_TERMINATION)
    assert not any(e[0] == "data" and e[2] for e in handler.events)


@pytest.mark.parametrize("codings", [b"gzip, chunked", b"identity, chunked"])
def test_response_transfer_coding_other_than_chunked_resets(codings):
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + codings
                        + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert handler.events == [("reset", StreamResetReason.PROTOCOL_ERROR)]
    assert client.conn.closed is CloseType.NO_FLUSH


def test_upstream_gone_before_a_response_resets():
    client = Client()
    _, handler = sent_get(client)
    client.conn.lose()
    assert handler.events == [("reset", StreamResetReason.CONNECTION_TERMINATION)]


def test_malformed_response_resets_and_closes():
    client = Client()
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 2OO OK\r\n\r\n")
    assert handler.events == [("reset", StreamResetReason.PROTOCOL_ERROR)]
    assert client.conn.closed is CloseType.NO_FLUSH


def test_response_head_over_the_limit_resets():
    client = Client(Limits(max_response_head_bytes=1024))
    _, handler = sent_get(client)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    assert handler.events == [("reset", StreamResetReason.PROTOCOL_ERROR)]


def test_unsolicited_response_closes():
    client = Client()
    client.conn.receive(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
    assert client.conn.closed is CloseType.NO_FLUSH and not client.codec.reusable()


def test_upgrade_101_becomes_a_tunnel():
    client = Client()
    stream, handler = client.request()
    stream.send_headers(get("/ws", upgrade="websocket", connection="Upgrade"), False)
    client.conn.loop.run()
    assert b"transfer-encoding" not in client.conn.take()
    client.conn.receive(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\n\r\n\x81\x02hi")
    assert handler.events[0][1].status == 101 and handler.events[0][2] is False
    assert handler.events[1:] == [("data", b"\x81\x02hi", False)]
    client.conn.receive(b"HTTP/1.1 junk")
    assert handler.events[-1] == ("data", b"HTTP/1.1 junk", False)
    stream.send_data(b"raw", False)
    assert client.conn.take() == b"raw"
    assert client.conn.receive_eof() is True
    assert handler.events[-1] == ("data", b"", True)
    stream.send_data(b"", True)
    assert client.conn.eof_sent and client.idle == 0


def test_connect_2xx_becomes_a_tunnel():
    client = Client()
    stream, handler = client.request()
    stream.send_headers(RequestHead("CONNECT", "db:5432", "db:5432"), False)
    client.conn.loop.run()
    assert client.conn.take() == b"CONNECT db:5432 HTTP/1.1\r\nhost: db:5432\r\n\r\n"
    client.conn.receive(b"HTTP/1.1 200 Connection Established\r\n\r\n\x00\x01")
    client.conn.receive(b"\x02")
    assert handler.body == b"\x00\x01\x02" and not handler.ended


def test_one_request_at_a_time():
    client = Client()
    sent_get(client)
    assert not client.codec.reusable() and client.codec.multiplexed is False
    with pytest.raises(RuntimeError):
        client.request()


def test_write_watermarks_go_to_the_stream():
    client = Client()
    _, handler = sent_get(client)
    client.conn.above()
    client.conn.below()
    assert handler.kinds() == ["above", "below"]


def test_read_disable_is_undone_when_the_response_ends():
    client = Client()
    stream, handler = sent_get(client)
    # The proxy stops reading on the head (its client is slow); the rest was in the same read.
    handler.on_headers = lambda head, end_stream: stream.read_disable(True)
    client.conn.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert client.idle == 1 and client.conn.disabled == 0
    stream.read_disable(False)  # after the end: the codec already let go
    assert client.conn.disabled == 0


def test_connect_failure_resets_with_connection_failure():
    client = Client()
    _, handler = client.request()
    client.conn.lose(ConnectionEvent.CONNECT_FAILED)
    assert handler.events == [("reset", StreamResetReason.CONNECTION_FAILURE)]


def test_stream_reset_aborts_the_connection():
    client = Client()
    stream, handler = sent_get(client)
    stream.reset(StreamResetReason.LOCAL_RESET)
    assert client.conn.closed is CloseType.NO_FLUSH
    client.conn.lose(ConnectionEvent.LOCAL_CLOSE)
    assert handler.events == []  # the proxy reset it: nothing comes back
