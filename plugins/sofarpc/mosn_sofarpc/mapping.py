"""Statuses: the proxy's outcomes (HTTP-like status + Envoy response flags) as bolt
response statuses, and bolt statuses back as HTTP-like ones.

Both directions follow MOSN: ``boltProtocol.Mapping`` (bolt/protocol.go) for the first,
``BoltStatusMapping`` (bolt/mapping.go) for the second. MOSN's own proxy codes are
``mosn.io/api``'s: 404 router unavailable, 502 no healthy upstream (MOSN also answers
an upstream reset or a failed connection with it: ``types.ConvertReasonToCode``), 503
upstream overflow, 504 timeout, 403 permission denied. This proxy says 503 plus a flag
where Envoy does, so the flags tell overflow from no healthy host.
"""

from __future__ import annotations

from mosn_sofarpc.frames import ResponseStatus

OVERFLOW_FLAG = "UO"
"""Envoy's upstream overflow flag (circuit breaker or pool limit), MOSN's 503."""
OVERLOAD_FLAG = "OM"
"""Envoy's overload manager flag: a request answered as its connection was shed."""
BUSY_FLAGS = frozenset({OVERFLOW_FLAG, OVERLOAD_FLAG})
"""A 503 with one of these means the proxy is too busy, not that no host is there."""

_BY_HTTP_STATUS: dict[int, ResponseStatus] = {
    200: ResponseStatus.SUCCESS,
    400: ResponseStatus.CODEC_EXCEPTION,        # a frame that cannot be decoded
    403: ResponseStatus.SERVER_EXCEPTION,       # bolt has no permission-denied status
    404: ResponseStatus.NO_PROCESSOR,           # no route
    429: ResponseStatus.SERVER_THREADPOOL_BUSY,  # a rate limit: the server-busy status
    509: ResponseStatus.SERVER_THREADPOOL_BUSY,  # MOSN's limit exceeded (flowControlFilter)
    502: ResponseStatus.NO_PROCESSOR,           # upstream reset, connection lost or failed
    503: ResponseStatus.NO_PROCESSOR,           # no healthy upstream, no cluster (UH, NC, UF)
    504: ResponseStatus.TIMEOUT,
}

_TO_HTTP_STATUS: dict[int, int] = {
    ResponseStatus.SUCCESS: 200,
    ResponseStatus.SERVER_THREADPOOL_BUSY: 503,
    ResponseStatus.TIMEOUT: 504,
    ResponseStatus.CONNECTION_CLOSED: 502,
}
OTHER_HTTP_STATUS = 500
"""Every other bolt status, as MOSN reads it."""


def error_status(http_status: int, flags: tuple[str, ...] = ()) -> int:
    """The bolt status a failure the proxy answered itself is replied with."""
    if http_status == 503 and not BUSY_FLAGS.isdisjoint(flags):
        return ResponseStatus.SERVER_THREADPOOL_BUSY
    return _BY_HTTP_STATUS.get(http_status, ResponseStatus.UNKNOWN)


def http_status(status: int) -> int:
    """The HTTP-like status a bolt response status means to the proxy."""
    return _TO_HTTP_STATUS.get(status, OTHER_HTTP_STATUS)
