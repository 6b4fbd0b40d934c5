"""Recognises a Dubbo connection by its first frame's first bytes.

MOSN checks the magic once 16 bytes are there (``dubbo/matcher.go``). The first
frame a client sends is a request or a heartbeat, so the flag's request bit is
checked too, and a verdict comes as soon as the bytes allow: 0xda alone may still be
Dubbo, anything else is not.
"""

from __future__ import annotations

from mosn.stream.types import MatchResult
from mosn_dubbo.frames import FLAG_REQUEST, MAGIC


def match(data: bytes) -> MatchResult:
    head = bytes(data[:3])
    if not MAGIC.startswith(head[:2]):
        return MatchResult.NO_MATCH
    if len(head) < 3:
        return MatchResult.NEED_MORE
    return MatchResult.MATCH if head[2] & FLAG_REQUEST else MatchResult.NO_MATCH
