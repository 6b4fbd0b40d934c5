"""What the server and client adapters share: binding a reader to a connection's
reads (one feed at a time, in order), and a stream's writes and read disables.

The adapters are the only part of the codec that touches a connection (and through
it, the loop); the reading and writing rules are the sans-IO core's
(:mod:`mosn_http1.readers`, :mod:`mosn_http1.writers`, :mod:`mosn_http1.state`).
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from mosn.network.filter import ConnectionCallbacks, FilterStatus, ReadFilter

_STOP = FilterStatus.STOP
CORK_JOIN_LIMIT = 16 * 1024
"""A head waiting for its body is joined with a first chunk up to this size into one
write (a copy is cheaper than a second send syscall); a larger chunk goes on its own."""


class Reads:
    """The HTTP/1 reads being handled on one loop, and the heads held back meanwhile.

    A stream holds a head back to send it with its body's first bytes in one write;
    most often the body follows within the same read (an upstream's response read
    whole: the proxy sends the head, then the body, from that read). What is still
    held when the outermost read being handled ends is written then, so no callback
    is scheduled for each response; a head held outside any read (from a timer's
    callback) is written on the loop's next turn. One per loop, so per thread."""

    __slots__ = ("depth", "corked")

    def __init__(self) -> None:
        self.depth = 0
        """Reads being handled (nested: a handler's resume may deliver held bytes)."""
        self.corked: list[Any] = []
        """Streams that held a head back during them."""

    def flush(self) -> None:
        corked, self.corked = self.corked, []
        for stream in corked:
            stream._uncork()


_READS: WeakKeyDictionary[Any, Reads] = WeakKeyDictionary()


def reads_of(loop: Any) -> Reads:
    """The loop's :class:`Reads` (looked up once per connection, not per read)."""
    reads = _READS.get(loop)
    if reads is None:
        reads = _READS[loop] = Reads()
    return reads


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
        reads = self._reads
        reads.depth += 1
        try:
            self._feed(data)
            unparsed = self._unparsed
            while unparsed:
                self._feed(unparsed.pop(0))
        finally:
            self._parsing = False
            reads.depth -= 1
            if not reads.depth and reads.corked:
                reads.flush()
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

    def _cork(self, reads: Reads, conn: Any, data: bytes) -> None:
        """Hold a head for the body that most often follows within the same call
        from the proxy; written at the end of the read being handled if it does not
        (:class:`Reads`), or on the loop's next turn outside a read."""
        self.corked = data
        if reads.depth:
            reads.corked.append(self)
        else:
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
