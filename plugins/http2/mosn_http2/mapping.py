"""Statuses and resets. HTTP/2 carries HTTP statuses as they are (``:status``), so the
proxy's HTTP-like statuses need no translation; what needs one is a stream reset:
mosn's :class:`StreamResetReason` -> the RST_STREAM error code (RFC 9113 7). A reset
received is ``REMOTE_RESET``, or ``REFUSED_STREAM`` for that code."""

from __future__ import annotations

from mosn.stream.types import StreamResetReason
from mosn_http2.wire import CANCEL, INTERNAL_ERROR, PROTOCOL_ERROR, REFUSED_STREAM

RESET_CODES: dict[StreamResetReason, int] = {
    StreamResetReason.LOCAL_RESET: CANCEL,
    StreamResetReason.REMOTE_RESET: CANCEL,
    StreamResetReason.CONNECTION_FAILURE: REFUSED_STREAM,
    StreamResetReason.CONNECTION_TERMINATION: INTERNAL_ERROR,
    StreamResetReason.PROTOCOL_ERROR: PROTOCOL_ERROR,
    StreamResetReason.OVERFLOW: REFUSED_STREAM,
    StreamResetReason.REFUSED_STREAM: REFUSED_STREAM,
    StreamResetReason.CLOSED_BEFORE_RESPONSE: REFUSED_STREAM,
}
"""The RST_STREAM code a reset is sent with. A stream the other side abandoned is
cancelled (CANCEL, which gRPC clients read as CANCELLED); one that never reached an
upstream is refused (REFUSED_STREAM: not processed, safe to retry, RFC 9113 8.7)."""


def reset_code(reason: StreamResetReason) -> int:
    return RESET_CODES.get(reason, INTERNAL_ERROR)


def received_reset(code: int) -> StreamResetReason:
    """What a stream reset by the upstream (RST_STREAM ``code``) means to the proxy:
    REFUSED_STREAM, that the request was never processed (RFC 9113 8.7)."""
    return StreamResetReason.REFUSED_STREAM if code == REFUSED_STREAM else StreamResetReason.REMOTE_RESET
