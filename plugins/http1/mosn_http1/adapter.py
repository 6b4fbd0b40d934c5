"""What the server and client adapters share: binding a reader to a connection's
reads (one feed at a time, in order), and a stream's writes and read disables.

The adapters are the only part of the codec that touches a connection (and through
it, the loop); the reading and writing rules are the sans-IO core's
(:mod:`mosn_http1.readers`, :mod:`mosn_http1.writers`, :mod:`mosn_http1.state`).
"""

from __future__ import annotations

from typing import Any

from mosn.network.filter import ConnectionCallbacks, FilterStatus, ReadFilter

_STOP = FilterStatus.STOP
CORK_JOIN_LIMIT = 16 * 1024
"""A head waiting for its body is joined with a first chunk up to this size into one
write (a copy is cheaper than a second send syscall); a larger chunk goes on its own."""


class FeedLoop(ReadFilter, ConnectionCallbacks):
    """A read filter that hands each read to ``_feed``, one at a time: a read that
    comes while one is being handled (a handler resumed reading and the connection
    delivered held bytes at once) waits its turn, so events stay in wire order."""

    __slots__ = ()

    def on_data(self, data: bytes) -> FilterStatus:
        if self._parsing:
            self._unparsed.append(data)
            return _STOP
        self._parsing = True
        try:
            self._feed(data)
            unparsed = self._unparsed
            while unparsed:
                self._feed(unparsed.pop(0))
        finally:
            self._parsing = False
        if self._after_reads_due:
            self._after_reads()
        return _STOP

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError

    def _after_reads(self) -> None:
        """Called when every read so far is handled, if ``_after_reads_due``."""


class StreamIO:
    """A stream's writes (a head held back to be joined with its first body bytes)
    and its counted read disables. The concrete streams declare the slots."""

    __slots__ = ()

    def _write_uncorked(self, conn: Any, data: bytes) -> None:
        """Write ``data`` after the head held back for it, in one write when small."""
        corked = self.corked
        if corked is not None:
            self.corked = None
            if len(data) <= CORK_JOIN_LIMIT:
                data = corked + data
            else:
                conn.write(corked)
        conn.write(data)

    def _cork(self, conn: Any, data: bytes) -> None:
        """Hold a head for the body that most often follows within the same call
        from the proxy; flushed on the next loop turn if it does not."""
        self.corked = data
        conn.loop.call_soon(self._uncork)

    def _read_disable(self, conn: Any, disable: bool) -> None:
        """Counted, so a stream only releases what it asked for."""
        if disable:
            self.disabled += 1
            conn.read_disable(True)
        elif self.disabled:
            self.disabled -= 1
            conn.read_disable(False)

    def _release_reads(self, conn: Any) -> None:
        """Undo the read disables this stream still holds."""
        while self.disabled:
            self.disabled -= 1
            conn.read_disable(False)
