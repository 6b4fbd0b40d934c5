"""UDP listeners: datagrams from each peer make a session that a filter chain serves
like a connection (MOSN's UDP listener; its ``udp_proxy`` filter is
:mod:`mosn.filters.udp_proxy`).

A :class:`UdpListener` reads its socket; the datagrams of a new peer start a
:class:`UdpSession` with the listener's filter chain installed, and every datagram of
that peer goes to the session's read filters; what they write goes back to the peer
from the listener's address. A session ends after its idle timeout (a datagram in
either direction keeps it) or when a filter closes it. :class:`UdpUpstream` is the
other side: a connected UDP socket to one host.

A datagram larger than the listener's ``max_datagram_size`` is dropped and counted
(``downstream_rx_datagram_dropped``), its peer logged at most once per interval;
nothing else is disturbed. Datagrams are not buffered anywhere: one that the socket
cannot take now is dropped, as the network itself may drop it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Callable

from mosn.network.filter import (
    CloseType,
    ConnectionCallbacks,
    ConnectionEvent,
    FilterStatus,
    ReadFilter,
)
from mosn.network.interception import set_mark
from mosn.observability.ratelimit import RateLimitedLog
from mosn.observability.stats import Scope, StatsStore

log = logging.getLogger("mosn.network")

UDP_READ_BATCH = 64
"""Datagrams read per wake-up before other work runs: a flood on one socket does not
starve the rest of the worker."""
MAX_UDP_PAYLOAD = 65535
"""Bytes of the largest UDP payload (IPv6 jumbograms aside): the read buffer."""

_STOP = FilterStatus.STOP

SessionInstaller = Callable[["UdpSession"], None]


class UdpSession:
    """One peer of a UDP listener, as a connection to its filter chain: ``write`` sends
    a datagram to the peer, read filters get each datagram it sends."""

    __slots__ = ("listener", "peer", "loop", "read_filters", "callbacks", "closed",
                 "_last_active", "_idle_handle", "_idle_timeout", "tls", "__weakref__")

    def __init__(self, listener: "UdpListener", peer: Any) -> None:
        self.listener = listener
        self.peer = peer
        self.loop = listener.loop
        self.read_filters: list[ReadFilter] = []
        self.callbacks: list[ConnectionCallbacks] = []
        self.closed = False
        self.tls = None
        self._last_active = self.loop.time()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_timeout = 0.0

    # the parts of the connection contract a datagram session has

    def add_read_filter(self, f: ReadFilter) -> None:
        self.read_filters.append(f)

    def add_callbacks(self, cb: ConnectionCallbacks) -> None:
        self.callbacks.append(cb)

    @property
    def remote_address(self) -> Any:
        return self.peer

    @property
    def local_address(self) -> Any:
        return self.listener.local_address

    @property
    def closing(self) -> bool:
        return self.closed

    def receive(self, data: bytes) -> None:
        self._last_active = self.loop.time()
        try:
            for f in self.read_filters:
                if f.on_data(data) is _STOP:
                    return
        except Exception as exc:
            self.listener.filter_failed(self, exc)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._last_active = self.loop.time()
        self.listener.send(data, self.peer)

    def read_disable(self, disable: bool) -> None:
        """Datagrams are not held back: a peer that outpaces its upstream loses them."""

    def hold(self, delta: int) -> None:
        """A session holds no bytes (nothing is buffered)."""

    def close(self, how: CloseType = CloseType.FLUSH_WRITE) -> None:
        if self.closed:
            return
        self.closed = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self.listener.on_close(self)
        try:
            for cb in self.callbacks:
                cb.on_event(ConnectionEvent.LOCAL_CLOSE)
        finally:
            self.read_filters = []
            self.callbacks = []

    def set_idle_timeout(self, seconds: float | None) -> None:
        """End the session ``seconds`` after the last datagram either way."""
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self._idle_timeout = seconds or 0.0
        if seconds:
            self._idle_handle = self.loop.call_later(seconds, self._idle_check)

    def _idle_check(self) -> None:
        idle = self.loop.time() - self._last_active
        if idle < self._idle_timeout:
            self._idle_handle = self.loop.call_later(self._idle_timeout - idle, self._idle_check)
            return
        self._idle_handle = None
        self.listener.count(self.listener.stats.downstream_cx_idle_timeout)
        self.close()

    def __repr__(self) -> str:
        return f"<UdpSession {self.peer} on {self.listener.name}>"


class UdpListener:
    """Serves one bound UDP socket: a session per peer, each with the filter chain.
    It has a TCP listener's surface where the process drives it (start, pause and
    stop accepting, ``connections``)."""

    def __init__(self, name: str, sock: socket.socket, store: StatsStore, stats: Scope,
                 install: SessionInstaller, *, max_datagram_size: int) -> None:
        self.name = name
        self.sock = sock
        self.store = store
        self.stats = stats
        self.install = install
        self.max_datagram_size = max_datagram_size
        self.sessions: dict[Any, UdpSession] = {}
        """The sessions, by peer address."""
        self.connections: set[UdpSession] = set()
        """The sessions, as the process sees a listener's connections (draining waits
        for them; shutting down closes them)."""
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.local_address: Any = sock.getsockname()
        self.address = None  # takes no TCP hand-overs
        self._paused: set[str] = set()
        self._reading = False
        self._drop_log = RateLimitedLog(log)
        self._error_log = RateLimitedLog(log)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._reading = True
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def pause_accepting(self, reason: str) -> None:
        """New peers' datagrams are dropped (the overload manager; draining); the
        sessions open go on."""
        self._paused.add(reason)

    def resume_accepting(self, reason: str) -> None:
        self._paused.discard(reason)

    def stop_accepting(self) -> None:
        """Draining: no new session; the open ones go on until they are idle."""
        self.pause_accepting("drain")

    def count(self, index: int, n: int = 1) -> None:
        self.store.values[index] += n  # type: ignore[index]

    def _readable(self) -> None:
        sock, limit, values, s = self.sock, self.max_datagram_size, self.store.values, self.stats
        assert values is not None
        for _ in range(UDP_READ_BATCH):
            try:
                data, peer = sock.recvfrom(min(limit + 1, MAX_UDP_PAYLOAD))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._error_log.log(logging.WARNING, "listener %s: reading a datagram "
                                    "failed: %s", self.name, exc)
                return
            if len(data) > limit:
                values[s.downstream_rx_datagram_dropped] += 1
                self._drop_log.log(logging.WARNING, "listener %s: a datagram from %s is larger "
                                   "than max_datagram_size (%d bytes); dropped "
                                   "(downstream_rx_datagram_dropped)", self.name, peer, limit)
                continue
            values[s.downstream_cx_rx_bytes_total] += len(data)
            session = self.sessions.get(peer)
            if session is None:
                session = self._new_session(peer)
                if session is None:
                    continue
            session.receive(data)

    def _new_session(self, peer: Any) -> UdpSession | None:
        if self._paused:
            return None
        values, s = self.store.values, self.stats
        session = UdpSession(self, peer)
        self.sessions[peer] = session
        self.connections.add(session)
        values[s.downstream_cx_total] += 1  # type: ignore[index]
        values[s.downstream_cx_active] += 1  # type: ignore[index]
        try:
            self.install(session)
            for f in session.read_filters:
                if f.on_new_connection() is _STOP:
                    break
        except Exception:
            log.exception("listener %s: filter chain failed on a new session", self.name)
            session.close()
        return None if session.closed else session

    def send(self, data: bytes, peer: Any) -> None:
        try:
            self.sock.sendto(data, peer)
        except (BlockingIOError, InterruptedError):
            return  # the socket's buffer is full: dropped, as the network might
        except OSError as exc:
            self._error_log.log(logging.WARNING, "listener %s: sending a datagram to %s "
                                "failed: %s", self.name, peer, exc)
            return
        self.count(self.stats.downstream_cx_tx_bytes_total, len(data))

    def filter_failed(self, session: UdpSession, exc: Exception) -> None:
        self._error_log.log(logging.ERROR, "listener %s: a read filter raised %s on %r; "
                            "session closed", self.name, type(exc).__name__, session,
                            exc_info=exc)
        session.close()

    def on_close(self, session: UdpSession) -> None:
        if self.sessions.get(session.peer) is session:
            del self.sessions[session.peer]
            self.connections.discard(session)
            values, s = self.store.values, self.stats
            values[s.downstream_cx_active] -= 1  # type: ignore[index]
            values[s.downstream_cx_destroy] += 1  # type: ignore[index]


class UdpUpstream:
    """A connected UDP socket to one host: ``send`` a datagram, ``on_datagram`` gets
    each one the host sends back. Raises OSError when the socket cannot be made (a
    host that is not an IP address: UDP hosts are resolved by their cluster)."""

    __slots__ = ("loop", "sock", "on_datagram", "on_error", "closed")

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int,
                 on_datagram: Callable[[bytes], None], on_error: Callable[[OSError], None],
                 mark: int = 0) -> None:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if mark:
                set_mark(sock, mark)
            sock.connect(sockaddr)
        except OSError:
            sock.close()
            raise
        self.loop = loop
        self.sock = sock
        self.on_datagram = on_datagram
        self.on_error = on_error
        self.closed = False
        loop.add_reader(sock.fileno(), self._readable)

    def send(self, data: bytes) -> bool:
        """False when the datagram was dropped (the socket's buffer is full, or the
        host refused the last one)."""
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.on_error(exc)
            return False
        return True

    def _readable(self) -> None:
        for _ in range(UDP_READ_BATCH):
            if self.closed:
                return
            try:
                data = self.sock.recv(MAX_UDP_PAYLOAD)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable for an earlier datagram
                self.on_error(exc)
                return
            self.on_datagram(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
