"""The sans-IO core on its own: the state table, the readers (bytes in, events out)
and the writers (messages in, bytes out), with no connection, loop or socket."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mosn.stream.types import Headers, RequestHead, ResponseHead
from mosn_http1 import Limits
from mosn_http1.events import (
    BODY,
    END,
    NO_BODY,
    TUNNEL,
    ProtocolError,
    RequestStart,
    ResponseStart,
    Upgraded,
)
from mosn_http1.readers import RequestReader, ResponseReader
from mosn_http1.state import (
    CLIENT,
    CLOSED,
    DATA,
    DONE,
    HEAD,
    HEAD_END,
    IDLE,
    INTERIM,
    RESET,
    SEND_BODY,
    SERVER,
    SWITCH,
    SWITCHED_PROTOCOL,
    StateError,
    advance,
)
from mosn_http1.state import END as END_INPUT
from mosn_http1.writers import CHUNKED, IDENTITY, NO_BODY as WRITE_NO_BODY
from mosn_http1.writers import RequestWriter, ResponseWriter

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def read_all(reader, wire: bytes, step: int | None = None) -> list:
    """The events of ``wire`` fed whole, or ``step`` bytes at a time; body bytes
    that came in pieces are joined, so splits compare equal."""
    pieces = [wire] if step is None else [wire[i:i + step] for i in range(0, len(wire), step)]
    events: list = []
    for piece in pieces:
        for event in reader.feed(piece):
            if type(event) is bytes and events and type(events[-1]) is bytes:
                events[-1] += event
            else:
                events.append(event)
    return events


def summary(events: list) -> list:
    """What an event says, comparable across readers."""
    out = []
    for e in events:
        if isinstance(e, RequestStart):
            h = e.head
            out.append(("request", h.method, h.path, h.authority, h.version,
                        h.headers.items(), e.keep_alive, e.upgrade, e.expect_continue))
        elif isinstance(e, ResponseStart):
            out.append(("response", e.head.status, e.head.reason, e.head.headers.items(),
                        e.keep_alive, e.body, e.close_delimited))
        elif isinstance(e, Headers):
            out.append(("trailers", e.items()))
        elif isinstance(e, ProtocolError):
            out.append(("error", e.status))
        elif isinstance(e, Upgraded):
            out.append(("upgraded", e.rest))
        else:
            out.append(e)
    return out


# -- the state table ----------------------------------------------------------------


def test_a_request_goes_idle_send_body_done():
    state = advance(CLIENT, IDLE, HEAD)
    assert state == SEND_BODY
    assert advance(CLIENT, state, DATA) == SEND_BODY
    assert advance(CLIENT, state, END_INPUT) == DONE
    assert advance(CLIENT, IDLE, HEAD_END) == DONE


def test_a_response_takes_interim_heads_then_its_own_or_a_switch():
    assert advance(SERVER, IDLE, INTERIM) == IDLE
    assert advance(SERVER, IDLE, SWITCH) == SWITCHED_PROTOCOL
    assert advance(SERVER, SWITCHED_PROTOCOL, DATA) == SWITCHED_PROTOCOL
    assert advance(SERVER, SWITCHED_PROTOCOL, END_INPUT) == DONE


@pytest.mark.parametrize("role,state,event", [
    (SERVER, SEND_BODY, HEAD),      # a second head
    (SERVER, DONE, DATA),           # data after the end
    (CLIENT, IDLE, DATA),           # data before the head
    (CLIENT, IDLE, INTERIM),        # only a response has interim heads
    (SERVER, IDLE, END_INPUT),
    (CLIENT, CLOSED, HEAD),
])
def test_the_table_refuses_what_it_has_no_entry_for(role, state, event):
    with pytest.raises(StateError, match="cannot take"):
        advance(role, state, event)


def test_a_reset_is_allowed_anywhere_and_keeps_a_done_half_done():
    for state in (IDLE, SEND_BODY, SWITCHED_PROTOCOL, CLOSED):
        assert advance(SERVER, state, RESET) == CLOSED
    assert advance(CLIENT, DONE, RESET) == DONE


# -- the request reader -------------------------------------------------------------

PIPELINE = (b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-T: t\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
            b"GET http://other:8080/c HTTP/1.0\r\n\r\n")


def test_pipelined_requests_become_heads_bodies_trailers_and_ends():
    events = summary(read_all(RequestReader(), PIPELINE))
    assert events == [
        ("request", "POST", "/a?x=1", "h", "1.1",
         [("x-a", "1"), ("transfer-encoding", "chunked")], True, False, False),
        b"abc", ("trailers", [("x-t", "t")]),
        ("request", "GET", "/b", "h", "1.1", [("content-length", "2")], True, False, True),
        b"hi", END,
        ("request", "GET", "/c", "other:8080", "1.0", [], False, False, False), END,
    ]


def test_every_split_of_the_input_gives_the_same_events():
    whole = summary(read_all(RequestReader(), PIPELINE))
    for step in range(1, len(PIPELINE)):
        assert summary(read_all(RequestReader(), PIPELINE, step)) == whole, step


def test_the_reader_stops_after_a_request_that_closes_the_connection():
    reader = RequestReader()
    wire = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    events = summary(reader.feed(wire))
    assert [e[0] if isinstance(e, tuple) else e for e in events] == ["request", END]
    assert reader.stopped and reader.feed(b"GET / HTTP/1.1\r\n\r\n") == []


@pytest.mark.parametrize("wire,status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                    # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),              # two Hosts
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: 1\r\n" * 9 + b"\r\n", 431),  # count
    (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 431),                  # line
    (b"\x00garbage\r\n\r\n", 400),
])
def test_what_breaks_the_protocol_is_an_error_with_the_status_to_answer(wire, status):
    reader = RequestReader(Limits(max_request_head_bytes=256, max_headers_count=8))
    events = summary(reader.feed(wire))
    assert events[-1] == ("error", status)
    assert reader.stopped


def test_a_head_over_the_limit_in_pieces_is_refused_before_it_completes():
    reader = RequestReader(Limits(max_request_head_bytes=256))
    assert reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ") == []
    events: list = []
    for _ in range(40):
        events += reader.feed(b"aaaaaaaaaa")
        if events:
            break
    assert summary(events) == [("error", 431)]


def test_an_upgrade_request_stops_the_reader_with_what_followed():
    reader = RequestReader()
    wire = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    events = summary(reader.feed(wire + b"\x81\x00raw"))
    assert events[0][0] == "request" and events[0][7] is True
    assert events[1:] == [END, ("upgraded", b"\x81\x00raw")]
    assert reader.feed(b"more") == []


# -- the response reader ------------------------------------------------------------


def test_responses_are_read_only_as_answers_to_requests():
    reader = ResponseReader()
    assert summary(reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")) == [
        ("error", 502)]


def test_a_response_after_interim_heads_with_a_chunked_body_and_trailers():
    reader = ResponseReader()
    reader.expect("POST", False)
    wire = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\nX-T: 1\r\n\r\n")
    whole = summary(read_all(reader, wire))
    assert whole == [("response", 200, "OK", [("transfer-encoding", "chunked")], True, BODY,
                      False), b"ok", ("trailers", [("x-t", "1")])]
    for step in range(1, len(wire)):
        again = ResponseReader()
        again.expect("POST", False)
        assert summary(read_all(again, wire, step)) == whole, step


def test_no_body_after_head_204_and_304_and_a_body_delimited_by_close():
    reader = ResponseReader()
    reader.expect("HEAD", False)
    events = summary(reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"))
    assert [e[5] if isinstance(e, tuple) else e for e in events] == [NO_BODY, END]
    reader.expect("GET", False)
    events = summary(reader.feed(b"HTTP/1.1 304 x\r\n\r\nHTTP/1.1 200 OK\r\n\r\nbody"))
    assert events[0][5] == NO_BODY and events[1] is END
    assert summary(reader.feed(b"")) == []
    reader = ResponseReader()
    reader.expect("GET", False)
    events = summary(reader.feed(b"HTTP/1.1 200 OK\r\n\r\nbody"))
    assert events == [("response", 200, "OK", [], False, BODY, True), b"body"]


def test_a_switch_nobody_asked_for_is_an_error_and_an_asked_one_a_tunnel():
    reader = ResponseReader()
    reader.expect("GET", False)
    assert summary(reader.feed(b"HTTP/1.1 101 Switching\r\n\r\n"))[-1] == ("error", 502)
    reader = ResponseReader()
    reader.expect("GET", True)
    events = summary(reader.feed(
        b"HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw"))
    assert events[0][5] == TUNNEL and events[-1] == ("upgraded", b"raw")


# -- the writers ----------------------------------------------------------------------


def response(status: int, *fields: tuple[str, str]) -> ResponseHead:
    return ResponseHead(status, Headers(list(fields)))


def test_a_response_is_framed_by_its_length_or_in_chunks_or_by_close():
    w = ResponseWriter("GET", False, True, False)
    assert w.write_head(response(200, ("content-length", "2")), False, False) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert w.framing == IDENTITY and w.write_data(b"ok", True) == b"ok"
    assert w.response == DONE and not w.close_after
    w = ResponseWriter("GET", False, True, False)
    assert w.write_head(response(200), False, False).endswith(
        b"transfer-encoding: chunked\r\n\r\n")
    assert w.framing == CHUNKED and w.write_data(b"ok", True) == b"2\r\nok\r\n0\r\n\r\n"
    w = ResponseWriter("GET", True, True, False)  # HTTP/1.0: no chunks
    assert w.write_head(response(200), False, False).endswith(b"connection: close\r\n\r\n")
    assert w.close_after and w.write_data(b"ok", True) == b"ok"


def test_a_response_to_head_and_a_204_have_no_body_and_keep_alive_is_said_to_http10():
    w = ResponseWriter("HEAD", False, True, False)
    w.write_head(response(200, ("content-length", "9")), False, False)
    assert w.framing == WRITE_NO_BODY and w.write_data(b"x", True) == b""
    w = ResponseWriter("GET", True, True, False)
    assert w.write_head(response(204), True, False) == (
        b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n")


def test_the_last_response_and_a_refused_upgrade_close_the_connection():
    w = ResponseWriter("GET", False, True, False)
    assert w.write_head(response(200), True, True).endswith(b"connection: close\r\n\r\n")
    w = ResponseWriter("GET", False, True, True)
    w.write_head(response(200), True, False)
    assert w.close_after
    w = ResponseWriter("GET", False, True, True)
    w.write_head(response(101, ("upgrade", "websocket")), False, False)
    assert w.response == SWITCHED_PROTOCOL and w.write_data(b"raw", False) == b"raw"


def test_interim_heads_are_written_but_100_is_the_codecs_own():
    w = ResponseWriter("GET", False, True, False)
    assert w.write_head(response(100), False, False) == b""
    assert w.write_head(response(103, ("link", "</a>")), False, False) == (
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
    assert w.response == IDLE


def test_a_writer_refuses_a_second_head_and_data_after_the_end():
    w = ResponseWriter("GET", False, True, False)
    w.write_head(response(200), True, False)
    with pytest.raises(StateError):
        w.write_head(response(200), True, False)
    with pytest.raises(StateError):
        w.write_data(b"x", False)
    r = RequestWriter()
    with pytest.raises(StateError):
        r.write_data(b"x", False)


def test_a_request_gets_host_chunks_or_a_zero_length_as_its_method_needs():
    r = RequestWriter()
    assert r.write_head(RequestHead("POST", "/p", "up", "http", Headers()), True) == (
        b"POST /p HTTP/1.1\r\nhost: up\r\ncontent-length: 0\r\n\r\n")
    r = RequestWriter()
    r.write_head(RequestHead("PUT", "/p", "up", "http", Headers()), False)
    assert r.chunked and r.write_trailers(Headers([("x-t", "1")])) == b"0\r\nx-t: 1\r\n\r\n"
    r = RequestWriter()
    r.write_head(RequestHead("GET", "/", "up", "http", Headers(
        [("connection", "upgrade, close"), ("upgrade", "websocket")])), False)
    assert r.upgrade and not r.chunked and not r.keep_alive


# -- writer to reader ------------------------------------------------------------------

TOKEN = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1,
                max_size=10).map(lambda t: "x-" + t)
VALUE = st.text(alphabet=string.ascii_letters + string.digits + " -_.,;:=/", max_size=20
                ).map(str.strip)
FIELDS = st.lists(st.tuples(TOKEN, VALUE), max_size=5)
PATH = st.text(alphabet=string.ascii_letters + string.digits + "/-._~", max_size=20
               ).map(lambda p: "/" + p)
CHUNKS = st.lists(st.binary(min_size=1, max_size=30), max_size=4)


@SETTINGS
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), PATH, FIELDS, CHUNKS, FIELDS,
       st.integers(min_value=1, max_value=17))
def test_what_the_request_writer_writes_the_request_reader_reads_back(
        method, path, fields, chunks, trailers, step):
    writer = RequestWriter()
    wire = writer.write_head(RequestHead(method, path, "up", "http", Headers(fields)),
                             not chunks)
    for i, chunk in enumerate(chunks):
        wire += writer.write_data(chunk, i == len(chunks) - 1 and not trailers)
    if chunks and trailers:
        wire += writer.write_trailers(Headers(trailers))
    assert writer.request == DONE
    events = read_all(RequestReader(), wire, step)
    head = events[0].head
    assert (head.method, head.path, head.authority) == (method, path, "up")
    sent = [f for f in head.headers.items() if f[0].startswith("x-")]
    assert sent == fields
    body = b"".join(e for e in events if type(e) is bytes)
    assert body == b"".join(chunks)
    last = events[-1]
    if chunks and trailers:
        assert isinstance(last, Headers) and last.items() == trailers
    else:
        assert last is END


@SETTINGS
@given(st.sampled_from([200, 201, 204, 404, 503]), FIELDS, CHUNKS,
       st.integers(min_value=1, max_value=17))
def test_what_the_response_writer_writes_the_response_reader_reads_back(
        status, fields, chunks, step):
    writer = ResponseWriter("GET", False, True, False)
    wire = writer.write_head(ResponseHead(status, Headers(fields)), not chunks, False)
    for i, chunk in enumerate(chunks):
        wire += writer.write_data(chunk, i == len(chunks) - 1)
    reader = ResponseReader()
    reader.expect("GET", False)
    events = read_all(reader, wire, step)
    start = events[0]
    assert start.head.status == status and start.keep_alive
    assert [f for f in start.head.headers.items() if f[0].startswith("x-")] == fields
    body = b"".join(e for e in events if type(e) is bytes)
    assert body == (b"" if status == 204 else b"".join(chunks))
    assert events[-1] is END
