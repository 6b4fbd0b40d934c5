"""Upstream connection pools: one per (host, protocol) in each worker.

A request asks the pool for a stream; the pool hands it a reusable connection's new
stream at once, or queues it and opens a connection (up to ``max_connections``). A
multiplexed codec (HTTP/2, RPC) takes up to ``max_streams_per_connection`` streams at
once; a ping-pong codec (HTTP/1) one at a time, reused when its codec says so. Idle
connections are closed after ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Protocol as TypingProtocol

from mosn.network.filter import CloseType, ConnectionCallbacks, ConnectionEvent
from mosn.stream.types import ClientStream, Protocol, ResponseHandler, StreamResetReason

DEFAULT_MAX_CONNECTIONS = 1024
"""Connections per host per worker (Envoy's default circuit breaker)."""
DEFAULT_MAX_PENDING = 1024
"""Requests waiting for a connection per host per worker (Envoy's default)."""
DEFAULT_MAX_STREAMS_PER_CONNECTION = 1024
"""Concurrent streams on one multiplexed connection before another is opened."""
DEFAULT_IDLE_TIMEOUT = 3600.0
"""Seconds an unused upstream connection is kept (Envoy's default)."""


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
        try:
            self.pool.pending.remove(self)
        except ValueError:
            pass


class PoolClient(ConnectionCallbacks):
    """One upstream connection and its codec, as the pool sees it."""

    __slots__ = ("pool", "conn", "codec", "streams", "idle_handle", "connected")

    def __init__(self, pool: "ConnectionPool") -> None:
        self.pool = pool
        self.conn = pool.cluster.connect(pool.host)
        self.codec: Any = None
        self.streams = 0
        self.idle_handle: asyncio.TimerHandle | None = None
        self.connected = False
        self.conn.add_callbacks(self)

    def on_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.CONNECTED:
            self.connected = True
            self.codec = self.pool.protocol.client(self.conn, self.on_idle)
            self.pool.on_connected(self)
        else:
            self.pool.on_closed(self, event)

    def on_idle(self) -> None:
        """The codec finished a stream and may take another."""
        self.streams -= 1
        self.pool.on_client_idle(self)

    def has_capacity(self) -> bool:
        if not self.connected or not self.codec.reusable():
            return False
        if self.codec.multiplexed:
            return self.streams < self.pool.max_streams_per_connection
        return self.streams == 0

    def attach(self, request: PendingRequest) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        self.streams += 1
        stream = self.codec.new_stream(request.handler)
        request.callbacks.on_pool_ready(stream, self)


class ConnectionPool:
    def __init__(self, cluster: Any, host: Any, protocol: Protocol, *,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 max_pending: int = DEFAULT_MAX_PENDING,
                 max_streams_per_connection: int = DEFAULT_MAX_STREAMS_PER_CONNECTION,
                 idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT) -> None:
        self.cluster = cluster
        self.host = host
        self.protocol = protocol
        self.max_connections = max_connections
        self.max_pending = max_pending
        self.max_streams_per_connection = max_streams_per_connection
        self.idle_timeout = idle_timeout
        self.clients: list[PoolClient] = []
        self.pending: collections.deque[PendingRequest] = collections.deque()

    def new_stream(self, handler: ResponseHandler,
                   callbacks: PoolCallbacks) -> PendingRequest | None:
        """Calls ``callbacks.on_pool_ready`` now (and returns None) or later (and
        returns the pending request, to cancel); ``on_pool_failure`` on overflow or when
        no connection can be made."""
        request = PendingRequest(self, handler, callbacks)
        for client in reversed(self.clients):  # the most recently used first: warm
            if client.has_capacity():
                client.attach(request)
                return None
        if len(self.pending) >= self.max_pending:
            callbacks.on_pool_failure(StreamResetReason.OVERFLOW)
            return None
        self.pending.append(request)
        connecting = sum(1 for c in self.clients if not c.connected)
        if connecting < len(self.pending) and len(self.clients) < self.max_connections:
            self.clients.append(PoolClient(self))
            self.clients[-1].conn.start()
        return request

    def on_connected(self, client: PoolClient) -> None:
        self._serve_pending(client)
        if client.streams == 0:
            self._park(client)

    def on_client_idle(self, client: PoolClient) -> None:
        if not client.codec.reusable():
            client.conn.close(CloseType.FLUSH_WRITE)
            return
        self._serve_pending(client)
        if client.streams == 0:
            self._park(client)

    def _serve_pending(self, client: PoolClient) -> None:
        while self.pending and client.has_capacity():
            client.attach(self.pending.popleft())

    def _park(self, client: PoolClient) -> None:
        # Keep the warm connections at the end of the list, where new_stream looks first.
        self.clients.remove(client)
        self.clients.append(client)
        if self.idle_timeout:
            client.idle_handle = client.conn.loop.call_later(
                self.idle_timeout, client.conn.close, CloseType.FLUSH_WRITE)

    def on_closed(self, client: PoolClient, event: ConnectionEvent) -> None:
        if client.idle_handle is not None:
            client.idle_handle.cancel()
        if client in self.clients:
            self.clients.remove(client)
        if client.connected:
            return  # its streams learn of it from their codec
        # A connect failed: fail as many waiting requests as this connection was for,
        # unless other connections are still on their way for them.
        connecting = sum(1 for c in self.clients if not c.connected)
        while len(self.pending) > connecting:
            self.pending.pop().callbacks.on_pool_failure(StreamResetReason.CONNECTION_FAILURE)

    def close(self) -> None:
        for client in list(self.clients):
            client.conn.close(CloseType.NO_FLUSH)
