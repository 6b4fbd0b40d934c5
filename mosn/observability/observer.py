"""Per-request stats: a stream observer that counts every L7 stream of one listener.

Built once per listener before the workers fork (so every stat it writes is
registered by then) and told of each stream by the proxy. It writes, in the worker's
own row of the shared stats:

- per listener (``listener.<name>.``) and per protocol (``protocol.<name>.``): the
  requests, the active ones, responses by status class, resets, and the request time
  histogram ``downstream_rq_time`` (from the request head to the end of the stream);
- per cluster (``cluster.<name>.``): responses by status class (``upstream_rq_5xx``
  is counted by the proxy as the response head arrives), ``upstream_rq_timeout`` and
  the histogram ``upstream_rq_time`` (each try, from its start to its end, for tries
  that got a response);
- per host (``cluster.<name>.host.<address>.``): responses by status class and
  ``rq_timeout``.

The hot path is a few ``values[i] += n`` on a memoryview, a dict lookup for the
protocol and one ``bisect`` on a tuple per histogram: no lock, no allocation.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Iterable

from mosn.observability.stats import (
    DOWNSTREAM_RQ_STATS,
    HISTOGRAM_BUCKETS_MS,
    StatsStore,
)
from mosn.proxy.observer import LISTENER_EVENTS, StreamObserver
from mosn.proxy.stream_info import STREAM_FILTER_ERROR

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream
    from mosn.proxy.upstream_request import UpstreamRequest

_BOUNDS = HISTOGRAM_BUCKETS_MS
_HOST_CLASS = ("", "rq_1xx", "rq_2xx", "rq_3xx", "rq_4xx", "rq_5xx")
_CLIENT_RESET_FLAGS = frozenset({"DC", "DPE"})
"""Response flags of a stream that the client ended (Envoy's downstream_rq_rx_reset)."""
_TIMEOUT_FLAG = "UT"
_IDLE_TIMEOUT_FLAG = "SI"


class _Downstream:
    """The indices of one ``downstream_rq_*`` scope and its histogram."""

    __slots__ = ("total", "active", "classes", "rx_reset", "tx_reset", "idle_timeout",
                 "filter_error", "time_base", "time_sum")

    def __init__(self, store: StatsStore, prefix: str) -> None:
        scope = store.scope(prefix, DOWNSTREAM_RQ_STATS)
        self.total = scope.downstream_rq_total
        self.active = scope.downstream_rq_active
        self.classes = (-1, scope.downstream_rq_1xx, scope.downstream_rq_2xx,
                        scope.downstream_rq_3xx, scope.downstream_rq_4xx,
                        scope.downstream_rq_5xx)
        self.rx_reset = scope.downstream_rq_rx_reset
        self.tx_reset = scope.downstream_rq_tx_reset
        self.idle_timeout = scope.downstream_rq_idle_timeout
        self.filter_error = scope.downstream_rq_filter_error
        histogram = store.histogram(f"{prefix}.downstream_rq_time")
        self.time_base = histogram.base
        self.time_sum = histogram.sum


class _Upstream:
    """One cluster's indices: status classes 1xx to 4xx (the proxy counts
    ``upstream_rq_5xx`` as the response head arrives) and ``upstream_rq_time``."""

    __slots__ = ("classes", "rx_reset", "time_base", "time_sum")

    def __init__(self, store: StatsStore, cluster: Any) -> None:
        more = cluster.more
        self.rx_reset = more.upstream_rq_rx_reset
        self.classes = (-1, more.upstream_rq_1xx, more.upstream_rq_2xx, more.upstream_rq_3xx,
                        more.upstream_rq_4xx)
        histogram = store.histogram(f"cluster.{cluster.name}.upstream_rq_time")
        self.time_base = histogram.base
        self.time_sum = histogram.sum


class StatsObserver(StreamObserver):
    """Counts the streams of the listener ``listener`` (see the module's docstring)."""

    def __init__(self, store: StatsStore, listener: str, protocols: Iterable[str],
                 clusters: Iterable[Any]) -> None:
        self.store = store
        self.listener = _Downstream(store, f"listener.{listener}")
        self.events = store.scope(f"listener.{listener}", LISTENER_EVENTS).indices
        self.protocols = {name: _Downstream(store, f"protocol.{name}") for name in protocols}
        self.upstream = {cluster: _Upstream(store, cluster) for cluster in clusters}

    def on_request(self, stream: "DownstreamStream") -> None:
        v = self.store.values
        d = self.listener
        v[d.total] += 1  # type: ignore[index]
        v[d.active] += 1  # type: ignore[index]
        p = self.protocols.get(stream.protocol)
        if p is not None:
            v[p.total] += 1  # type: ignore[index]
            v[p.active] += 1  # type: ignore[index]

    def on_listener_event(self, event: str) -> None:
        index = self.events.get(event)
        if index is not None:
            self.store.values[index] += 1  # type: ignore[index]

    def on_upstream_end(self, stream: "DownstreamStream", upstream: "UpstreamRequest") -> None:
        v = self.store.values
        if upstream.reset_reason is not None:
            # Cut by the upstream (a reset, a lost connection, a body cut short): no
            # response, even if its head came.
            u = self.upstream.get(upstream.cluster)
            if u is not None:
                v[u.rx_reset] += 1  # type: ignore[index]
            return
        code = upstream.response_code
        if not code:
            return
        k = code // 100
        if 1 <= k <= 5:
            hs = upstream.host.stats
            if hs is not None:
                v[hs.indices[_HOST_CLASS[k]]] += 1  # type: ignore[index]
        u = self.upstream.get(upstream.cluster)
        if u is None:
            return
        if 1 <= k <= 4:
            v[u.classes[k]] += 1  # type: ignore[index]
        ms = (time.monotonic() - upstream.start_monotonic) * 1000.0
        v[u.time_base + bisect_left(_BOUNDS, ms)] += 1  # type: ignore[index]
        v[u.time_sum] += int(ms * 1000.0)  # type: ignore[index]

    def on_stream_end(self, stream: "DownstreamStream") -> None:
        if stream.request is None:
            return  # ended before its head arrived: never counted as a request
        v = self.store.values
        ms = (stream.end_monotonic - stream.start_monotonic) * 1000.0
        bucket = bisect_left(_BOUNDS, ms)
        us = int(ms * 1000.0)
        code = stream.response_code
        k = code // 100
        flags = stream.response_flags
        reset = stream.ended_by_reset
        self._end(v, self.listener, k, reset, flags, bucket, us)
        p = self.protocols.get(stream.protocol)
        if p is not None:
            self._end(v, p, k, reset, flags, bucket, us)
        if flags and _TIMEOUT_FLAG in flags and stream.cluster is not None:
            v[stream.cluster.more.upstream_rq_timeout] += 1  # type: ignore[index]
            hs = stream.host.stats if stream.host is not None else None
            if hs is not None:
                v[hs.rq_timeout] += 1  # type: ignore[index]

    @staticmethod
    def _end(v: Any, d: _Downstream, k: int, reset: bool, flags: list[str], bucket: int,
             us: int) -> None:
        v[d.active] -= 1
        if flags and STREAM_FILTER_ERROR in flags:
            v[d.filter_error] += 1
        if 1 <= k <= 5 and not reset:
            v[d.classes[k]] += 1
        elif _CLIENT_RESET_FLAGS.intersection(flags):
            v[d.rx_reset] += 1
        else:
            v[d.tx_reset] += 1
        if flags and _IDLE_TIMEOUT_FLAG in flags:
            v[d.idle_timeout] += 1
        v[d.time_base + bucket] += 1
        v[d.time_sum] += us


__all__ = ["StatsObserver"]
