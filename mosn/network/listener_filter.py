"""The listener-filter stage: between accept and the filter chain, each listener
filter in turn may look at the socket (the original destination) and wait for the
first bytes of the connection (the TLS inspector reads the ClientHello, the HTTP
inspector the request line, the PROXY protocol filter its header). Bytes are read,
not peeked, and handed on whole to what comes next (TLS or the filter chain), less
what a filter said was its own (a PROXY protocol header), so nothing is lost.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Callable

from mosn.network.filter import FilterStatus, ListenerFilter, ListenerFilterError

log = logging.getLogger("mosn.network")

MAX_LISTENER_FILTER_BYTES = 64 * 1024
"""Bytes held for the listener filters; past this they are done whatever they say
(a ClientHello fits: Envoy's inspector reads at most 64 KiB)."""

_STOP = FilterStatus.STOP


class _State(enum.Enum):
    WAIT = "wait"
    DONE = "done"
    CLOSED = "closed"


class ListenerFilterStage:
    """Runs ``filters`` on ``conn``, then calls ``done(conn, bytes_read)``. A timeout
    while a filter waits closes the connection (``on_timeout`` counts it) unless
    ``continue_on_timeout``: then the chain is chosen with what the filters found so
    far. EOF while a filter waits closes the connection; a filter that raises
    :class:`ListenerFilterError` has ``on_error(error)`` count it and the connection
    closed."""

    __slots__ = ("conn", "filters", "done", "on_timeout", "on_error", "buffer", "index",
                 "_asked", "_timer", "timeout", "continue_on_timeout")

    def __init__(self, conn: Any, filters: list[ListenerFilter],
                 done: Callable[[Any, bytes], None], on_timeout: Callable[[], None],
                 on_error: Callable[[Any, ListenerFilterError], None],
                 continue_on_timeout: bool = False) -> None:
        self.conn = conn
        self.filters = filters
        self.done = done
        self.on_timeout = on_timeout
        self.on_error = on_error
        self.continue_on_timeout = continue_on_timeout
        self.buffer = b""
        self.index = 0
        self._asked = False
        self._timer: Any = None
        self.timeout = 0.0

    def start(self, timeout: float, first_bytes: bytes = b"") -> None:
        """Run the filters; ``first_bytes``: what the connection sent before (it was
        handed over by another listener, whose filters read them)."""
        self.timeout = timeout
        self.buffer = first_bytes
        state = self._advance()
        if state is _State.DONE:
            self.done(self.conn, self.buffer)
        elif state is _State.WAIT:
            self.conn.set_stage(self)
            self._timer = self.conn.loop.call_later(timeout, self._timed_out)

    def receive(self, data: bytes) -> bytes:
        self.buffer += data
        state = self._advance()
        if state is _State.WAIT:
            return b""
        self._cancel()
        self.conn.set_stage(None)
        if state is _State.DONE:
            self.done(self.conn, self.buffer)
        return b""

    def _advance(self) -> _State:
        conn, filters = self.conn, self.filters
        try:
            while self.index < len(filters):
                f = filters[self.index]
                if not self._asked:
                    self._asked = True
                    if f.on_accept(conn) is not _STOP:
                        self._next(f)
                        continue
                    if not self.buffer:
                        return _State.WAIT
                if f.on_data(conn, self.buffer) is _STOP \
                        and len(self.buffer) < MAX_LISTENER_FILTER_BYTES:
                    return _State.WAIT
                self._next(f)
        except ListenerFilterError as exc:
            self.on_error(conn, exc)
            conn.close()
            return _State.CLOSED
        return _State.CLOSED if conn.closing else _State.DONE

    def _next(self, f: ListenerFilter) -> None:
        n = f.consumed()
        if n:
            self.buffer = self.buffer[n:]
        self.index += 1
        self._asked = False

    def _timed_out(self) -> None:
        self._timer = None
        conn = self.conn
        if self.continue_on_timeout:
            conn.set_stage(None)
            self.done(conn, self.buffer)
            return
        self.on_timeout()
        log.info("connection from %s: listener filters got no answer within %gs; closed",
                 conn.remote_address, self.timeout)
        conn.close()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_eof(self) -> bool:
        self._cancel()
        return True

    def on_lost(self) -> None:
        self._cancel()
