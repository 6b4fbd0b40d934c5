"""HTTP/2 numbers the codecs and both engines share: the engines' event kinds (see
``engine``), error codes and setting ids, and the limits built into the protocol."""

from __future__ import annotations

from typing import Any, Callable

REQUEST, RESPONSE, TRAILERS, DATA, RESET, CLOSED, GOAWAY, SETTINGS, PING_ACK, DRAINED = range(1, 11)
EVENT_KINDS = 11
"""Length of a handler table: event kinds are 1-10, index 0 unused."""

Handler = Callable[[int, bool, Any], None]

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
"""HTTP/2 error codes (RFC 9113 7)."""

SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8
"""The settings the codecs read from the peer (RFC 9113 6.5.2, RFC 8441 3)."""

UNLIMITED_STREAMS = 2**31 - 1
"""No MAX_CONCURRENT_STREAMS from the peer: no limit (RFC 9113 6.5.2)."""
ASSUMED_PEER_MAX_STREAMS = 100
"""Streams opened upstream before the peer's SETTINGS says how many it takes: the
least a peer should allow (RFC 9113 6.5.2), so a burst is not refused."""
MAX_CONTINUATIONS = 8
"""CONTINUATION frames accepted after one HEADERS before the connection is closed
(GOAWAY ENHANCE_YOUR_CALM): nghttp2's own bound since the CONTINUATION flood
(CVE-2024-28182); nine frames of 16 KiB hold more than the largest header list
accepted, so no real peer needs more."""

