"""Listeners: bound sockets that turn accepted connections into ``ServerConnection``s.

Sockets are bound by :func:`bind` before any worker starts (so a port in use is
reported before anything listens, and workers inherit the sockets over ``fork``);
each worker then serves them with :meth:`Listener.start`.

A listener runs its own accept loop (the event loop's would hide failures: uvloop
resets clients silently when the process is out of descriptors, and closes the
server on other accept errors): a failed accept is counted
(``downstream_cx_accept_error``) and logged, and accepting pauses for
``ACCEPT_RETRY_DELAY`` while the connections already open are served; the clients
waiting meanwhile stay in the kernel's backlog and are taken once descriptors free up.
The overload manager pauses accepting the same way while the buffer budget is tight.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import stat
from typing import Any, Callable

from mosn.config.models import DEFAULT_LISTENER_FILTERS_TIMEOUT
from mosn.config.types import Address
from mosn.network.connection import DEFAULT_BUFFER_LIMIT, Connection
from mosn.network.filter import ConnectionEvent, FilterStatus
from mosn.observability.ratelimit import RateLimitedLog
from mosn.network.filter import ConnectionEvent, FilterStatus, ListenerFilter
from mosn.network.listener_filter import ListenerFilterStage
from mosn.network.tls import TlsStats, server_layer, stat_names
from mosn.observability.stats import Scope, StatsStore

log = logging.getLogger("mosn.network")

LISTEN_BACKLOG = 4096
"""Pending accepts the kernel may queue per listener (capped by net.core.somaxconn)."""
ACCEPT_BATCH = 128
"""Connections accepted per wake-up before other work runs: many at once under a
connection storm, but a bound so one busy listener does not starve the others."""
ACCEPT_RETRY_DELAY = 1.0
"""Seconds accepting pauses after an accept failed for want of resources (asyncio's
delay): long enough not to spin, short enough to resume soon after descriptors free up."""
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""Accept failures that mean the process (or the system) is out of descriptors or memory."""

PAUSE_ERROR = "accept_error"
PAUSE_OVERLOAD = "overload"
PAUSE_DRAIN = "drain"
"""Reasons a listener does not accept; it accepts again once every reason is gone."""

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
        self._paused: set[str] = {PAUSE_DRAIN}
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None
        self._accept_log = RateLimitedLog(log)
        self._overflow_log = RateLimitedLog(log)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.resume_accepting(PAUSE_DRAIN)

    def stop_accepting(self) -> None:
        """Accept no more (draining) and close this process's copy of the socket, so
        that once no process serves it a new connection is refused, not queued."""
        self.pause_accepting(PAUSE_DRAIN)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.sock.close()

    def pause_accepting(self, reason: str) -> None:
        self._paused.add(reason)
        self._update()

    def resume_accepting(self, reason: str) -> None:
        self._paused.discard(reason)
        self._update()

    def _update(self) -> None:
        want = not self._paused and self.loop is not None and self.sock.fileno() >= 0
        if want is self._reading:
            return
        self._reading = want
        if want:
            self.loop.add_reader(self.sock.fileno(), self._accept)
        else:
            self.loop.remove_reader(self.sock.fileno())

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                if self._accept_failed(exc):
                    return
                continue
            self.loop.create_task(self._serve(sock))
            if not self._reading:
                return

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: ServerConnection(self), sock)
        except OSError as exc:  # the client left before it could be set up
            log.debug("listener %s: an accepted connection failed: %s", self.name, exc)
            sock.close()
        except Exception as exc:
            self._accept_log.log(logging.ERROR, "listener %s: setting up an accepted "
                                 "connection failed: %r", self.name, exc, exc_info=exc)
            sock.close()

    def _accept_failed(self, exc: OSError) -> bool:
        """Count and log a failed accept; True if accepting pauses (out of resources:
        trying again at once would fail the same way)."""
        self.store.values[self.stats.downstream_cx_accept_error] += 1  # type: ignore[index]
        if exc.errno not in RESOURCE_ERRORS:
            self._accept_log.log(logging.ERROR, "listener %s: accept failed: %s", self.name, exc)
            return False
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self._accept_log.log(
            logging.ERROR, "listener %s: cannot accept connections: %s (open file limit %d, "
            "%d connections open here); serving the open ones, accepting again in %gs",
            self.name, os.strerror(exc.errno or 0), limit, len(self.connections),
            ACCEPT_RETRY_DELAY)
        self.pause_accepting(PAUSE_ERROR)
        if self._retry is None:
            self._retry = self.loop.call_later(ACCEPT_RETRY_DELAY, self._retry_accepting)
        return True

    def _retry_accepting(self) -> None:
        self._retry = None
        self.resume_accepting(PAUSE_ERROR)

    def on_accept(self, conn: ServerConnection) -> None:
        values, s = self.store.values, self.stats
        assert values is not None
        if self.max_connections is not None and \
                self.store.total(s.downstream_cx_active) >= self.max_connections:
            values[s.downstream_cx_overflow] += 1
            self._overflow_log.log(
                logging.WARNING, "listener %s: at max_connections (%d): new connections are "
                "closed at once (downstream_cx_overflow)", self.name, self.max_connections)
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
