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

After accept come the listener filters (:mod:`mosn.network.listener_filter`), then
one of the listener's filter chains is chosen (:mod:`mosn.network.filter_chain`),
its TLS started and its filters installed. A listener with ``use_original_dst`` first
hands a connection whose original destination is another listener's address over to
that listener (Envoy's and MOSN's hand-off), which runs its own listener filters on it
(with the bytes read so far) and chooses among its own chains. A listener with
``bind_port: false`` (virtual) has no socket: it only takes such hand-overs.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import os
import resource
import socket
import stat
from typing import Any, Callable, Iterable

from mosn.config.models import DEFAULT_LISTENER_FILTERS_TIMEOUT
from mosn.config.types import Address
from mosn.network.connection import DEFAULT_BUFFER_LIMIT, Connection, flush_spliced_bytes
from mosn.network.filter import ConnectionEvent, FilterStatus, ListenerFilter, ListenerFilterError
from mosn.network.filter_chain import FilterChain, FilterChainSelector
from mosn.network.interception import plain_ip, redirected_destination, set_transparent
from mosn.network.listener_filter import ListenerFilterStage
from mosn.network.tls import TlsStats, server_layer, stat_names
from mosn.observability.ratelimit import RateLimitedLog
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


def bind(address: Address, reuseport: bool = False, transparent: bool = False,
         kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    """A listening socket for ``address`` (``kind``: SOCK_DGRAM for a UDP listener,
    bound but not listening); ``transparent``: it takes TPROXYed connections. Raises
    OSError if it cannot be made."""
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
                                   type=kind, flags=socket.AI_PASSIVE)
        family, type_, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if transparent:
                set_transparent(sock)
            sock.bind(sockaddr)
        except OSError:
            sock.close()
            raise
    if kind == socket.SOCK_STREAM:
        sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def normal_ip(host: str) -> str:
    """One spelling per address (``::ffff:10.0.0.1`` and ``10.0.0.1`` are one)."""
    host = plain_ip(host)
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


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
        """The ALPN protocols the ClientHello offered, as the TLS inspector read them
        (or the HTTP protocol the HTTP inspector recognised: ``h2c``, ``http/1.1``)."""
        self.original_destination: tuple[str, int] | None = None
        """Where the client was connecting to before it was intercepted (the
        ``original_dst`` listener filter reads it); None: it connected here."""
        self.hand_off_fallback = ""
        """MOSN's ``fallback_to_local``: the address whose listener takes a hand-over
        no listener of the exact address takes (empty: the wildcard address)."""
        self.handed_off = False
        """It was handed over by a ``use_original_dst`` listener (once is all)."""
        self.restored_remote: Any = None
        self.restored_local: Any = None
        """The client's and the destination's addresses as a PROXY protocol header
        gave them (the socket's peer is the load balancer)."""
        self.arrival: bytes | None = None
        """Set on a connection migrated from another process (an upgrade): the bytes
        it read and did not process, read here first; its listener filters ran there."""
        self.migrated_peer: Any = None
        """``(socket, bytes)``: the upstream connection migrated with it (``tcp_proxy``)
        and what was read from it and not yet written here; None once taken."""

    @property
    def remote_address(self) -> Any:
        if self.restored_remote is not None:
            return self.restored_remote
        return Connection.remote_address.fget(self)  # type: ignore[attr-defined]

    @property
    def local_address(self) -> Any:
        if self.restored_local is not None:
            return self.restored_local
        return Connection.local_address.fget(self)  # type: ignore[attr-defined]

    @property
    def direct_remote_address(self) -> Any:
        """The socket's peer, whatever a PROXY protocol header said."""
        return Connection.remote_address.fget(self)  # type: ignore[attr-defined]

    @property
    def destination_address(self) -> Any:
        """Where the client meant to go: the original destination, else the local address."""
        return self.original_destination or self.local_address

    def intercepted_destination(self, tproxy: bool) -> tuple[str, int] | None:
        """Where the client was going before iptables sent the connection here: the
        local address for TPROXY, ``SO_ORIGINAL_DST`` for a REDIRECT. None when the
        client connected to this listener's own address (nothing was intercepted)."""
        local = Connection.local_address.fget(self)  # type: ignore[attr-defined]
        if not isinstance(local, tuple):
            return None
        if tproxy:
            destination: tuple[str, int] | None = (local[0], local[1])
        else:
            sock = self.transport.get_extra_info("socket") if self.transport else None
            destination = redirected_destination(sock) if sock is not None else None
        if destination is None:
            return None
        ip, port = normal_ip(destination[0]), destination[1]
        listening = self.listener.sock
        if listening is not None:
            bound_ip, bound_port = listening.getsockname()[:2]
            if port == bound_port and normal_ip(bound_ip) in (ip, "0.0.0.0", "::"):
                return None
        return ip, port

    def move_to(self, listener: "Listener") -> None:
        """Counted from now on by ``listener`` (a hand-over)."""
        self.listener = listener
        self._rx = listener.stats.downstream_cx_rx_bytes_total
        self._tx = listener.stats.downstream_cx_tx_bytes_total
        self.handed_off = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.arrival is not None:
            self.listener.adopt(self, self.arrival)
        else:
            self.listener.on_accept(self)

    def on_idle_timeout(self) -> None:
        self._stats[self.listener.stats.downstream_cx_idle_timeout] += 1

    def on_closed(self, event: ConnectionEvent) -> None:
        self.listener.on_close(self)


class ListenerIndex:
    """The TCP listeners by address, for hand-overs: the listener of a destination
    is the one of that exact address, else the one of the fallback address at its
    port (``fallback_to_local``), else the wildcard one of its port (MOSN's order)."""

    def __init__(self, listeners: Iterable["Listener"]) -> None:
        self._by_address: dict[tuple[str, int], Listener] = {}
        for lst in listeners:
            address = lst.address
            if address is not None and not address.is_unix:
                self._by_address[(normal_ip(address.host or "0.0.0.0"), address.port)] = lst

    def find(self, destination: tuple[str, int], fallback: str = "") -> "Listener | None":
        ip, port = normal_ip(destination[0]), destination[1]
        by = self._by_address
        found = by.get((ip, port))
        if found is None and fallback:
            found = by.get((fallback, port))
        if found is None and not fallback:
            found = by.get(("0.0.0.0" if "." in ip else "::", port)) or by.get(("::", port))
        return found


class Listener:
    """Serves one bound socket (or, virtual, the connections handed to it): accepts,
    enforces the limit, runs the listener filters, installs a filter chain."""

    def __init__(
        self,
        name: str,
        sock: socket.socket | None,
        store: StatsStore,
        stats: Scope,
        chains: list[FilterChain],
        *,
        max_connections: int | None = None,
        idle_timeout: float | None = None,
        buffer_limit: int | None = None,
        listener_filters: tuple[ListenerFilterFactory, ...] = (),
        tls_optional: bool = False,
        listener_filters_timeout: float = DEFAULT_LISTENER_FILTERS_TIMEOUT,
        continue_on_listener_filters_timeout: bool = False,
        address: Address | None = None,
    ) -> None:
        """``sock`` None: a virtual listener. ``chains``: its filter chains (each with
        its ``mosn.tls.ServerTls`` or none); ``tls_optional``: a client a listener
        filter found not speaking TLS is served in plaintext (MOSN's ``inspector:
        true``). ``address``: where connections are handed to it from."""
        self.name = name
        self.sock = sock
        self.address = address
        self.store = store
        if flush_spliced_bytes not in store.refreshers:  # tcp_proxy's pairs count in ints
            store.refreshers.append(flush_spliced_bytes)
        self.stats = stats
        self.chains = chains
        self.selector = FilterChainSelector(chains)
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.buffer_limit = buffer_limit or DEFAULT_BUFFER_LIMIT
        self.connections: set[ServerConnection] = set()
        self.listener_filters = listener_filters
        self.listener_filters_timeout = listener_filters_timeout
        self.continue_on_listener_filters_timeout = continue_on_listener_filters_timeout
        self.tls_optional = tls_optional
        for chain in chains:
            if chain.tls is not None and chain.tls_stats is None:
                scope = store.scope(stats.prefix, stat_names(chain.tls.cipher_names()))
                chain.tls_stats = TlsStats(store, scope)
        self.hand_off: Callable[[tuple[str, int], str], Listener | None] | None = None
        """Set on a ``use_original_dst`` listener: finds the listener of an original
        destination (:meth:`ListenerIndex.find`)."""
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._paused: set[str] = {PAUSE_DRAIN}
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None
        self._accept_log = RateLimitedLog(log)
        self._overflow_log = RateLimitedLog(log)
        self._no_chain_log = RateLimitedLog(log)
        self._filter_error_log = RateLimitedLog(log)

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
        if self.sock is not None:
            self.sock.close()

    def pause_accepting(self, reason: str) -> None:
        self._paused.add(reason)
        self._update()

    def resume_accepting(self, reason: str) -> None:
        self._paused.discard(reason)
        self._update()

    def _update(self) -> None:
        sock = self.sock
        if sock is None:
            return  # virtual: nothing to accept from
        want = not self._paused and self.loop is not None and sock.fileno() >= 0
        if want is self._reading:
            return
        self._reading = want
        if want:
            self.loop.add_reader(sock.fileno(), self._accept)
        else:
            self.loop.remove_reader(sock.fileno())

    def _accept(self) -> None:
        assert self.sock is not None
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
        if self._admit(conn):
            self._run_filters(conn, b"")

    def adopt(self, conn: ServerConnection, unprocessed: bytes) -> None:
        """A connection migrated from another process: its listener filters ran
        there, so its filter chain is chosen now; ``unprocessed`` is read first."""
        if self._admit(conn, arrived=True):
            self._filters_done(conn, unprocessed)

    def _admit(self, conn: ServerConnection, arrived: bool = False) -> bool:
        """Count the connection in (``arrived``: migrated, so already counted in
        ``downstream_cx_total`` by the process it came from) unless at the limit."""
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
            return False
        if not arrived:
            values[s.downstream_cx_total] += 1
        values[s.downstream_cx_active] += 1
        self.connections.add(conn)
        if self.idle_timeout or conn.handed_off:
            conn.set_idle_timeout(self.idle_timeout)
        return True

    def _run_filters(self, conn: ServerConnection, first_bytes: bytes) -> None:
        if self.listener_filters:
            ListenerFilterStage(conn, [make() for make in self.listener_filters],
                                self._filters_done, self._filters_timed_out,
                                self._filter_failed, self.continue_on_listener_filters_timeout,
                                ).start(self.listener_filters_timeout, first_bytes)
        else:
            self._filters_done(conn, first_bytes)

    def _filters_timed_out(self) -> None:
        self.store.values[self.stats.downstream_pre_cx_timeout] += 1  # type: ignore[index]

    def _filter_failed(self, conn: ServerConnection, error: ListenerFilterError) -> None:
        index = self.stats.indices.get(error.stat, self.stats.downstream_listener_filter_error)
        self.store.values[index] += 1  # type: ignore[index]
        self._filter_error_log.log(logging.WARNING, "listener %s: connection from %s: %s; "
                                   "closed (%s)", self.name, conn.remote_address, error,
                                   error.stat)

    def _filters_done(self, conn: ServerConnection, first_bytes: bytes) -> None:
        """The listener filters are done: a hand-over by original destination, or the
        filter chain (with its TLS, unless a filter found plaintext and TLS is optional)."""
        if self.hand_off is not None and conn.original_destination is not None \
                and not conn.handed_off:
            target = self.hand_off(conn.original_destination, conn.hand_off_fallback)
            if target is not None and target is not self:
                self._hand_over(conn, target, first_bytes)
                return
        chain = self.selector.select(conn)
        if chain is None:
            self.store.values[self.stats.no_filter_chain_match] += 1  # type: ignore[index]
            self._no_chain_log.log(logging.INFO, "listener %s: no filter chain matches the "
                                   "connection from %s to %s; closed (no_filter_chain_match)",
                                   self.name, conn.remote_address, conn.destination_address)
            conn.close()
            return
        tls = chain.tls
        install = functools.partial(self._install, chain)
        if tls is not None and not (self.tls_optional and conn.detected_transport != "tls"):
            conn.start_tls(server_layer(conn, tls, chain.tls_stats, install),
                           tls.handshake_timeout)
        else:
            install(conn)
        if first_bytes:
            conn.replay(first_bytes)

    def _hand_over(self, conn: ServerConnection, target: "Listener", first_bytes: bytes) -> None:
        self.connections.discard(conn)
        values, s = self.store.values, self.stats
        values[s.downstream_cx_active] -= 1  # type: ignore[index]
        values[s.downstream_cx_handed_off] += 1  # type: ignore[index]
        conn.move_to(target)
        target.take_over(conn, first_bytes)

    def take_over(self, conn: ServerConnection, first_bytes: bytes) -> None:
        """A connection another listener handed over (its original destination is
        this listener's address), with the bytes its listener filters read."""
        if self._admit(conn):
            self._run_filters(conn, first_bytes)

    def _install(self, chain: FilterChain, conn: Any) -> None:
        try:
            chain.install(conn)
            for f in conn.read_filters:
                if f.on_new_connection() is FilterStatus.STOP:
                    break
        except Exception:
            log.exception("listener %s: filter chain %s failed on a new connection",
                          self.name, chain.name)
            conn.close()

    def on_close(self, conn: ServerConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            values, s = self.store.values, self.stats
            values[s.downstream_cx_active] -= 1  # type: ignore[index]
            values[s.downstream_cx_destroy] += 1  # type: ignore[index]
