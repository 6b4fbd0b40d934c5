"""The sans-IO core on its own: the state table, the readers (bytes in, handler calls
out, recorded by a handler that checks each against the state table) and the writers
(messages in, bytes out), with no connection, loop or socket."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mosn.stream.types import Headers, RequestHead, ResponseHead
from mosn_http1 import Limits
from mosn_http1.handlers import BODY, NO_BODY, TUNNEL
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


END = "END"
"""What the recorder notes for ``on_end`` without trailers."""


class Recorder:
    """A reader's handler (both roles) that notes each call, comparable across
    readers, and checks its order against the state table: a reader that called it
    out of order (data before a head, a head after a head that ended its message
    missing its end) fails with ``StateError``."""

    def __init__(self) -> None:
        self.calls: list = []
        self.heads: list = []
        self.ends: list[bool] = []
        """``end_stream`` of each ``on_body``."""
        self.role = CLIENT
        self.state = DONE

    def take(self) -> list:
        """The calls noted since the last ``take``."""
        calls, self.calls = self.calls, []
        return calls

    def _head(self, role: int, head, end_stream: bool, event: int) -> None:
        assert self.state >= DONE, "a head before the end of the message before it"
        self.role = role
        self.state = advance(role, IDLE, HEAD_END if end_stream else event)
        self.heads.append(head)

    def on_request(self, head: RequestHead, end_stream: bool, keep_alive: bool,
                   upgrade: bool, expect_continue: bool) -> None:
        self._head(CLIENT, head, end_stream, HEAD)
        self.calls.append(("request", head.method, head.path, head.authority,
                           head.version, head.headers.items(), keep_alive, upgrade,
                           expect_continue, end_stream))

    def on_response(self, head: ResponseHead, end_stream: bool, keep_alive: bool,
                    body: int, close_delimited: bool) -> None:
        self._head(SERVER, head, end_stream, SWITCH if body == TUNNEL else HEAD)
        self.calls.append(("response", head.status, head.reason, head.headers.items(),
                           keep_alive, body, close_delimited, end_stream))

    def on_body(self, data: bytes, end_stream: bool) -> None:
        self.state = advance(self.role, self.state, DATA)
        self.ends.append(end_stream)
        calls = self.calls
        if calls and type(calls[-1]) is bytes:
            calls[-1] += data  # pieces of one body, joined: splits compare equal
        else:
            calls.append(data)
        if end_stream:  # noted as the end it also is
            self.state = advance(self.role, self.state, END_INPUT)
            calls.append(END)

    def on_end(self, trailers: Headers | None) -> None:
        self.state = advance(self.role, self.state, END_INPUT)
        self.calls.append(END if trailers is None else ("trailers", trailers.items()))

    def on_upgraded(self, rest: bytes) -> None:
        if self.role == CLIENT:
            self.state = advance(CLIENT, self.state, SWITCH)
        assert self.state == SWITCHED_PROTOCOL
        self.calls.append(("upgraded", rest))

    def on_error(self, status: int, reason: object) -> None:
        self.calls.append(("error", status))


def read_all(reader, rec: Recorder, wire: bytes, step: int | None = None) -> list:
    """The calls of ``wire`` fed whole, or ``step`` bytes at a time."""
    pieces = [wire] if step is None else [wire[i:i + step] for i in range(0, len(wire), step)]
    calls: list = []
    for piece in pieces:
        reader.feed(piece)
        for call in rec.take():
            if type(call) is bytes and calls and type(calls[-1]) is bytes:
                calls[-1] += call
            else:
                calls.append(call)
    return calls


def one_call(calls: list) -> list:
    """``calls`` with a head held to the end of a read and its end in the next read
    (what a split can do to a message with no body bytes) written as the one call
    the whole input gives."""
    out: list = []
    for call in calls:
        if call == END and out and type(out[-1]) is tuple and out[-1][0] in (
                "request", "response") and out[-1][-1] is False:
            out[-1] = out[-1][:-1] + (True,)
        else:
            out.append(call)
    return out


def request_reader(limits: Limits = Limits()) -> tuple[RequestReader, Recorder]:
    rec = Recorder()
    return RequestReader(rec, limits), rec


def response_reader(method: str, upgrade: bool = False) -> tuple[ResponseReader, Recorder]:
    rec = Recorder()
    reader = ResponseReader(rec)
    reader.expect(method, upgrade)
    return reader, rec


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
    reader, rec = request_reader()
    assert read_all(reader, rec, PIPELINE) == [
        ("request", "POST", "/a?x=1", "h", "1.1",
         [("x-a", "1"), ("transfer-encoding", "chunked")], True, False, False, False),
        b"abc", ("trailers", [("x-t", "t")]),
        ("request", "GET", "/b", "h", "1.1", [("content-length", "2")], True, False, True,
         False),
        b"hi", END,
        # A head that is the whole request: one call, no end after it.
        ("request", "GET", "/c", "other:8080", "1.0", [], False, False, False, True),
    ]


def test_every_split_of_the_input_gives_the_same_calls():
    reader, rec = request_reader()
    whole = read_all(reader, rec, PIPELINE)
    for step in range(1, len(PIPELINE)):
        reader, rec = request_reader()
        assert one_call(read_all(reader, rec, PIPELINE, step)) == whole, step


def test_a_head_is_held_to_the_end_of_its_read_then_the_body_follows():
    reader, rec = request_reader()
    wire = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n"
    assert [c[-1] for c in read_all(reader, rec, wire)] == [False]  # end_stream
    assert read_all(reader, rec, b"ok") == [b"ok", END]
    assert rec.ends == [True]  # the last body bytes carry the end: no on_end
    reader, rec = request_reader()
    calls = read_all(reader, rec, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    assert len(calls) == 1 and calls[0][-1] is True
    reader, rec = request_reader()
    calls = read_all(reader, rec, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok")
    assert calls[1:] == [b"ok", END] and rec.ends == [True]  # head, then body and end


def test_the_reader_stops_after_a_request_that_closes_the_connection():
    reader, rec = request_reader()
    wire = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    calls = read_all(reader, rec, wire)
    assert [(c[0], c[-1]) for c in calls] == [("request", True)]
    reader.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert reader.stopped and rec.take() == []


@pytest.mark.parametrize("wire,status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                    # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),              # two Hosts
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: 1\r\n" * 9 + b"\r\n", 431),  # count
    (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 431),                  # line
    (b"\x00garbage\r\n\r\n", 400),
    # A head held back when its body breaks the protocol is dropped with it.
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
])
def test_what_breaks_the_protocol_is_an_error_with_the_status_to_answer(wire, status):
    reader, rec = request_reader(Limits(max_request_head_bytes=256, max_headers_count=8))
    assert read_all(reader, rec, wire) == [("error", status)]
    assert reader.stopped


def test_a_head_over_the_limit_in_pieces_is_refused_before_it_completes():
    reader, rec = request_reader(Limits(max_request_head_bytes=256))
    assert read_all(reader, rec, b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ") == []
    calls: list = []
    for _ in range(40):
        calls += read_all(reader, rec, b"aaaaaaaaaa")
        if calls:
            break
    assert calls == [("error", 431)]


def test_an_upgrade_request_stops_the_reader_with_what_followed():
    reader, rec = request_reader()
    wire = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    calls = read_all(reader, rec, wire + b"\x81\x00raw")
    # Never held back (what follows it is the tunnel's): the head, its end, the rest.
    assert calls[0][0] == "request" and calls[0][7] is True and calls[0][-1] is False
    assert calls[1:] == [END, ("upgraded", b"\x81\x00raw")]
    assert (reader.target, reader.host) == ("/ws", "h")
    reader.feed(b"more")
    assert rec.take() == []


# -- the response reader ------------------------------------------------------------


def test_responses_are_read_only_as_answers_to_requests():
    rec = Recorder()
    reader = ResponseReader(rec)
    assert read_all(reader, rec, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == [
        ("error", 502)]


def test_a_response_after_interim_heads_with_a_chunked_body_and_trailers():
    wire = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\nX-T: 1\r\n\r\n")
    reader, rec = response_reader("POST")
    whole = read_all(reader, rec, wire)
    assert whole == [("response", 200, "OK", [("transfer-encoding", "chunked")], True, BODY,
                      False, False), b"ok", ("trailers", [("x-t", "1")])]
    for step in range(1, len(wire)):
        reader, rec = response_reader("POST")
        assert read_all(reader, rec, wire, step) == whole, step


def test_no_body_after_head_204_and_304_and_a_body_delimited_by_close():
    reader, rec = response_reader("HEAD")
    calls = read_all(reader, rec, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    assert [(c[5], c[-1]) for c in calls] == [(NO_BODY, True)]  # one call
    reader.expect("GET", False)
    calls = read_all(reader, rec, b"HTTP/1.1 304 x\r\n\r\nHTTP/1.1 200 OK\r\n\r\nbody")
    assert (calls[0][5], calls[0][-1]) == (NO_BODY, True)
    assert calls[1:] == [("error", 502)]  # a second response to one request
    assert read_all(reader, rec, b"") == []
    reader, rec = response_reader("GET")
    calls = read_all(reader, rec, b"HTTP/1.1 200 OK\r\n\r\nbody")
    assert calls == [("response", 200, "OK", [], False, BODY, True, False), b"body"]
    reader, rec = response_reader("GET")
    calls = read_all(reader, rec, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert calls == [("response", 200, "OK", [("content-length", "0")], True, BODY, False,
                      True)]


def test_a_switch_nobody_asked_for_is_an_error_and_an_asked_one_a_tunnel():
    reader, rec = response_reader("GET")
    assert read_all(reader, rec, b"HTTP/1.1 101 Switching\r\n\r\n") == [("error", 502)]
    reader, rec = response_reader("GET", True)
    calls = read_all(
        reader, rec, b"HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nraw")
    assert calls[0][5] == TUNNEL and calls[-1] == ("upgraded", b"raw")


def test_the_recorder_refuses_calls_out_of_the_tables_order():
    rec = Recorder()
    with pytest.raises(StateError):
        rec.on_body(b"x", False)  # data with no head
    rec.on_request(RequestHead("GET", "/", "h", "http", Headers()), True, True, False, False)
    with pytest.raises(StateError):
        rec.on_end(None)  # a head that ended its message has no end after it


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
    reader, rec = request_reader()
    calls = read_all(reader, rec, wire, step)
    head = rec.heads[0]
    assert (head.method, head.path, head.authority) == (method, path, "up")
    sent = [f for f in head.headers.items() if f[0].startswith("x-")]
    assert sent == fields
    body = b"".join(c for c in calls if type(c) is bytes)
    assert body == b"".join(chunks)
    last = calls[-1]
    if chunks and trailers:
        assert last == ("trailers", trailers)
    else:
        assert last == END or (not chunks and last[-1] is True)  # or the head alone
    assert rec.state == DONE


@SETTINGS
@given(st.sampled_from([200, 201, 204, 404, 503]), FIELDS, CHUNKS,
       st.integers(min_value=1, max_value=17))
def test_what_the_response_writer_writes_the_response_reader_reads_back(
        status, fields, chunks, step):
    writer = ResponseWriter("GET", False, True, False)
    wire = writer.write_head(ResponseHead(status, Headers(fields)), not chunks, False)
    for i, chunk in enumerate(chunks):
        wire += writer.write_data(chunk, i == len(chunks) - 1)
    reader, rec = response_reader("GET")
    calls = read_all(reader, rec, wire, step)
    start = rec.heads[0]
    assert start.status == status and calls[0][4]  # keep-alive
    assert [f for f in start.headers.items() if f[0].startswith("x-")] == fields
    body = b"".join(c for c in calls if type(c) is bytes)
    assert body == (b"" if status == 204 else b"".join(chunks))
    assert calls[-1] == END or calls[-1][-1] is True  # or the head alone
    assert rec.state == DONE
