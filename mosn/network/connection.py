"""Connections: asyncio Protocols with read/write filter chains and events.

The data path is callbacks all the way (DESIGN.md: asyncio Protocols on uvloop ran
5x the rate of stream-based IO here): ``data_received`` hands each chunk to the read
filters; ``write`` passes it through the write filters to the transport. Backpressure
is the transport's: above ``buffer_limit`` queued bytes it calls ``pause_writing``,
which is passed on to the connection's callbacks so whoever feeds it stops reading.

Every byte a connection buffers (its write buffer, and what its codec holds through
``hold``) counts against the process's buffer budget (:mod:`mosn.network.budget`). A
read filter that raises is reported to the connection's callbacks (``on_filter_error``);
unhandled, the connection is reset and the failure logged, never left to the event
loop (which would log a traceback per failure and reset without a word).

Between the transport and the read filters a connection may have a *stage*: the
listener filters reading the first bytes (:mod:`mosn.network.listener_filter`), then
TLS (:mod:`mosn.network.tls`), which turns ciphertext into plaintext on the way in and
back on the way out. A plaintext connection has none and pays one test per read.

Two connections that only pass bytes to each other (``tcp_proxy``'s pair) can be
*spliced* (``splice``): each read is then written to the other's transport from
``data_received`` itself, as the least forwarder on uvloop does, with the same byte
stats, idle-timeout activity and buffer budget as ``write``, and no call through the
read filters or the write path. Any change to either connection (a filter or stage
added, a half-close, a close) ends the splice, and the filters see every byte again.
A spliced read counts its bytes in plain ints on the two connections, written to the
stats store when the splice ends, every ``SPLICE_FLUSH_INTERVAL`` and whenever the
process reads its stats (``flush_spliced_bytes``, a refresher of the listener's store).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Callable

from mosn.config.types import Address
from mosn.network.budget import BUDGET, SHED_MIN_BYTES
from mosn.network.filter import (
    CloseType,
    ConnectionCallbacks,
    ConnectionEvent,
    FilterStatus,
    ReadFilter,
    WriteFilter,
)
from mosn.network.interception import set_mark
from mosn.observability.ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from mosn.network.tls import TlsLayer

log = logging.getLogger("mosn.network")
_filter_errors = RateLimitedLog(log)

DEFAULT_BUFFER_LIMIT = 1024 * 1024
"""Bytes a connection queues for writing before it asks its source to stop
(Envoy's default ``per_connection_buffer_limit_bytes``); it resumes at half."""
DELAYED_CLOSE_TIMEOUT = 1.0
"""Seconds a flushing close waits for the peer to take the rest before resetting,
so a peer that never reads cannot pin a closed connection (Envoy's default)."""
IDLE_CHECKS_PER_TIMEOUT = 4
"""Idle checks per idle timeout: cheaper than re-arming a timer on every read; an
idle connection is closed between 1x and 1.25x its timeout."""

UNREAD_LIMIT = 256 * 1024
"""Bytes read from a socket the peer reset under a write, before the close (see
``_read_unread``): the last frames a peer sends before it resets (an HTTP/2 GOAWAY, a
response's end) take a few KiB; more is not waited for."""
_PEER_RESET = (ConnectionResetError, BrokenPipeError)
_STOP = FilterStatus.STOP
SPLICE_FLUSH_INTERVAL = 0.5
"""Seconds between writes of the spliced pairs' byte counts to the stats store. Adding
to a shared-memory stat cell on every read cost about 1 us per ping-pong round trip
(two cells per read) against a plain int; the process's own stats reads flush first,
so they are exact, and a worker's parent sees the counts at most this late."""
_ids = itertools.count(1)
_spliced: set["Connection"] = set()
"""This process's spliced connections (their byte counts flushed together)."""
_flush: list[Any] = [None, None]
"""The loop and the timer handle of the periodic flush, while one is armed."""


def flush_spliced_bytes() -> None:
    """Write every spliced connection's byte counts to the stats store now."""
    for conn in _spliced:
        conn.flush_bytes()


def _periodic_flush() -> None:
    _flush[1] = None
    flush_spliced_bytes()
    _arm_flush(_flush[0])


def _arm_flush(loop: asyncio.AbstractEventLoop) -> None:
    if _spliced and (_flush[1] is None or _flush[0] is not loop) and not loop.is_closed():
        _flush[0] = loop
        _flush[1] = loop.call_later(SPLICE_FLUSH_INTERVAL, _periodic_flush)
_NO_STATS = memoryview(bytearray(16)).cast("q")


class Connection(asyncio.Protocol):
    """One side of a proxied connection. Subclasses add accept or connect."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        stats: memoryview | None = None,
        rx_index: int = 0,
        tx_index: int = 1,
    ) -> None:
        self.id = next(_ids)
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._peer: Any = None
        self.read_filters: list[ReadFilter] = []
        self.write_filters: list[WriteFilter] = []
        self.callbacks: list[ConnectionCallbacks] = []
        self.buffer_limit = buffer_limit
        self.closed = False
        self.close_event: ConnectionEvent | None = None
        self.close_error: BaseException | None = None
        self._stats = _NO_STATS if stats is None else stats
        self._rx = rx_index
        self._tx = tx_index
        self._read_disabled = 0
        self._held: list[bytes] = []
        self._local_close = False
        self._eof_received = False
        self._eof_sent = False
        self._active = False
        self._reads_are_activity = True
        self._idle_handle: asyncio.TimerHandle | None = None
        self._idle_checks = 0
        self._close_timer: asyncio.TimerHandle | None = None
        self.buffered = 0
        """Bytes this connection holds: its write buffer and what ``hold`` added."""
        self._write_buffered = 0
        self._holder = False
        self.tls: TlsLayer | None = None
        """The connection's TLS (negotiated ALPN, SNI, the peer's certificate and
        identity), or None for plaintext."""
        self._stage: Any = None
        self._intake: Callable[[bytes], bytes] | None = None
        self._sink: Connection | None = None
        """The spliced peer (``splice``): what is read here is written there."""
        self._rx_unflushed = 0
        self._tx_unflushed = 0
        """Bytes read and written while spliced, not yet in the stats store."""

    # -- building -----------------------------------------------------------------------

    def add_read_filter(self, f: ReadFilter) -> None:
        self.unsplice()
        self.read_filters.append(f)

    def add_write_filter(self, f: WriteFilter) -> None:
        self.unsplice()
        self.write_filters.append(f)

    def add_callbacks(self, cb: ConnectionCallbacks) -> None:
        self.callbacks.append(cb)

    def hand_over(self, codec: Any, take_over: Callable[[], bool]) -> bool:
        """Hand the connection from ``codec`` (installed as a read filter and as
        callbacks) to another: ``codec`` is taken off, then ``take_over()`` installs
        the other with ``add_read_filter``/``add_callbacks`` and says whether it took
        the connection. If it did not, ``codec`` is put back where it was. An HTTP/1.1
        upgrade to a protocol the proxy speaks (``h2c``) is made so."""
        self.unsplice()
        filters, callbacks = self.read_filters, self.callbacks
        at_filter = filters.index(codec) if codec in filters else None
        at_callbacks = callbacks.index(codec) if codec in callbacks else None
        if at_filter is not None:
            del filters[at_filter]
        if at_callbacks is not None:
            del callbacks[at_callbacks]
        if take_over():
            return True
        if at_filter is not None:
            self.read_filters.insert(at_filter, codec)
        if at_callbacks is not None:
            self.callbacks.insert(at_callbacks, codec)
        return False

    @property
    def remote_address(self) -> Any:
        peer = self._peer
        if peer is None and self.transport is not None:
            # Kept: the loop builds the address anew on every ask (uvloop converts the
            # socket address each time), and the proxy asks on every request.
            peer = self._peer = self.transport.get_extra_info("peername")
        return peer

    @property
    def local_address(self) -> Any:
        return self.transport.get_extra_info("sockname") if self.transport else None

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=self.buffer_limit)  # type: ignore[attr-defined]
        if self._read_disabled:
            transport.pause_reading()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None and not self._read_disabled:
            # Spliced: what the read filter's ``write`` to the peer would do, here.
            n = len(data)
            self._active = True
            self._rx_unflushed += n
            sink._active = True
            sink._tx_unflushed += n
            transport = sink.transport
            transport.write(data)  # type: ignore[union-attr]
            size = transport.get_write_buffer_size()  # type: ignore[union-attr]
            if size != sink._write_buffered:
                sink._account_write(size)
            return
        if self._reads_are_activity:
            self._active = True
        self._stats[self._rx] += len(data)
        intake = self._intake
        if intake is not None:
            data = intake(data)
            if not data:
                return
        if self._read_disabled:
            # A loop may deliver one read after pause_reading (uvloop starts reading
            # after connection_made): hold it until reading is enabled again.
            self._held.append(data)
            return
        try:
            for f in self.read_filters:
                if f.on_data(data) is _STOP:
                    return
        except Exception as exc:
            self._filter_failed(exc)

    def eof_received(self) -> bool:
        self._eof_received = True
        if self._stage is not None and self._stage.on_eof():
            return False  # the stage failed (a handshake cut short): close
        if self._read_disabled:
            return True  # delivered by read_disable(False)
        return self._deliver_eof()

    def _deliver_eof(self) -> bool:
        keep = False
        try:
            for f in self.read_filters:
                keep = f.on_eof() or keep
        except Exception as exc:
            self._filter_failed(exc)
            return True  # the handler closes (or has closed) the connection
        # Both directions finished: let the transport close.
        return keep and not self._eof_sent

    def _filter_failed(self, exc: Exception) -> None:
        """A read filter (or something it called) raised: its callbacks may handle it
        (the proxy answers in the protocol and counts it); else reset the connection."""
        try:
            for cb in list(self.callbacks):
                handle = getattr(cb, "on_filter_error", None)
                if handle is not None and handle(exc):
                    return
        except Exception as again:
            exc = again
        _filter_errors.log(logging.ERROR, "connection %s: a read filter raised %s; "
                           "connection reset", self, type(exc).__name__, exc_info=exc)
        self.close(CloseType.NO_FLUSH)

    def pause_writing(self) -> None:
        for cb in self.callbacks:
            cb.on_above_write_buffer_high_watermark()

    def resume_writing(self) -> None:
        self.refresh_write_buffer()
        for cb in self.callbacks:
            cb.on_below_write_buffer_low_watermark()

    def connection_lost(self, exc: Exception | None) -> None:
        self.unsplice()
        if self._idle_handle:
            self._idle_handle.cancel()
        if self._close_timer:
            self._close_timer.cancel()
        if isinstance(exc, _PEER_RESET) and self.tls is None and not self._local_close:
            self._read_unread()
        self.close_error = exc
        if self._stage is not None:
            self._stage.on_lost()
        self._raise_close(ConnectionEvent.LOCAL_CLOSE if self._local_close
                          else ConnectionEvent.REMOTE_CLOSE)

    def _read_unread(self) -> None:
        """The peer reset the connection and a write found out first: the event loop
        (uvloop and asyncio alike) closes the connection on the write's error without
        reading what the peer sent before its reset, which the socket still holds (an
        HTTP/2 upstream's GOAWAY naming the requests it never processed, so they can be
        sent again). Read it now, without blocking, and hand it to the read filters
        before the close. (Plaintext only: a TLS stage is not fed after its peer reset.)"""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        try:
            fd = sock.fileno() if sock is not None else -1
        except OSError:
            return
        left = UNREAD_LIMIT
        while fd >= 0 and left > 0 and not self.closed and not self._local_close:
            try:
                data = os.read(fd, left)
            except OSError:  # nothing more (EAGAIN), or the reset itself
                return
            if not data:
                return
            left -= len(data)
            self.data_received(data)

    # -- using --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        for f in self.write_filters:
            data = f.on_write(data)  # type: ignore[assignment]
            if data is None:
                return
        if self.closed or self._local_close:
            return
        if self.tls is not None:
            data = self.tls.send(data)
            if not data:
                return
        self._active = True
        self._stats[self._tx] += len(data)
        transport = self.transport
        transport.write(data)  # type: ignore[union-attr]
        size = transport.get_write_buffer_size()  # type: ignore[union-attr]
        if size != self._write_buffered:
            self._account_write(size)

    # -- splicing two connections ------------------------------------------------------

    def splice(self, peer: Connection, own: ReadFilter, peers: ReadFilter) -> bool:
        """Join this connection and ``peer`` both ways: from now on a read on either is
        written to the other's transport straight from ``data_received``, counted as
        ``write`` counts it (byte stats, activity, the buffer budget) but past the read
        filters and the write path. The caller vouches that ``own`` (this connection's
        read filter) and ``peers`` (``peer``'s) do nothing with a chunk but ``write``
        it to the other connection; the rest is checked here: each has that filter as
        its only read filter, neither has write filters, a stage (listener filters,
        TLS) or a half-close sent, both count reads as activity and are open. False
        (nothing changed) when one of those does not hold. Reading disabled still
        holds what is read; any later change to either connection ends the splice
        (``unsplice``), and their filters see every byte from then on."""
        if peer is self or self._sink is not None or peer._sink is not None:
            return False
        for conn, only in ((self, own), (peer, peers)):
            filters = conn.read_filters
            if (len(filters) != 1 or filters[0] is not only or conn.write_filters
                    or conn._stage is not None or conn.tls is not None or conn._eof_sent
                    or not conn._reads_are_activity or conn.transport is None
                    or conn.closing):
                return False
        self._sink = peer
        peer._sink = self
        _spliced.add(self)
        _spliced.add(peer)
        _arm_flush(self.loop)
        return True

    @property
    def spliced(self) -> Connection | None:
        """The connection this one is spliced to (``splice``), or None."""
        return self._sink

    def unsplice(self) -> None:
        """End the splice (both ways): reads go through the read filters again."""
        peer = self._sink
        if peer is not None:
            self._sink = peer._sink = None
            for conn in (self, peer):
                conn.flush_bytes()
                _spliced.discard(conn)

    def flush_bytes(self) -> None:
        """Write the byte counts of spliced reads and writes to the stats store."""
        if self._rx_unflushed:
            self._stats[self._rx] += self._rx_unflushed
            self._rx_unflushed = 0
        if self._tx_unflushed:
            self._stats[self._tx] += self._tx_unflushed
            self._tx_unflushed = 0

    # -- the buffer budget --------------------------------------------------------------

    def hold(self, delta: int) -> None:
        """``delta`` bytes more (fewer, if negative) held for this connection by its
        codec or the proxy: a partial frame, requests in flight, a body waiting. They
        count against the process's buffer budget until released or the connection
        closes (which releases the connection's whole share)."""
        if self.closed:
            return
        n = self.buffered = self.buffered + delta
        budget = BUDGET
        used = budget.used = budget.used + delta
        if used > budget.high or used < budget.low:
            budget.changed()
        if (n >= SHED_MIN_BYTES) is not self._holder:
            self._holder = not self._holder
            if self._holder:
                budget.holders.add(self)
            else:
                budget.holders.discard(self)

    def _account_write(self, size: int) -> None:
        delta = size - self._write_buffered
        self._write_buffered = size
        if size:
            BUDGET.writing.add(self)
        else:
            BUDGET.writing.discard(self)
        self.hold(delta)

    def refresh_write_buffer(self) -> None:
        """Read the write buffer's size again (it shrinks as the peer reads, unseen)."""
        transport = self.transport
        size = 0 if transport is None or self.closed else transport.get_write_buffer_size()
        if size != self._write_buffered:
            self._account_write(size)

    def _release_budget(self) -> None:
        budget = BUDGET
        budget.used -= self.buffered
        self.buffered = self._write_buffered = 0
        budget.writing.discard(self)
        if self._holder:
            self._holder = False
            budget.holders.discard(self)

    @property
    def closing(self) -> bool:
        """Closed, or closing once what is buffered is written."""
        return self.closed or self._local_close

    def shed(self) -> None:
        """Close to free what the connection holds (the overload manager): each read
        filter's ``on_shed`` answers what its protocol can (an RPC codec: the requests
        in flight, with the protocol's overload status); what was written is flushed
        unless the write buffer is itself the problem. Its share leaves the budget now."""
        if self.closing:
            return
        for f in list(self.read_filters):
            on_shed = getattr(f, "on_shed", None)
            if on_shed is not None:
                try:
                    on_shed()
                except Exception as exc:
                    _filter_errors.log(logging.ERROR, "connection %s: on_shed raised %s", self,
                                       type(exc).__name__, exc_info=exc)
        transport = self.transport
        drop = transport is None or transport.get_write_buffer_size() > self.buffer_limit
        self._release_budget()
        self.close(CloseType.NO_FLUSH if drop else CloseType.FLUSH_WRITE)

    def write_raw(self, data: bytes) -> None:
        """Bytes straight to the transport, past the write filters and TLS (the TLS
        layer's own records: handshake, alerts, close_notify)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._active = True
        self._stats[self._tx] += len(data)
        transport.write(data)
        size = transport.get_write_buffer_size()
        if size != self._write_buffered:
            self._account_write(size)

    # -- stages between the transport and the read filters -------------------------------

    def set_stage(self, stage: Any) -> None:
        """Pass every byte read through ``stage.receive`` (it returns what the read
        filters get) until the next ``set_stage``; ``stage.on_eof()`` (True: close)
        and ``stage.on_lost()`` are told of the end. None: no stage."""
        self.unsplice()
        self._stage = stage
        self._intake = stage.receive if stage is not None else None

    def start_tls(self, layer: "TlsLayer", timeout: float) -> None:
        """Make ``layer`` the connection's TLS: from now on bytes read are ciphertext
        and bytes written are encrypted."""
        self.tls = layer
        self.set_stage(layer)
        layer.start(timeout)

    def replay(self, data: bytes) -> None:
        """Deliver bytes read earlier (by a listener filter) as if they arrived now."""
        intake = self._intake
        if intake is not None:
            data = intake(data)
        if not data or self.closed:
            return
        if self._read_disabled:
            self._held.append(data)
            return
        try:
            for f in self.read_filters:
                if f.on_data(data) is _STOP:
                    return
        except Exception as exc:
            self._filter_failed(exc)

    def write_eof(self) -> None:
        """Half-close: nothing more will be written (the peer reads EOF)."""
        if self.closed or self._local_close or self._eof_sent:
            return
        self.unsplice()
        self._eof_sent = True
        if self._eof_received or not self.transport.can_write_eof():  # type: ignore[union-attr]
            self.close(CloseType.FLUSH_WRITE)
        else:
            if self.tls is not None:
                self.tls.close_notify()
            self.transport.write_eof()  # type: ignore[union-attr]

    def read_disable(self, disable: bool) -> None:
        """Stop (or resume) reading; counted, so two reasons to stop need two resumes."""
        self._read_disabled += 1 if disable else -1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if disable:
            if self._read_disabled == 1:
                transport.pause_reading()
            return
        if self._read_disabled:
            return
        while self._held and not self._read_disabled and not self.closing:
            data = self._held.pop(0)
            try:
                for f in self.read_filters:
                    if f.on_data(data) is _STOP:
                        break
            except Exception as exc:
                self._filter_failed(exc)
        if self._read_disabled or self.closed:
            return
        if self._eof_received:
            if not self._deliver_eof():
                self.close(CloseType.FLUSH_WRITE)
        else:
            transport.resume_reading()

    def close(self, how: CloseType = CloseType.FLUSH_WRITE) -> None:
        if self.closed or self._local_close:
            return
        self.unsplice()
        if how is CloseType.FLUSH_WRITE and self.tls is not None and not self._eof_sent:
            self.tls.close_notify()
        self._local_close = True
        transport = self.transport
        if transport is None:
            self._raise_close(ConnectionEvent.LOCAL_CLOSE)
            return
        if how is CloseType.NO_FLUSH:
            transport.abort()
            return
        transport.close()
        if transport.get_write_buffer_size():
            self._close_timer = self.loop.call_later(DELAYED_CLOSE_TIMEOUT, transport.abort)

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Close the connection after ``seconds`` with no byte read or written."""
        if self._idle_handle:
            self._idle_handle.cancel()
            self._idle_handle = None
        if seconds:
            self._idle_checks = 0
            self._schedule_idle_check(seconds / IDLE_CHECKS_PER_TIMEOUT)

    def _schedule_idle_check(self, period: float) -> None:
        self._idle_handle = self.loop.call_later(period, self._idle_check, period)

    def _idle_check(self, period: float) -> None:
        if self._active:
            self._active = False
            self._idle_checks = 0
        else:
            self._idle_checks += 1
            if self._idle_checks >= IDLE_CHECKS_PER_TIMEOUT:
                self.on_idle_timeout()
                self.close(CloseType.FLUSH_WRITE)
                return
        self._schedule_idle_check(period)

    def count_reads_as_activity(self, count: bool) -> None:
        """Whether bytes read keep the idle timeout off (they do unless told). An L7
        codec turns this off while a request head is incomplete: a client trickling
        a head byte by byte does not hold an otherwise idle connection open."""
        if not count:
            self.unsplice()
        self._reads_are_activity = count

    def on_idle_timeout(self) -> None:
        """Called just before an idle connection is closed (for stats)."""

    # -- migration to another process (mosn.network.migration) ----------------------------

    def held_bytes(self) -> bytes:
        """Bytes read while reading was disabled and not yet given to the filters."""
        return b"".join(self._held)

    @property
    def write_pending(self) -> int:
        """Bytes written to the transport and not yet taken by the kernel."""
        transport = self.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    @property
    def at_eof(self) -> bool:
        """The peer has sent its last byte (a half-close)."""
        return self._eof_received

    def fileno(self) -> int:
        """The descriptor of this connection's socket (to pass to another process)."""
        return self.transport.get_extra_info("socket").fileno()  # type: ignore[union-attr]

    def detach(self) -> None:
        """Another process continues this connection on its own descriptor: close this
        process's one without a word to the peer (the socket lives on over there)."""
        self.unsplice()
        self._local_close = True
        self._held.clear()
        transport = self.transport
        if transport is None:
            self._raise_close(ConnectionEvent.LOCAL_CLOSE)
        else:
            transport.abort()

    def _raise_close(self, event: ConnectionEvent) -> None:
        if self.closed:
            return
        self.unsplice()
        self.closed = True
        self.close_event = event
        self.on_closed(event)
        try:
            for cb in self.callbacks:
                cb.on_event(event)
        finally:
            self._release_budget()
            # Nothing is delivered to a closed connection: dropping its filters breaks
            # the reference cycles through them (codec -> connection -> codec), so what
            # they hold (a partial frame of megabytes) is freed now, not at the next
            # garbage collection.
            self._held = []
            self.read_filters = []
            self.write_filters = []
            self.callbacks = []

    def on_closed(self, event: ConnectionEvent) -> None:
        """Called once when the connection is gone (for stats and bookkeeping)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self.remote_address}>"


class ClientConnection(Connection):
    """An upstream connection: ``connect()`` it, then it raises CONNECTED or a failure."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(loop, **kwargs)
        self._connect_task: asyncio.Task[Any] | None = None
        self.connect_failure: ConnectionEvent | None = None
        self.socket_mark = 0
        """``SO_MARK`` of the connection's packets (0: none; set before ``connect()``)."""
        self.tls_setup: Callable[["ClientConnection"], tuple["TlsLayer", float]] | None = None
        """Set before ``connect()`` to speak TLS: returns the layer (made with
        :meth:`established` as its callback) and its handshake timeout. CONNECTED
        is raised once the handshake is done."""
        self.up = False

    def connect(self, address: Address, timeout: float) -> None:
        self._connect_task = self.loop.create_task(self._connect(address, timeout))

    def adopt(self, sock: socket.socket) -> None:
        """Continue a connection already made (by the process an upgrade replaced):
        CONNECTED is raised as for ``connect``."""
        self._connect_task = self.loop.create_task(self._adopt(sock))

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            await self.loop.create_connection(lambda: self, sock=sock)
        except OSError as exc:
            sock.close()
            self._fail(ConnectionEvent.CONNECT_FAILED, exc)
        except asyncio.CancelledError:
            sock.close()

    async def _connect(self, address: Address, timeout: float) -> None:
        loop = self.loop
        try:
            async with asyncio.timeout(timeout):
                if address.is_unix:
                    await loop.create_unix_connection(lambda: self, address.path)
                elif self.socket_mark:
                    await loop.create_connection(lambda: self, sock=await marked_socket(
                        loop, address, self.socket_mark))
                else:
                    await loop.create_connection(lambda: self, address.host, address.port)
        except TimeoutError:
            self._fail(ConnectionEvent.CONNECT_TIMEOUT, None)
        except (OSError, socket.gaierror) as exc:
            self._fail(ConnectionEvent.CONNECT_FAILED, exc)
        except asyncio.CancelledError:
            pass

    def _fail(self, event: ConnectionEvent, exc: BaseException | None) -> None:
        self.connect_failure = event
        self.close_error = exc
        self._raise_close(event)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._local_close:  # closed while connecting
            transport.close()
            return
        if self.tls_setup is not None:
            try:
                layer, timeout = self.tls_setup(self)
            except (ValueError, OSError) as exc:  # no name to verify the peer by ...
                log.error("%r: cannot start TLS: %s", self, exc)
                self._fail(ConnectionEvent.CONNECT_FAILED, exc)
                transport.abort()
                return
            self.start_tls(layer, timeout)
            return
        self.established(self)

    def established(self, _conn: Any = None) -> None:
        """The connection (and its TLS, if any) is up."""
        self.up = True
        self.on_connected()
        for cb in self.callbacks:
            cb.on_event(ConnectionEvent.CONNECTED)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.tls is not None and not self.up and not self.closed:
            # The TLS handshake did not finish: for the pool and the stats, the
            # connect failed.
            if self._close_timer:
                self._close_timer.cancel()
            self.tls.on_lost()
            self._fail(ConnectionEvent.CONNECT_FAILED, exc)
            return
        super().connection_lost(exc)

    def on_connected(self) -> None:
        """Called once the connection is up (for stats)."""

    def close(self, how: CloseType = CloseType.FLUSH_WRITE) -> None:
        if self.transport is None and self._connect_task is not None:
            self._connect_task.cancel()
        super().close(how)


ConnectionFactory = Callable[[], Connection]


async def marked_socket(loop: asyncio.AbstractEventLoop, address: Address,
                        mark: int) -> socket.socket:
    """A socket connected to ``address`` whose packets carry ``mark`` (set before the
    SYN leaves, so no iptables rule sees an unmarked packet of it)."""
    family, type_, proto, _, sockaddr = (await loop.getaddrinfo(
        address.host, address.port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setblocking(False)
        set_mark(sock, mark)
        await loop.sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock
