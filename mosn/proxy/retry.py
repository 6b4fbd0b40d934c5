"""A stream's retries (Envoy's ``RetryStateImpl``) and replays.

A retry follows the route's retry policy: which failures it covers (``retry_on``),
how many tries, the ``max_retries`` circuit breaker, and a jittered exponential
backoff. A :class:`RetryState` exists only for a stream whose route has a policy.

A replay is not a retry: the upstream did not process the request (HTTP/2's
REFUSED_STREAM and streams above a GOAWAY's last stream id, RFC 9113 8.7; an
idempotent request whose reused HTTP/1.1 connection closed before any byte of its
response, RFC 9110 9.2.2), so it is sent again at once, with or without a policy.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from mosn.proxy.stream_info import RETRY_LIMIT_EXCEEDED
from mosn.stream.types import RequestHead, StreamResetReason

if TYPE_CHECKING:
    from mosn.upstream.cluster import Cluster

RETRY_BUFFER_LIMIT = 1024 * 1024
"""Request body bytes kept for a retry; a larger request is not retried (Envoy: the
connection buffer limit)."""
RETRY_BACKOFF_BASE = 0.025
"""Seconds of the first retry backoff, doubled per retry, with full jitter (Envoy's)."""
REPLAY_BUFFER_LIMIT = 64 * 1024
"""Request body bytes kept, where no retry policy keeps more, to send a request again
that the upstream did not process (see :func:`replayable`): most API requests fit; a
larger one fails as it did before."""
MAX_REPLAYS = 3
"""Times one request is sent again because the upstream did not process it: a host
that refuses this often in a row takes nothing, and its failure is the answer."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods whose request may be sent twice with the effect of once (RFC 9110 9.2.2)."""

RETRY_ON = {
    "connect-failure": frozenset({"connect-failure", "5xx", "gateway-error"}),
    "reset": frozenset({"reset", "5xx", "gateway-error"}),
    "per-try-timeout": frozenset({"reset", "5xx", "gateway-error"}),
    "5xx": frozenset({"5xx"}),
    "gateway-error": frozenset({"5xx", "gateway-error"}),
    "retriable-status-codes": frozenset({"retriable-status-codes"}),
}
"""What went wrong -> the ``retry_on`` conditions that retry it (Envoy's semantics:
``5xx`` also covers connect failures, resets and timeouts; ``gateway-error`` is
502/503/504 and the same failures)."""


def replayable(reason: StreamResetReason, request: RequestHead | None) -> bool:
    """True when a try that ended for ``reason`` was not processed upstream, so the
    request may be sent again (see the module's docstring)."""
    if reason is StreamResetReason.CLOSED_BEFORE_RESPONSE:
        return request is not None and request.method in IDEMPOTENT_METHODS
    return reason is StreamResetReason.REFUSED_STREAM


class RetryState:
    """The retries of one stream under its route's ``retry_policy``."""

    __slots__ = ("policy", "retries_left", "scheduled")

    def __init__(self, policy: Any, retries: int) -> None:
        self.policy = policy
        self.retries_left = retries
        self.scheduled = False
        """A retry is scheduled and holds its place in the cluster's
        ``upstream_rq_retry_active`` until its try takes it over (or the stream ends)."""

    @property
    def per_try_timeout(self) -> float:
        return self.policy.per_try_timeout

    def condition_for(self, status: int) -> str:
        """The retry condition a response status meets ("" for none)."""
        if status in self.policy.retriable_status_codes:
            return "retriable-status-codes"
        if status >= 500:
            return "gateway-error" if status in (502, 503, 504) else "5xx"
        return ""

    def backoff(self, condition: str, cluster: "Cluster | None",
                response_flags: list[str]) -> float | None:
        """Seconds to wait before a retry for ``condition``, taking one try; None when
        the policy does not cover it, no try is left (flagged) or the circuit breaker
        is full."""
        policy = self.policy
        if not RETRY_ON[condition] & policy.retry_on:
            return None
        if self.retries_left <= 0:
            response_flags.append(RETRY_LIMIT_EXCEEDED)
            return None
        if cluster is not None:
            more = cluster.more
            if cluster.max_retries and cluster.store.total(
                    more.upstream_rq_retry_active) >= cluster.max_retries:
                cluster.count(more.upstream_rq_retry_overflow)
                return None
            cluster.count(more.upstream_rq_retry)
            # Held from now (Envoy's retry budget counts scheduled retries); the retry's
            # upstream request takes it over, or ``release`` gives it back.
            cluster.store.values[more.upstream_rq_retry_active] += 1  # type: ignore[index]
            self.scheduled = True
        self.retries_left -= 1
        attempt = policy.num_retries - self.retries_left
        return random.uniform(0, RETRY_BACKOFF_BASE * (2 ** (attempt - 1)))

    def take_scheduled(self) -> bool:
        """The try that starts now is a scheduled retry (it takes over its count)."""
        scheduled, self.scheduled = self.scheduled, False
        return scheduled

    def release(self, cluster: "Cluster | None") -> None:
        """The stream ended: a retry scheduled and never started gives its count back."""
        if self.scheduled and cluster is not None:
            self.scheduled = False
            cluster.store.values[cluster.more.upstream_rq_retry_active] -= 1  # type: ignore[index]


__all__ = ["IDEMPOTENT_METHODS", "MAX_REPLAYS", "REPLAY_BUFFER_LIMIT", "RETRY_BACKOFF_BASE",
           "RETRY_BUFFER_LIMIT", "RETRY_ON", "RetryState", "replayable"]
