"""Statuses and resets. HTTP/2 carries HTTP statuses as they are (``:status``), so the
proxy's HTTP-like statuses need no translation; what needs one is a stream reset:
mosn's :class:`StreamResetReason` -> the RST_STREAM error code (RFC 9113 7). A reset
received is ``REMOTE_RESET`` whatever its code."""

from __future__ import annotations

from h2.errors import ErrorCodes

from mosn.stream.types import StreamResetReason

RESET_CODES: dict[StreamResetReason, int] = {
    StreamResetReason.LOCAL_RESET: ErrorCodes.CANCEL,
    StreamResetReason.REMOTE_RESET: ErrorCodes.CANCEL,
    StreamResetReason.CONNECTION_FAILURE: ErrorCodes.REFUSED_STREAM,
    StreamResetReason.CONNECTION_TERMINATION: ErrorCodes.INTERNAL_ERROR,
    StreamResetReason.PROTOCOL_ERROR: ErrorCodes.PROTOCOL_ERROR,
    StreamResetReason.OVERFLOW: ErrorCodes.REFUSED_STREAM,
}
"""The RST_STREAM code a reset is sent with. A stream the other side abandoned is
cancelled (CANCEL, which gRPC clients read as CANCELLED); one that never reached an
upstream is refused (REFUSED_STREAM: not processed, safe to retry, RFC 9113 8.7)."""


def reset_code(reason: StreamResetReason) -> int:
    return RESET_CODES.get(reason, ErrorCodes.INTERNAL_ERROR)
