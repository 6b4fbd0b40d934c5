"""Recognises a Tars connection by its first packet's first bytes.

MOSN checks the head of ``iVersion`` after the length (tag 1, type INT1: ``0x10``)
and its value (``tars/matcher.go``). mosn reads only Tars packets (``iVersion`` 1),
so only they match; the length must be one a packet can have (at most the
largest ``max_packet_size`` a config may set).
"""

from __future__ import annotations

from mosn.stream.types import MatchResult
from mosn_tars.config import MAX_MAX_PACKET_SIZE
from mosn_tars.frames import LENGTH, LENGTH_SIZE, MIN_PACKET_SIZE, TARS_VERSION

VERSION_HEAD = 0x10
"""Tag 1, type INT1: ``iVersion`` as every Tars encoder writes a small short."""


def match(data: bytes) -> MatchResult:
    head = bytes(data[:LENGTH_SIZE + 2])
    if len(head) > LENGTH_SIZE and head[LENGTH_SIZE] != VERSION_HEAD:
        return MatchResult.NO_MATCH
    if len(head) > LENGTH_SIZE + 1 and head[LENGTH_SIZE + 1] != TARS_VERSION:
        return MatchResult.NO_MATCH
    if len(head) >= LENGTH_SIZE and not (
            MIN_PACKET_SIZE <= LENGTH.unpack_from(head)[0] <= MAX_MAX_PACKET_SIZE):
        return MatchResult.NO_MATCH
    if len(head) < LENGTH_SIZE + 2:
        return MatchResult.NEED_MORE
    return MatchResult.MATCH
