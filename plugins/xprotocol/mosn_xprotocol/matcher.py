"""Recognises a declared protocol's connection by its first bytes (for
``downstream_protocol: Auto``): the magic, then a kind a client may open with.
A protocol declared without a magic is never matched: it must be named."""

from __future__ import annotations

from mosn.stream.types import MatchResult
from mosn_xprotocol.frames import Layout


def match(layout: Layout, data: bytes) -> MatchResult:
    magic = layout.magic
    if not magic:
        return MatchResult.NO_MATCH
    start, end = layout.magic_offset, layout.magic_offset + len(magic)
    seen = bytes(data[start:end])
    if seen != magic[:len(seen)]:
        return MatchResult.NO_MATCH
    kind = layout.kind
    if len(data) < max(end, kind.end):
        return MatchResult.NEED_MORE
    if kind.read(data) & layout.kind_mask not in layout.opening_kinds:
        return MatchResult.NO_MATCH
    return MatchResult.MATCH
