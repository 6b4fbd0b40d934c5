"""gRPC over HTTP/2 as the proxy sees it (the gRPC spec's PROTOCOL-HTTP2.md).

gRPC needs little of its own from the proxy: its calls are HTTP/2 streams routed on
``:path`` (``/package.Service/Method``) and headers, its status travels in trailers,
and both pass through unchanged. What is gRPC's own here: the proxy's failures to a
gRPC call are answered as gRPC errors (a *trailers-only* response: HTTP 200,
``grpc-status`` and ``grpc-message``) rather than bare HTTP statuses, which gRPC
clients could only guess at; and ``grpc-timeout`` bounds the proxy's wait.
"""

from __future__ import annotations

import urllib.parse

from mosn.stream.types import Headers

CONTENT_TYPE = "application/grpc"
"""A request is gRPC when its content-type is this or starts with ``application/grpc+``
(``application/grpc+proto``, ``+json`` ...)."""

OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

HTTP_TO_GRPC: dict[int, int] = {
    400: INTERNAL,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}
"""HTTP status -> gRPC status, gRPC's http-grpc-status-mapping.md as Envoy applies it
(``Grpc::Utility::httpToGrpcStatus``); anything else is UNKNOWN. The proxy passes a
more exact status where it knows the cause (its timeout: DEADLINE_EXCEEDED; a body
over the limit: RESOURCE_EXHAUSTED)."""

TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
"""grpc-timeout's units: hours, minutes, seconds, milli-, micro-, nanoseconds."""
MAX_TIMEOUT_DIGITS = 8
"""grpc-timeout's value is at most 8 ASCII digits (PROTOCOL-HTTP2.md, TimeoutValue)."""
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25)
"""Printable ASCII but ``%`` goes as it is in grpc-message; the rest percent-encoded."""


def is_grpc(headers: Headers) -> bool:
    content_type = headers.get("content-type")
    return content_type is not None and (
        content_type == CONTENT_TYPE or content_type.startswith(CONTENT_TYPE + "+")
        or content_type.startswith(CONTENT_TYPE + ";"))


def grpc_status(http_status: int) -> int:
    return HTTP_TO_GRPC.get(http_status, UNKNOWN)


def parse_timeout(value: str) -> float | None:
    """Seconds of a ``grpc-timeout`` value (``100m``, ``5S`` ...); None when malformed."""
    digits, unit = value[:-1], value[-1:]
    if not digits or len(digits) > MAX_TIMEOUT_DIGITS or not digits.isdigit() \
            or unit not in TIMEOUT_UNITS:
        return None
    return int(digits) * TIMEOUT_UNITS[unit]


def encode_message(message: str) -> str:
    """grpc-message is percent-encoded UTF-8 (PROTOCOL-HTTP2.md, Status-Message)."""
    return urllib.parse.quote(message, safe=_MESSAGE_SAFE)


def trailers_only(status: int, message: str) -> list[tuple[str, str]]:
    """The fields of a trailers-only error response (sent as one HEADERS frame that
    ends the stream, with ``:status 200``)."""
    return [("content-type", CONTENT_TYPE), ("grpc-status", str(status)),
            ("grpc-message", encode_message(message))]
