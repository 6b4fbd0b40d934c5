"""Upstream connection pools: one per (host, protocol) in each worker.

A request asks the pool for a stream; the pool hands it a reusable connection's new
stream at once, or queues it and opens a connection (up to ``max_connections``). A
multiplexed codec (HTTP/2, RPC) takes up to ``max_streams_per_connection`` streams at
once; a ping-pong codec (HTTP/1) one at a time, reused when its codec says so. Idle
connections are closed after ``idle_timeout``.

The cluster's circuit breakers are applied here (summed over every worker, as
Envoy's are over its threads): ``max_pending_requests`` fails a request that would
have to wait (``upstream_rq_pending_overflow``); ``max_connections`` stops new
connections (``upstream_cx_overflow``) and the request waits for one of this host's
connections, unless the pool has none at all (a request never waits for nothing).
When its host leaves the cluster a pool drains: what it holds finishes, idle
connections close, nothing new comes.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Protocol as TypingProtocol

from mosn.network.filter import CloseType, ConnectionCallbacks, ConnectionEvent
from mosn.stream.types import ClientStream, Protocol, ResponseHandler, StreamResetReason

DEFAULT_MAX_CONNECTIONS = 1024
"""Connections per host per worker (Envoy's default circuit breaker)."""
DEFAULT_MAX_PENDING = 65536
"""Requests waiting for a connection per host per worker. MOSN sets no limit and
Envoy 1024; a multiplexed client can have thousands in flight at once, so the bound
is high, but there is one: an unreachable host must not grow memory without end."""
DEFAULT_MAX_STREAMS_PER_CONNECTION = 1024
"""Concurrent streams on one multiplexed connection before another is opened."""
DEFAULT_IDLE_TIMEOUT = 3600.0
"""Seconds an unused upstream connection is kept (Envoy's default)."""
KEEPALIVE_FAILS_TO_CLOSE = 6
"""Heartbeats in a row unanswered (within the keepalive's timeout) after which a
connection is closed: MOSN's ``FailCountToClose``."""


class PoolCallbacks(TypingProtocol):
    def on_pool_ready(self, stream: ClientStream, client: "PoolClient") -> None: ...
    def on_pool_failure(self, reason: StreamResetReason) -> None: ...


class PendingRequest:
    """A request waiting for a connection; ``cancel()`` withdraws it."""

    __slots__ = ("pool", "handler", "callbacks")

    def __init__(self, pool: "ConnectionPool", handler: ResponseHandler,
                 callbacks: PoolCallbacks) -> None:
        self.pool = pool
        self.handler = handler
        self.callbacks = callbacks

    def cancel(self) -> None:
        pool = self.pool
        try:
            pool.pending.remove(self)
        except ValueError:
            return
        pool.pending_done(1)


class PoolClient(ConnectionCallbacks):
    """One upstream connection and its codec, as the pool sees it."""

    __slots__ = ("pool", "conn", "codec", "streams", "connected", "ready", "idle_since",
                 "heartbeats_failed", "_heartbeat")

    def __init__(self, pool: "ConnectionPool") -> None:
        self.pool = pool
        self.conn = pool.cluster.connect(pool.host, getattr(pool.protocol, "alpn", ""))
        self.codec: Any = None
        self.streams = 0
        self.connected = False
        self.ready = False
        """In the pool's ready list."""
        self.idle_since = 0.0
        self.heartbeats_failed = 0
        """Keepalive heartbeats unanswered in a row."""
        self._heartbeat: Any = None
        """The timer of the next keepalive heartbeat, or of the current one's timeout."""
        self.conn.add_callbacks(self)

    def on_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.CONNECTED:
            self.connected = True
            self.pool.connecting -= 1
            self.codec = self.pool.protocol.client(self.conn, self.on_idle)
            if self.pool.keepalive is not None and hasattr(self.codec, "heartbeat"):
                self._keepalive_later()
            self.pool.on_client_free(self)
        else:
            if self._heartbeat is not None:
                self._heartbeat.cancel()
                self._heartbeat = None
            self.pool.on_closed(self)

    # MOSN's xprotocol keepalive: a heartbeat every ``interval``; a connection whose
    # heartbeats go unanswered KEEPALIVE_FAILS_TO_CLOSE times in a row is closed.

    def _keepalive_later(self) -> None:
        self._heartbeat = self.conn.loop.call_later(self.pool.keepalive.interval,
                                                    self._send_heartbeat)

    def _send_heartbeat(self) -> None:
        answer: list[bool] = []

        def answered(ok: bool) -> None:
            if not answer:
                answer.append(ok)
                self._heartbeat_done(ok)

        if self.conn.closed or not self.codec.heartbeat(answered):
            return
        self.pool.count_heartbeat()
        self._heartbeat = self.conn.loop.call_later(self.pool.keepalive.timeout,
                                                    answered, False)

    def _heartbeat_done(self, ok: bool) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self.conn.closed:
            return
        self.heartbeats_failed = 0 if ok else self.heartbeats_failed + 1
        if self.heartbeats_failed >= KEEPALIVE_FAILS_TO_CLOSE:
            self.pool.count_heartbeat_close()
            self.conn.close(CloseType.NO_FLUSH)
            return
        self._keepalive_later()

    def on_idle(self) -> None:
        """The codec finished a stream."""
        self.streams -= 1
        self.pool.on_client_free(self)

    def has_capacity(self) -> bool:
        if not self.codec.reusable():
            return False
        if self.codec.multiplexed:
            return self.streams < self.pool.max_streams_per_connection
        return self.streams == 0

    def attach(self, handler: ResponseHandler, callbacks: PoolCallbacks) -> None:
        self.streams += 1
        callbacks.on_pool_ready(self.codec.new_stream(handler), self)


class ConnectionPool:
    def __init__(self, cluster: Any, host: Any, protocol: Protocol, *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 max_pending: int = DEFAULT_MAX_PENDING,
                 max_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION,
                 idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
                 connections_per_host: int = 1, keepalive: Any = None) -> None:
        """``keepalive``: the cluster's ``{interval, timeout}``: a heartbeat on each
        connection every interval, for codecs that make one (RPC)."""
        self.cluster = cluster
        self.keepalive = keepalive
        self.host = host
        self.protocol = protocol
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.max_streams_per_connection = max_streams_per_connection
        self.idle_timeout = idle_timeout
        self.connections_per_host = connections_per_host
        self.multiplexed = protocol.multiplexed
        """Connections a multiplexed pool opens before it spreads streams over them."""
        self.clients: set[PoolClient] = set()
        self.connecting = 0
        self.ready: collections.deque[PoolClient] = collections.deque()
        """Connected clients that can take a stream now; the most recently used last."""
        self.pending: collections.deque[PendingRequest] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self.draining = False
        stats = getattr(cluster, "more", None)
        self._values = cluster.store.values if stats is not None else None
        self._pending_index = stats.upstream_rq_pending_active if stats is not None else 0

    def new_stream(self, handler: ResponseHandler,
                   callbacks: PoolCallbacks) -> PendingRequest | None:
        """Calls ``callbacks.on_pool_ready`` now (and returns None) or later (and
        returns the pending request, to cancel); ``on_pool_failure`` on overflow or when
        no connection can be made."""
        ready = self.ready
        while ready and len(self.clients) - self.connecting >= self.connections_per_host:
            client = ready.pop()
            client.ready = False
            if client.has_capacity():
                if client.codec.multiplexed \
                        and client.streams + 1 < self.max_streams_per_connection:
                    client.ready = True
                    ready.appendleft(client)  # round robin over the connections
                client.attach(handler, callbacks)  # no PendingRequest: nothing waits
                return None
        cluster = self.cluster
        limit = getattr(cluster, "max_pending_requests", 0)
        if len(self.pending) >= self.max_pending or (limit and cluster.store.total(
                self._pending_index) >= limit):
            if limit:
                cluster.count(cluster.more.upstream_rq_pending_overflow)
            callbacks.on_pool_failure(StreamResetReason.OVERFLOW)
            return None
        request = PendingRequest(self, handler, callbacks)
        self.pending.append(request)
        if self._values is not None:
            self._values[self._pending_index] += 1
        if self.multiplexed:
            per_connection = self.max_streams_per_connection
            wanted = max(-(-len(self.pending) // per_connection),
                         self.connections_per_host - (len(self.clients) - self.connecting))
        else:
            wanted = len(self.pending)
        if self.connecting < wanted and len(self.clients) < self.max_connections:
            if self.clients and not self._cluster_can_connect():
                cluster.count(cluster.more.upstream_cx_overflow)
            else:
                client = PoolClient(self)
                self.clients.add(client)
                self.connecting += 1
                client.conn.start()
        return request

    def count_heartbeat(self) -> None:
        count = getattr(self.cluster, "count", None)
        if count is not None:
            count(self.cluster.more.upstream_cx_keepalive_heartbeat)

    def count_heartbeat_close(self) -> None:
        count = getattr(self.cluster, "count", None)
        if count is not None:
            count(self.cluster.more.upstream_cx_keepalive_close)

    def _cluster_can_connect(self) -> bool:
        can = getattr(self.cluster, "can_connect", None)
        return can is None or can()

    def pending_done(self, n: int) -> None:
        """``n`` requests left the pending queue (served, failed or cancelled)."""
        if self._values is not None:
            self._values[self._pending_index] -= n

    def on_client_free(self, client: PoolClient) -> None:
        """A client connected or finished a stream: give it work, or keep it ready."""
        if client.conn.closed:
            return
        if not client.codec.reusable():
            if client.streams == 0:
                client.conn.close(CloseType.FLUSH_WRITE)
            return
        while self.pending and client.has_capacity():
            self.pending_done(1)
            request = self.pending.popleft()
            client.attach(request.handler, request.callbacks)
        if self.draining:
            if client.streams == 0:
                client.conn.close(CloseType.FLUSH_WRITE)
            return
        if client.has_capacity() and not client.ready:
            client.ready = True
            self.ready.append(client)
        if client.streams == 0 and self.idle_timeout:
            client.idle_since = client.conn.loop.time()
            if self._sweep is None:
                self._sweep = client.conn.loop.call_later(self.idle_timeout, self._close_idle)

    def _close_idle(self) -> None:
        """Close connections unused for ``idle_timeout`` (one timer per pool, not per use)."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - self.idle_timeout  # type: ignore[operator]
        waiting = False
        for client in list(self.ready):
            if client.streams == 0:
                if client.idle_since <= deadline:
                    client.conn.close(CloseType.FLUSH_WRITE)
                else:
                    waiting = True
        if waiting:
            self._sweep = loop.call_later(self.idle_timeout / 4, self._close_idle)  # type: ignore[operator]

    def on_closed(self, client: PoolClient) -> None:
        self.clients.discard(client)
        if client.ready:
            client.ready = False
            self.ready.remove(client)
        if client.connected:
            return  # its streams learn of it from their codec
        # A connect failed: fail as many waiting requests as this connection was for,
        # unless other connections are still on their way for them.
        self.connecting -= 1
        while len(self.pending) > self.connecting:
            self.pending_done(1)
            self.pending.pop().callbacks.on_pool_failure(StreamResetReason.CONNECTION_FAILURE)

    def drain(self) -> None:
        """The host left its cluster: close idle connections now and the others once
        their streams are done; requests already waiting here are still served."""
        self.draining = True
        for client in list(self.ready):
            if client.streams == 0:
                client.conn.close(CloseType.FLUSH_WRITE)

    @property
    def idle(self) -> bool:
        return not self.clients and not self.pending

    def close(self) -> None:
        for client in list(self.clients):
            client.conn.close(CloseType.NO_FLUSH)
