"""Statuses: the proxy's outcomes as ``TApplicationException`` types (mosn's status
numbers: 100 + the type, :mod:`mosn_dubbothrift.frames`), and back as HTTP-like
statuses (for stats, retries and outlier detection).

MOSN's table (``dubboMosnStatusMap``, ``dubbothrift/types.go``): a frame it cannot
read ``PROTOCOL_ERROR``, no route ``UNKNOWN_METHOD``, a filter's refusal, an internal
error and a timeout ``INTERNAL_ERROR``, no healthy upstream and overflow ``UNKNOWN``;
the exception's message is ``"<code>|<reason>"``. Read back, ``UNKNOWN`` is also what
Dubbo writes for any exception of the service itself, so it means 500.
"""

from __future__ import annotations

from mosn_dubbothrift.frames import EXCEPTION_STATUS_BASE, REPLY_STATUS, ApplicationError

_BY_HTTP_STATUS: dict[int, ApplicationError] = {
    400: ApplicationError.PROTOCOL_ERROR,
    404: ApplicationError.UNKNOWN_METHOD,
    413: ApplicationError.PROTOCOL_ERROR,
    502: ApplicationError.UNKNOWN,
    503: ApplicationError.UNKNOWN,
}
OTHER_ERROR = ApplicationError.INTERNAL_ERROR
"""403, 500, 504 and anything else (MOSN's choice for a timeout too)."""

_CODES = {ApplicationError.PROTOCOL_ERROR: 400, ApplicationError.UNKNOWN_METHOD: 404,
          ApplicationError.UNKNOWN: 502, ApplicationError.INTERNAL_ERROR: 500}
"""The code in front of the message of an exception mosn writes, as MOSN writes it."""

_TO_HTTP_STATUS: dict[int, int] = {
    REPLY_STATUS: 200,
    EXCEPTION_STATUS_BASE + ApplicationError.UNKNOWN_METHOD: 404,
    EXCEPTION_STATUS_BASE + ApplicationError.PROTOCOL_ERROR: 400,
    EXCEPTION_STATUS_BASE + ApplicationError.INVALID_MESSAGE_TYPE: 400,
    EXCEPTION_STATUS_BASE + ApplicationError.INVALID_PROTOCOL: 400,
}
OTHER_HTTP_STATUS = 500


def error_status(http_status: int, flags: tuple[str, ...] = ()) -> int:
    """The status (100 + exception type) of a failure the proxy answered itself."""
    return EXCEPTION_STATUS_BASE + _BY_HTTP_STATUS.get(http_status, OTHER_ERROR)


def code(status: int) -> int:
    """The code that starts the message of an exception with ``status``."""
    return _CODES.get(status - EXCEPTION_STATUS_BASE, 500)


def http_status(status: int) -> int:
    """The HTTP-like status a response status means to the proxy."""
    return _TO_HTTP_STATUS.get(status, OTHER_HTTP_STATUS)
