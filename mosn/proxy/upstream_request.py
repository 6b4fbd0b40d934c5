"""One try of a request upstream (Envoy's ``UpstreamRequest``), and a mirrored copy.

An :class:`UpstreamRequest` is the pool's callbacks and the client codec's
``ResponseHandler`` for one try: it keeps the host's and cluster's counts of requests
in flight, reports its outcome to outlier detection, and passes what happens to its
downstream stream until that stream detaches it. A :class:`ShadowRequest` is a
mirrored copy whose response is dropped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mosn.proxy.semantics import FRAME_SEMANTICS, ProtocolSemantics
from mosn.proxy.stream_info import UPSTREAM_CONNECTION_FAILURE, UPSTREAM_OVERFLOW
from mosn.stream.types import ClientStream, Headers, RequestHead, ResponseHead, StreamResetReason

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream
    from mosn.stream.pool import PendingRequest, PoolClient
    from mosn.upstream.cluster import Cluster, Host

BODY_BUFFER_LIMIT = 1024 * 1024
"""Request body bytes held while the upstream stream is not ready yet, before the
client is no longer read (Envoy's per-connection buffer limit)."""


class UpstreamRequest:
    """One try of a request upstream: the pool's callbacks and the client codec's
    ``ResponseHandler``, reporting to its downstream stream. Counted as active (on its
    host and cluster) from creation until it ends or is abandoned; a retry also holds
    its place in the ``max_retries`` circuit breaker until then."""

    __slots__ = ("downstream", "stream", "pending", "client", "ended", "try_timer",
                 "cluster", "host", "retry", "live", "start_monotonic", "response_code",
                 "span", "reset_reason", "semantics")

    def __init__(self, downstream: "DownstreamStream", cluster: "Cluster", host: "Host",
                 retry: bool = False, semantics: ProtocolSemantics = FRAME_SEMANTICS) -> None:
        self.downstream: DownstreamStream | None = downstream
        self.stream: ClientStream | None = None
        self.pending: PendingRequest | None = None
        self.client: PoolClient | None = None
        self.ended = False
        self.try_timer: Any = None
        self.cluster = cluster
        self.host = host
        self.retry = retry
        self.live = True
        self.start_monotonic = time.monotonic()
        self.response_code = 0
        """The status this try got from upstream; 0 until (unless) it got one."""
        self.span: Any = None
        """A tracer's span for this try, if one is kept."""
        self.semantics = semantics
        """What the upstream protocol says about its responses."""
        self.reset_reason: StreamResetReason | None = None
        """Why the upstream ended this try without a complete response (a reset, or
        the connection lost: before or after the response began); None otherwise."""
        host.active_requests += 1
        v, more, hs = cluster.store.values, cluster.more, host.stats
        v[cluster.more.upstream_rq_total] += 1  # type: ignore[index]
        v[more.upstream_rq_active] += 1  # type: ignore[index]
        v[hs.rq_total] += 1  # type: ignore[index, union-attr]
        v[hs.rq_active] += 1  # type: ignore[index, union-attr]

    def release(self) -> None:
        """No longer in flight (ended, failed, reset or abandoned); once."""
        if not self.live:
            return
        self.live = False
        host, cluster = self.host, self.cluster
        host.active_requests -= 1
        if host.response_times is not None:  # LB_PEAK_EWMA's
            host.response_times.observe(time.monotonic() - self.start_monotonic,
                                        self.response_code)
        v, more = cluster.store.values, cluster.more
        v[more.upstream_rq_active] -= 1  # type: ignore[index]
        v[host.stats.rq_active] -= 1  # type: ignore[index, union-attr]
        if self.retry:
            v[more.upstream_rq_retry_active] -= 1  # type: ignore[index]
        downstream = self.downstream
        if downstream is not None:
            for hook in downstream.observers.upstream_end:
                hook(downstream, self)

    def count_5xx(self) -> None:
        v = self.cluster.store.values
        v[self.cluster.more.upstream_rq_5xx] += 1  # type: ignore[index]
        v[self.host.stats.rq_error] += 1  # type: ignore[index, union-attr]

    def _failed(self, reason: StreamResetReason) -> None:
        """A failure before any response: a gateway failure for outlier detection."""
        if reason is StreamResetReason.OVERFLOW or reason is StreamResetReason.LOCAL_RESET:
            return
        v = self.cluster.store.values
        v[self.host.stats.rq_error] += 1  # type: ignore[index, union-attr]
        outlier = self.host.outlier
        if outlier is not None:
            outlier.put_gateway_failure()

    def timed_out(self) -> None:
        if self.live:
            self._failed(StreamResetReason.CONNECTION_TERMINATION)

    # pool callbacks

    def on_pool_ready(self, stream: ClientStream, client: "PoolClient") -> None:
        self.pending = None
        self.stream = stream
        self.client = client
        if self.downstream is None:
            self.reset()
            return
        self.downstream.on_upstream_ready(self)

    def on_pool_failure(self, reason: StreamResetReason) -> None:
        self.pending = None
        self._failed(reason)
        self.release()
        if self.downstream is not None:
            flag = UPSTREAM_OVERFLOW if reason is StreamResetReason.OVERFLOW \
                else UPSTREAM_CONNECTION_FAILURE
            self.downstream.on_upstream_failure(self, reason, flag, 503)

    # ResponseHandler

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None:
        self.response_code = head.status
        if end_stream:
            self.ended = True
            self.release()
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        if self.downstream is not None:
            self.downstream.on_upstream_headers(self, head, end_stream)
        elif self.host.outlier is not None:
            self.host.outlier.put_status(head.status)

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            self.ended = True
            self.release()
        if self.downstream is not None:
            self.downstream.on_upstream_data(data, end_stream)

    def on_trailers(self, trailers: Headers) -> None:
        self.ended = True
        self.release()
        if self.downstream is not None:
            self.downstream.on_upstream_trailers(trailers)

    def on_reset(self, reason: StreamResetReason) -> None:
        self.ended = True
        if self.live:
            self.reset_reason = reason
            self._failed(reason)
        self.release()
        if self.downstream is not None:
            self.downstream.on_upstream_reset(self, reason)

    def on_above_write_buffer_high_watermark(self) -> None:
        if self.downstream is not None:
            self.downstream.server_stream.read_disable(True)

    def on_below_write_buffer_low_watermark(self) -> None:
        if self.downstream is not None:
            self.downstream.server_stream.read_disable(False)

    # the downstream's controls

    def reset(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.stream is not None and not self.ended:
            self.ended = True
            self.stream.reset(StreamResetReason.LOCAL_RESET)
        self.release()

    def detach(self) -> None:
        """Stop reporting to the downstream (it ended, or this try was replaced)."""
        self.release()
        self.downstream = None
        if self.ended:
            # The client stream's handler is this try: let go of it, so neither holds
            # the other and both are freed by reference counting, not the collector.
            self.stream = None
        if self.try_timer is not None:
            self.try_timer.cancel()
            self.try_timer = None
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None


class ShadowRequest:
    """A mirrored copy of a request: sent to the shadow cluster, its response dropped.
    It never holds up the original: if it cannot keep up it is abandoned."""

    __slots__ = ("head", "stream", "pending", "body", "size", "complete", "abandoned",
                 "released")

    def __init__(self, head: RequestHead, complete: bool) -> None:
        self.head = head
        self.stream: ClientStream | None = None
        self.pending: PendingRequest | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.complete = complete
        self.abandoned = False
        self.released = False

    def send_data(self, data: bytes, end_stream: bool) -> None:
        if self.abandoned:
            return
        if end_stream:
            self.complete = True
        if self.stream is not None:
            self.stream.send_data(data, end_stream)
            return
        self.body.append(data)
        self.size += len(data)
        if self.size > BODY_BUFFER_LIMIT:
            self.abandon()

    def abandon(self) -> None:
        self.abandoned = True
        self.body = []
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.stream is not None:
            self.stream.reset(StreamResetReason.LOCAL_RESET)
            self.stream = None

    def release(self) -> None:
        """The original ended; an incomplete copy is abandoned, a complete one finishes."""
        self.released = True
        if not self.complete:
            self.abandon()

    # pool callbacks and ResponseHandler: the response is read and dropped

    def on_pool_ready(self, stream: ClientStream, client: Any) -> None:
        self.pending = None
        if self.abandoned:
            stream.reset(StreamResetReason.LOCAL_RESET)
            return
        self.stream = stream
        body, self.body = self.body, []
        stream.send_headers(self.head, self.complete and not body)
        for i, chunk in enumerate(body):
            stream.send_data(chunk, self.complete and i == len(body) - 1)

    def on_pool_failure(self, reason: StreamResetReason) -> None:
        self.pending = None
        self.abandoned = True

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None:
        pass

    def on_data(self, data: bytes, end_stream: bool) -> None:
        pass

    def on_trailers(self, trailers: Headers) -> None:
        pass

    def on_reset(self, reason: StreamResetReason) -> None:
        self.stream = None
        self.abandoned = True

    def on_above_write_buffer_high_watermark(self) -> None:
        self.abandon()

    def on_below_write_buffer_low_watermark(self) -> None:
        pass


def shadow_authority(authority: str) -> str:
    """Envoy marks mirrored requests by appending ``-shadow`` to the host."""
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit():
        return f"{host}-shadow:{port}"
    return f"{authority}-shadow"


__all__ = ["BODY_BUFFER_LIMIT", "ShadowRequest", "UpstreamRequest", "shadow_authority"]
