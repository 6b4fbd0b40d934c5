"""Statuses: the proxy's outcomes as Tars return codes (``iRet``), and return codes
back as HTTP-like statuses (for stats, retries and outlier detection).

MOSN's Tars codec answers nothing itself (its hijack is "not support"); these are the
codes a Tars server or client would report for the same failure (``BaseF.tars``).
"""

from __future__ import annotations

from mosn_tars.frames import Ret

BUSY_FLAGS = frozenset({"UO", "OM"})
"""Envoy's overflow and overload manager flags: a 503 meaning "too busy"."""

_BY_HTTP_STATUS: dict[int, Ret] = {
    200: Ret.SUCCESS,
    400: Ret.SERVER_DECODE_ERROR,    # a packet mosn cannot read
    404: Ret.NO_SERVANT,             # no route: no such servant here
    413: Ret.SERVER_DECODE_ERROR,
    429: Ret.SERVER_OVERLOAD,        # a rate limit
    502: Ret.PROXY_CONNECT_ERROR,    # the upstream connection was lost or reset
    503: Ret.ADAPTER_NULL,           # no healthy host ("the client routing is empty")
    504: Ret.INVOKE_TIMEOUT,
}
OTHER_RET = Ret.SERVER_UNKNOWN_ERROR
"""Any other failure, a filter's refusal (403) among them."""

_TO_HTTP_STATUS: dict[int, int] = {
    Ret.SUCCESS: 200,
    Ret.SERVER_DECODE_ERROR: 400,
    Ret.NO_FUNCTION: 404,
    Ret.NO_SERVANT: 404,
    Ret.QUEUE_TIMEOUT: 503,
    Ret.SERVER_OVERLOAD: 503,
    Ret.ADAPTER_NULL: 503,
    Ret.INVOKE_TIMEOUT: 504,
    Ret.PROXY_CONNECT_ERROR: 502,
}
OTHER_HTTP_STATUS = 500

RET_TEXT: dict[int, str] = {r: r.name.lower().replace("_", " ") for r in Ret}


def error_status(http_status: int, flags: tuple[str, ...] = ()) -> int:
    """The ``iRet`` a failure the proxy answered itself is replied with."""
    if http_status == 503 and not BUSY_FLAGS.isdisjoint(flags):
        return Ret.SERVER_OVERLOAD
    return _BY_HTTP_STATUS.get(http_status, OTHER_RET)


def http_status(ret: int) -> int:
    """The HTTP-like status a Tars return code means to the proxy."""
    return _TO_HTTP_STATUS.get(ret, OTHER_HTTP_STATUS)
