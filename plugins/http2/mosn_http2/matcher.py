"""Recognises HTTP/2 with prior knowledge by the client's connection preface
(RFC 9113 3.4): ``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``."""

from __future__ import annotations

from mosn.stream.types import MatchResult

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def match(data: bytes) -> MatchResult:
    if data.startswith(PREFACE):
        return MatchResult.MATCH
    if PREFACE.startswith(data):
        return MatchResult.NEED_MORE
    return MatchResult.NO_MATCH
