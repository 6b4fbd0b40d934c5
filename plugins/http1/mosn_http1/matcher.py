"""Recognises HTTP/1 by the request's first bytes: a method token and a space
(RFC 9112 3). HTTP/2's preface starts ``PRI * HTTP/2.0`` and is not matched."""

from __future__ import annotations

from mosn.stream.types import MatchResult

METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH",
           b"CONNECT", b"TRACE")
"""Methods a client may open an HTTP/1 connection with (RFC 9110 9.3, RFC 5789)."""

_TOKENS = tuple(m + b" " for m in METHODS)
_LONGEST = max(map(len, _TOKENS))


def match(data: bytes) -> MatchResult:
    if data.startswith(_TOKENS):
        return MatchResult.MATCH
    if len(data) < _LONGEST and any(t.startswith(data) for t in _TOKENS):
        return MatchResult.NEED_MORE
    return MatchResult.NO_MATCH
