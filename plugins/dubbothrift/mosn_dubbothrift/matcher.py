"""Recognises a Dubbo-Thrift connection: Dubbo's thrift magic ``0xdabc`` after the
four-byte frame size (MOSN's ``dubbothrift/matcher.go``), and a frame size a frame can
have."""

from __future__ import annotations

from mosn.stream.types import MatchResult
from mosn_dubbothrift.config import MAX_MAX_FRAME_SIZE
from mosn_dubbothrift.frames import FRAME_SIZE, FRAME_SIZE_LEN, MAGIC, MIN_MESSAGE_SIZE


def match(data: bytes) -> MatchResult:
    head = bytes(data[:FRAME_SIZE_LEN + 2])
    if len(head) >= FRAME_SIZE_LEN and not (
            MIN_MESSAGE_SIZE <= FRAME_SIZE.unpack_from(head)[0] <= MAX_MAX_FRAME_SIZE):
        return MatchResult.NO_MATCH
    if not MAGIC.startswith(head[FRAME_SIZE_LEN:]):
        return MatchResult.NO_MATCH
    if len(head) < FRAME_SIZE_LEN + 2:
        return MatchResult.NEED_MORE
    return MatchResult.MATCH
