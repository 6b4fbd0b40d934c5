"""Statuses of a declared protocol: the proxy's own failures (HTTP-like status +
Envoy response flags) as the statuses the config names, and statuses back as
HTTP-like ones (for retries and stats)."""

from __future__ import annotations

from mosn_xprotocol.config import StatusField

OVERFLOW_FLAG = "UO"
"""Envoy's upstream overflow flag (circuit breaker or pool limit), MOSN's 503."""
OVERLOAD_FLAG = "OM"
"""Envoy's overload manager flag: a request answered as its connection was shed."""
BUSY_FLAGS = frozenset({OVERFLOW_FLAG, OVERLOAD_FLAG})
"""A 503 with one of these means the proxy is too busy, not that no host is there."""
RATE_LIMITED = frozenset({429, 509})
"""A rate limit's refusal (HTTP's 429, MOSN's 509): the protocol's ``overflow``."""

_FAILURE_HTTP_STATUS = {
    "bad_frame": 400,
    "forbidden": 403,
    "no_route": 404,
    "upstream_lost": 502,
    "no_healthy_upstream": 503,
    "overflow": 503,
    "timeout": 504,
}
OTHER_HTTP_STATUS = 500
"""What ``error`` and any status the config does not name read back as."""


class StatusMapping:
    """Both directions, precomputed from a config's ``status`` field."""

    __slots__ = ("success", "error", "by_http", "overflow", "to_http")

    def __init__(self, status: StatusField) -> None:
        self.success = status.success
        self.error = status.error
        self.by_http: dict[int, int] = {}
        for failure, http in _FAILURE_HTTP_STATUS.items():
            code = getattr(status, failure)
            if code is not None and failure != "overflow":
                self.by_http.setdefault(http, code)
        self.overflow = status.overflow
        self.to_http: dict[int, int] = {status.success: 200, status.error: OTHER_HTTP_STATUS}
        for failure, http in _FAILURE_HTTP_STATUS.items():
            code = getattr(status, failure)
            if code is not None:
                self.to_http.setdefault(code, http)

    def error_status(self, http_status: int, flags: tuple[str, ...] = ()) -> int:
        if self.overflow is not None and (http_status in RATE_LIMITED or (
                http_status == 503 and not BUSY_FLAGS.isdisjoint(flags))):
            return self.overflow
        return self.by_http.get(http_status, self.error)

    def http_status(self, status: int) -> int:
        return self.to_http.get(status, OTHER_HTTP_STATUS)
