"""Received header blocks: what RFC 9113 8.1.1 calls malformed is refused by the
mapping (``MalformedFields``), the rest is mapped. Plain functions over h2's header
lists, as h2 hands them over with validation off."""

from __future__ import annotations

import pytest

from mosn_http2 import frames

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a?b=1"),
           (b":authority", b"example.com"), (b"user-agent", b"h2load"), (b"te", b"trailers")]
RESPONSE = [(b":status", b"200"), (b"content-length", b"6")]


def test_valid_request_is_mapped():
    head = frames.request_head(REQUEST, "http")
    assert (head.method, head.path, head.authority, head.scheme) == ("GET", "/a?b=1", "example.com", "http")
    assert head.headers.items() == [("user-agent", "h2load"), ("te", "trailers")]


@pytest.mark.parametrize("block", [
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
])
def test_malformed_request_is_refused(block):
    with pytest.raises(frames.MalformedFields):
        frames.request_head(block, "http")


def test_connect_needs_no_scheme_or_path():
    head = frames.request_head([(b":method", b"CONNECT"), (b":authority", b"a:443")], "http")
    assert (head.method, head.authority) == ("CONNECT", "a:443")


def test_empty_value_is_valid():
    assert frames.request_head([*REQUEST, (b"x-empty", b"")], "http").headers.get("x-empty") == ""


def test_valid_response_is_mapped():
    head = frames.response_head(RESPONSE)
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
        frames.response_head(block)


def test_trailers_with_a_pseudo_header_are_refused():
    assert frames.trailers([(b"grpc-status", b"0")]).items() == [("grpc-status", "0")]
    with pytest.raises(frames.MalformedFields):
        frames.trailers([(b":status", b"200"), (b"grpc-status", b"0")])


def test_host_and_split_cookies():
    block = [f for f in REQUEST if f[0] != b":authority"] + [
        (b"host", b"example.com"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    head = frames.request_head(block, "http")
    assert head.authority == "example.com"
    assert head.headers.items() == [("user-agent", "h2load"), ("te", "trailers"), ("cookie", "a=1; b=2")]
