"""The matcher ``downstream_protocol: Auto`` uses."""

from __future__ import annotations

import pytest

from mosn.stream.types import MatchResult
from mosn_http1 import match


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"POST ", b"PUT /x", b"DELETE /", b"HEAD /", b"OPTIONS *",
    b"PATCH /", b"CONNECT a:1", b"TRACE /",
])
def test_methods_match(data):
    assert match(data) is MatchResult.MATCH


@pytest.mark.parametrize("data", [b"", b"G", b"GE", b"GET", b"OPTIO", b"CONNECT", b"P"])
def test_prefixes_need_more(data):
    assert match(data) is MatchResult.NEED_MORE


@pytest.mark.parametrize("data", [
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2's preface
    b"PR", b"get / HTTP/1.1", b"GETX /", b"\x16\x03\x01", b"\x01\x01\x00\x01",
    b"\xda\xbb", b"GET\t/",
])
def test_others_do_not_match(data):
    assert match(data) is MatchResult.NO_MATCH
