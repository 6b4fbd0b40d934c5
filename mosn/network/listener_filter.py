"""The listener-filter stage: between accept and the filter chain, each listener
filter in turn may wait for the first bytes of the connection (the TLS inspector
reads the ClientHello). Bytes are read, not peeked, and handed on whole to what
comes next (TLS or the filter chain), so nothing is lost.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from mosn.network.filter import FilterStatus, ListenerFilter

log = logging.getLogger("mosn.network")

MAX_LISTENER_FILTER_BYTES = 64 * 1024
"""Bytes held for the listener filters; past this they are done whatever they say
(a ClientHello fits: Envoy's inspector reads at most 64 KiB)."""


class ListenerFilterStage:
    """Runs ``filters`` on ``conn``, then calls ``done(conn, bytes_read)``; a timeout
    or EOF while a filter waits closes the connection (``on_timeout`` counts it)."""

    __slots__ = ("conn", "filters", "done", "on_timeout", "buffer", "index", "_timer",
                 "timeout")

    def __init__(self, conn: Any, filters: list[ListenerFilter],
                 done: Callable[[Any, bytes], None], on_timeout: Callable[[], None]) -> None:
        self.conn = conn
        self.filters = filters
        self.done = done
        self.on_timeout = on_timeout
        self.buffer = b""
        self.index = 0
        self._timer: Any = None
        self.timeout = 0.0

    def start(self, timeout: float) -> None:
        self.timeout = timeout
        while self.index < len(self.filters):
            if self.filters[self.index].on_accept(self.conn) is FilterStatus.STOP:
                self.conn.set_stage(self)
                self._timer = self.conn.loop.call_later(timeout, self._timed_out)
                return
            self.index += 1
        self.done(self.conn, b"")

    def receive(self, data: bytes) -> bytes:
        self.buffer += data
        conn, buffer = self.conn, self.buffer
        while self.index < len(self.filters):
            if self.filters[self.index].on_data(conn, buffer) is FilterStatus.STOP \
                    and len(buffer) < MAX_LISTENER_FILTER_BYTES:
                return b""
            self.index += 1
            # the next filter is asked first whether it needs bytes at all
            while self.index < len(self.filters) and \
                    self.filters[self.index].on_accept(conn) is not FilterStatus.STOP:
                self.index += 1
        self._cancel()
        conn.set_stage(None)
        self.done(conn, buffer)
        return b""

    def _timed_out(self) -> None:
        self._timer = None
        self.on_timeout()
        log.info("connection from %s: listener filters got no answer within %gs; closed",
                 self.conn.remote_address, self.timeout)
        self.conn.close()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_eof(self) -> bool:
        self._cancel()
        return True

    def on_lost(self) -> None:
        self._cancel()
