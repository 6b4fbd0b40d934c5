"""Received header blocks: what RFC 9113 8.1.1 calls malformed is refused, the rest
is mapped. The checks and the mapping as plain functions over h2's header lists (as
h2 hands them over with its validation off), then every block on the wire to the
server codec on each engine: refused with RST_STREAM PROTOCOL_ERROR, the connection
carrying on."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest

from h2_fixtures import ENGINES
from mosn.testing.streams import Recorder
from mosn_http2 import Limits, ServerConnection
from mosn_http2 import frames
from test_http2_codec import MemoryConnection


def request_head(block: list[tuple[bytes, bytes]]) -> frames.RequestHead:
    """The pure-Python engine's way: the fields checked, then mapped."""
    return frames.request_head(frames.checked_fields(block, frames.REQUEST_SLOTS)[0], "http")


def response_head(block: list[tuple[bytes, bytes]]) -> frames.ResponseHead:
    return frames.response_head(frames.checked_fields(block, frames.RESPONSE_SLOTS)[0])

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a?b=1"),
           (b":authority", b"example.com"), (b"user-agent", b"h2load"), (b"te", b"trailers")]
RESPONSE = [(b":status", b"200"), (b"content-length", b"6")]


def test_valid_request_is_mapped():
    head = request_head(REQUEST)
    assert (head.method, head.path, head.authority, head.scheme) == ("GET", "/a?b=1", "example.com", "http")
    assert head.headers.items() == [("user-agent", "h2load"), ("te", "trailers")]


MALFORMED_REQUESTS = [
    [(b":path", b"/"), *REQUEST],  # repeated pseudo-header
    [*REQUEST, (b":custom", b"x")],  # unknown pseudo-header, after regular fields
    [(b":status", b"200"), *REQUEST],  # response pseudo-header in a request
    [f for f in REQUEST if f[0] != b":method"],
    [f for f in REQUEST if f[0] != b":scheme"],
    [(b":path", b"") if f[0] == b":path" else f for f in REQUEST],
    [f for f in REQUEST if f[0] != b":authority"],  # neither :authority nor host
    [*REQUEST, (b"host", b"other.example")],  # host differs from :authority
    [*REQUEST, (b"User-Agent", b"x")],  # upper case
    [*REQUEST, (b"x y", b"x")],
    [*REQUEST, (b"x:y", b"x")],
    [*REQUEST, (b"", b"x")],
    [*REQUEST, (b"x-a", b"a\r\nb: c")],
    [*REQUEST, (b"x-a", b"a\x00")],
    [*REQUEST, (b"x-a", b" a")],
    [*REQUEST, (b"x-a", b"a\t")],
    [*REQUEST, (b"connection", b"close")],
    [*REQUEST, (b"transfer-encoding", b"chunked")],
    [*REQUEST, (b"te", b"gzip")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a"),
     (b":protocol", b"websocket")],  # :protocol without CONNECT
    [(b":method", b"CONNECT"), (b":authority", b"a:443"), (b":path", b"/")],
    [(b":method", b"CONNECT"), (b":authority", b"a:443"), (b":path", b"")],
]


@pytest.mark.parametrize("block", MALFORMED_REQUESTS)
def test_malformed_request_is_refused(block):
    with pytest.raises(frames.MalformedFields):
        request_head(block)


def test_connect_needs_no_scheme_or_path():
    head = request_head([(b":method", b"CONNECT"), (b":authority", b"a:443")])
    assert (head.method, head.authority) == ("CONNECT", "a:443")


def test_empty_value_is_valid():
    assert request_head([*REQUEST, (b"x-empty", b"")]).headers.get("x-empty") == ""


def test_valid_response_is_mapped():
    head = response_head(RESPONSE)
    assert head.status == 200 and head.headers.items() == [("content-length", "6")]


@pytest.mark.parametrize("block", [
    RESPONSE[1:],
    [(b":status", b"20x"), *RESPONSE[1:]],
    [(b":status", b"2000")],
    [(b":status", b"2\xb20")],  # a digit outside ASCII once read as Latin-1
    [*RESPONSE, (b":status", b"204")],
    [(b":status", b"200"), (b":path", b"/")],
    [*RESPONSE, (b"keep-alive", b"timeout=5")],
    [*RESPONSE, (b"x-a", b"a\nb")],
])
def test_malformed_response_is_refused(block):
    with pytest.raises(frames.MalformedFields):
        response_head(block)


def test_trailers_with_a_pseudo_header_are_refused():
    assert frames.trailers(["grpc-status", "0"]).items() == [("grpc-status", "0")]
    with pytest.raises(frames.MalformedFields):
        frames.checked_fields([(b":status", b"200"), (b"grpc-status", b"0")], frames.NO_SLOTS)


def test_host_and_split_cookies():
    block = [f for f in REQUEST if f[0] != b":authority"] + [
        (b"host", b"example.com"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    head = request_head(block)
    assert head.authority == "example.com"
    assert head.headers.items() == [("user-agent", "h2load"), ("te", "trailers"), ("cookie", "a=1; b=2")]


@pytest.mark.parametrize("engine", ENGINES)
def test_malformed_requests_on_the_wire_are_reset(engine):
    """Each malformed block from a client is a stream error (RST_STREAM PROTOCOL_ERROR,
    RFC 9113 8.1.1) that reaches no handler; a valid request after them is served."""
    conn = MemoryConnection()
    handlers: list[Recorder] = []
    ServerConnection(conn, lambda s: handlers.append(Recorder(s)) or handlers[-1],
                     Limits(engine=engine))
    client = h2.connection.H2Connection(h2.config.H2Configuration(
        header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False, validate_inbound_headers=False))
    client.initiate_connection()
    conn.feed(client.data_to_send())
    client.receive_data(conn.take())
    sids = []
    for block in MALFORMED_REQUESTS:
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, block, end_stream=True)
        sids.append(sid)
        conn.feed(client.data_to_send())
    good = client.get_next_available_stream_id()
    client.send_headers(good, REQUEST, end_stream=True)
    conn.feed(client.data_to_send())
    events = client.receive_data(conn.take())
    resets = {e.stream_id: e.error_code for e in events if isinstance(e, h2.events.StreamReset)}
    assert resets == {sid: 1 for sid in sids}  # PROTOCOL_ERROR each
    assert [h.stream.id for h in handlers] == [good] and not conn.closed
