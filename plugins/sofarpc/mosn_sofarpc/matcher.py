"""Recognises a bolt connection by its first frame's first bytes.

MOSN matches on the first byte alone (``bolt/matcher.go``). A client's first frame is
always a request, a oneway request or a heartbeat, so the type and command code bytes
are checked too: that keeps bolt, bolt v2 and HTTP apart on one ``Auto`` listener and
turns away stray bytes that merely start with 0x01 or 0x02.
"""

from __future__ import annotations

from itertools import product

from mosn.stream.types import MatchResult
from mosn_sofarpc.frames import (
    PROTOCOL_CODE_V1,
    PROTOCOL_CODE_V2,
    V2_VERSIONS,
    CmdCode,
    CmdType,
)

_OPENING_TYPES = (CmdType.REQUEST, CmdType.ONEWAY)
_OPENING_CODES = (CmdCode.HEARTBEAT, CmdCode.REQUEST)

V1_PREFIXES = tuple(
    bytes([PROTOCOL_CODE_V1, t]) + code.to_bytes(2, "big")
    for t, code in product(_OPENING_TYPES, _OPENING_CODES)
)
"""proto, type, cmdcode of every frame a v1 client can open with."""
V2_PREFIXES = tuple(
    bytes([PROTOCOL_CODE_V2, ver1, t]) + code.to_bytes(2, "big")
    for ver1, t, code in product(V2_VERSIONS, _OPENING_TYPES, _OPENING_CODES)
)
"""proto, ver1, type, cmdcode of every frame a v2 client can open with."""


def _match(data: bytes, prefixes: tuple[bytes, ...]) -> MatchResult:
    head = bytes(data[:len(prefixes[0])])
    if head in prefixes:
        return MatchResult.MATCH
    if len(head) < len(prefixes[0]) and any(p.startswith(head) for p in prefixes):
        return MatchResult.NEED_MORE
    return MatchResult.NO_MATCH


def match_v1(data: bytes) -> MatchResult:
    return _match(data, V1_PREFIXES)


def match_v2(data: bytes) -> MatchResult:
    return _match(data, V2_PREFIXES)
