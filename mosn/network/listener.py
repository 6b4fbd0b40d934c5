"""Listeners: bound sockets that turn accepted connections into ``ServerConnection``s.

Sockets are bound by :func:`bind` before any worker starts (so a port in use is
reported before anything listens, and workers inherit the sockets over ``fork``);
each worker then serves them with :meth:`Listener.start`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from typing import Any, Callable

from mosn.config.models import DEFAULT_LISTENER_FILTERS_TIMEOUT
from mosn.config.types import Address
from mosn.network.connection import DEFAULT_BUFFER_LIMIT, Connection
from mosn.network.filter import ConnectionEvent, FilterStatus, ListenerFilter
from mosn.network.listener_filter import ListenerFilterStage
from mosn.network.tls import TlsStats, server_layer, stat_names
from mosn.observability.stats import Scope, StatsStore

log = logging.getLogger("mosn.network")

LISTEN_BACKLOG = 4096
"""Pending accepts the kernel may queue per listener (capped by net.core.somaxconn)."""

ConnectionInstaller = Callable[[Connection], None]
ListenerFilterFactory = Callable[[], ListenerFilter]
"""Makes one connection's instance of a listener filter."""


def bind(address: Address, reuseport: bool = False) -> socket.socket:
    """A listening socket for ``address``; raises OSError if it cannot be bound."""
    if address.is_unix:
        path = address.path or ""
        if not path.startswith("@") and os.path.exists(path):
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise OSError(f"{path} exists and is not a socket")
            os.unlink(path)  # a stale socket from an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind("\0" + path[1:] if path.startswith("@") else path)
    else:
        infos = socket.getaddrinfo(address.host or None, address.port,
                                   type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, type_, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(sockaddr)
        except OSError:
            sock.close()
            raise
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class ServerConnection(Connection):
    """A downstream connection accepted by a listener."""

    def __init__(self, listener: "Listener") -> None:
        super().__init__(
            listener.loop,
            buffer_limit=listener.buffer_limit,
            stats=listener.store.values,
            rx_index=listener.stats.downstream_cx_rx_bytes_total,
            tx_index=listener.stats.downstream_cx_tx_bytes_total,
        )
        self.listener = listener
        self.detected_transport = ""
        """What a listener filter found the client speaks: ``tls`` or ``raw_buffer``
        (Envoy's names); empty when no filter looked."""
        self.requested_server_name = ""
        """The SNI of the ClientHello, as the TLS inspector read it."""
        self.requested_alpn: tuple[str, ...] = ()
        """The ALPN protocols the ClientHello offered, as the TLS inspector read them."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.listener.on_accept(self)

    def on_idle_timeout(self) -> None:
        self._stats[self.listener.stats.downstream_cx_idle_timeout] += 1

    def on_closed(self, event: ConnectionEvent) -> None:
        self.listener.on_close(self)


class Listener:
    """Serves one bound socket: accepts, enforces the limit, installs the filter chain."""

    def __init__(
        self,
        name: str,
        sock: socket.socket,
        store: StatsStore,
        stats: Scope,
        install: ConnectionInstaller,
        *,
        max_connections: int | None = None,
        idle_timeout: float | None = None,
        buffer_limit: int | None = None,
        listener_filters: tuple[ListenerFilterFactory, ...] = (),
        tls: Any = None,
        tls_optional: bool = False,
        listener_filters_timeout: float = DEFAULT_LISTENER_FILTERS_TIMEOUT,
    ) -> None:
        """``tls``: the filter chain's ``mosn.tls.ServerTls`` (None: plaintext);
        ``tls_optional``: a client a listener filter found not speaking TLS is served
        in plaintext (MOSN's ``inspector: true``)."""
        self.name = name
        self.sock = sock
        self.store = store
        self.stats = stats
        self.install = install
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.buffer_limit = buffer_limit or DEFAULT_BUFFER_LIMIT
        self.connections: set[ServerConnection] = set()
        self.listener_filters = listener_filters
        self.listener_filters_timeout = listener_filters_timeout
        self.tls = tls
        self.tls_optional = tls_optional
        self.tls_stats: TlsStats | None = None
        if tls is not None:
            scope = store.scope(stats.prefix, stat_names(tls.cipher_names()))
            self.tls_stats = TlsStats(store, scope)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.sock.family == socket.AF_UNIX:
            self._server = await self.loop.create_unix_server(
                lambda: ServerConnection(self), sock=self.sock, backlog=LISTEN_BACKLOG)
        else:
            self._server = await self.loop.create_server(
                lambda: ServerConnection(self), sock=self.sock, backlog=LISTEN_BACKLOG)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def on_accept(self, conn: ServerConnection) -> None:
        values, s = self.store.values, self.stats
        assert values is not None
        if self.max_connections is not None and \
                self.store.total(s.downstream_cx_active) >= self.max_connections:
            values[s.downstream_cx_overflow] += 1
            conn.closed = True  # never counted as active, so never "destroyed"
            conn.transport.abort()  # type: ignore[union-attr]
            return
        values[s.downstream_cx_total] += 1
        values[s.downstream_cx_active] += 1
        self.connections.add(conn)
        if self.idle_timeout:
            conn.set_idle_timeout(self.idle_timeout)
        if self.listener_filters:
            ListenerFilterStage(conn, [make() for make in self.listener_filters],
                                self._filters_done, self._filters_timed_out
                                ).start(self.listener_filters_timeout)
        else:
            self._filters_done(conn, b"")

    def _filters_timed_out(self) -> None:
        self.store.values[self.stats.downstream_pre_cx_timeout] += 1  # type: ignore[index]

    def _filters_done(self, conn: ServerConnection, first_bytes: bytes) -> None:
        """The listener filters are done: TLS (unless a filter found plaintext and
        TLS is optional), then the filter chain."""
        tls = self.tls
        if tls is not None and not (self.tls_optional and conn.detected_transport != "tls"):
            conn.start_tls(server_layer(conn, tls, self.tls_stats, self._install),
                           tls.handshake_timeout)
        else:
            self._install(conn)
        if first_bytes:
            conn.replay(first_bytes)

    def _install(self, conn: Any) -> None:
        try:
            self.install(conn)
            for f in conn.read_filters:
                if f.on_new_connection() is FilterStatus.STOP:
                    break
        except Exception:
            log.exception("listener %s: filter chain failed on a new connection", self.name)
            conn.close()

    def on_close(self, conn: ServerConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            values, s = self.store.values, self.stats
            values[s.downstream_cx_active] -= 1  # type: ignore[index]
            values[s.downstream_cx_destroy] += 1  # type: ignore[index]
