"""Statuses: the proxy's outcomes (HTTP-like status + Envoy response flags) as Dubbo
response statuses, and Dubbo statuses back as HTTP-like ones (for stats, retries and
outlier detection).

MOSN's table (``dubboMosnStatusMap``, dubbo/types.go) maps no route and no healthy
upstream to SERVICE_NOT_FOUND, overflow to BAD_REQUEST and timeout to CLIENT_TIMEOUT.
This follows it for the first two and departs where Dubbo's own meaning is plainer:
an overflow is SERVER_THREADPOOL_EXHAUSTED (what a Dubbo server answers when it has no
thread for a request; BAD_REQUEST would blame the caller), a timeout is SERVER_TIMEOUT
(the proxy is the caller's server; Dubbo clients raise a TimeoutException for both),
an upstream connection lost mid-request is SERVER_ERROR, and a frame mosn cannot read
is BAD_REQUEST (what a Dubbo server answers a request it cannot decode:
``HeaderExchangeHandler`` for a broken request).
"""

from __future__ import annotations

from mosn_dubbo.frames import Status

OVERFLOW_FLAG = "UO"
"""Envoy's upstream overflow flag (circuit breaker or pool limit), MOSN's 503."""
OVERLOAD_FLAG = "OM"
"""Envoy's overload manager flag: a request answered as its connection was shed."""
BUSY_FLAGS = frozenset({OVERFLOW_FLAG, OVERLOAD_FLAG})
"""A 503 with one of these means the proxy is too busy, not that no host is there."""

_BY_HTTP_STATUS: dict[int, Status] = {
    200: Status.OK,
    400: Status.BAD_REQUEST,            # a frame or body mosn cannot read
    403: Status.SERVER_ERROR,           # refused by a filter (MOSN's permission denied)
    404: Status.SERVICE_NOT_FOUND,      # no route
    413: Status.BAD_REQUEST,
    429: Status.SERVER_THREADPOOL_EXHAUSTED,  # a rate limit
    502: Status.SERVER_ERROR,           # the upstream connection was lost or reset
    503: Status.SERVICE_NOT_FOUND,      # no healthy upstream, no cluster, connect failure
    504: Status.SERVER_TIMEOUT,
    509: Status.SERVER_THREADPOOL_EXHAUSTED,  # MOSN's limit exceeded (flowControlFilter)
}
OTHER_STATUS = Status.SERVICE_ERROR
"""Any other proxy failure (MOSN's default for a code it does not know)."""

_TO_HTTP_STATUS: dict[int, int] = {
    Status.OK: 200,
    Status.BAD_REQUEST: 400,
    Status.SERVICE_NOT_FOUND: 404,
    Status.BAD_RESPONSE: 502,
    Status.SERVER_THREADPOOL_EXHAUSTED: 503,
    Status.CLIENT_TIMEOUT: 504,
    Status.SERVER_TIMEOUT: 504,
}
OTHER_HTTP_STATUS = 500
"""SERVICE_ERROR, SERVER_ERROR, CLIENT_ERROR and unknown statuses."""

STATUS_TEXT: dict[int, str] = {s: s.name.lower().replace("_", " ") for s in Status}


def error_status(http_status: int, flags: tuple[str, ...] = ()) -> int:
    """The Dubbo status a failure the proxy answered itself is replied with."""
    if http_status == 503 and not BUSY_FLAGS.isdisjoint(flags):
        return Status.SERVER_THREADPOOL_EXHAUSTED
    return _BY_HTTP_STATUS.get(http_status, OTHER_STATUS)


def http_status(status: int) -> int:
    """The HTTP-like status a Dubbo response status means to the proxy."""
    return _TO_HTTP_STATUS.get(status, OTHER_HTTP_STATUS)
