"""The contracts between a connection and the filters installed on it (Envoy's and
MOSN's network filter API, in Python)."""

from __future__ import annotations

import enum
from typing import Any


class FilterStatus(enum.Enum):
    CONTINUE = "continue"
    """Pass the data (or the new connection) on to the next filter."""
    STOP = "stop"
    """This filter took it; the filters after it do not see it."""


class ConnectionEvent(enum.Enum):
    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    REMOTE_CLOSE = "remote_close"
    """The peer closed (or reset) the connection."""
    LOCAL_CLOSE = "local_close"
    """This side closed it: ``close()``, an idle timeout, or shutdown."""

    @property
    def is_close(self) -> bool:
        return self is not ConnectionEvent.CONNECTED


class CloseType(enum.Enum):
    FLUSH_WRITE = "flush_write"
    """Send what is buffered, then close (bounded by ``DELAYED_CLOSE_TIMEOUT``)."""
    NO_FLUSH = "no_flush"
    """Drop what is buffered and reset the connection."""


class ReadFilter:
    """Sees a connection's bytes as they arrive, in installation order."""

    __slots__ = ()

    def on_new_connection(self) -> FilterStatus:
        """The connection is ready (for a downstream one: just accepted)."""
        return FilterStatus.CONTINUE

    def on_data(self, data: bytes) -> FilterStatus:
        return FilterStatus.CONTINUE

    def on_eof(self) -> bool:
        """The peer will send no more (a half-close). Return True to keep the
        connection open for writing; if no filter does, it is closed."""
        return False

    def on_shed(self) -> None:
        """The overload manager is about to close the connection to free memory
        (``Connection.shed``): answer what the protocol can (requests in flight, with
        its overload status); the connection closes right after."""


class WriteFilter:
    """Sees bytes on their way out; returns them (possibly changed) or None to drop."""

    __slots__ = ()

    def on_write(self, data: bytes) -> bytes | None:
        return data


class ConnectionCallbacks:
    """What a connection tells those who watch it (Envoy's ConnectionCallbacks)."""

    __slots__ = ()

    def on_event(self, event: ConnectionEvent) -> None:
        pass

    def on_above_write_buffer_high_watermark(self) -> None:
        """The connection's write buffer is full: stop feeding it."""

    def on_below_write_buffer_low_watermark(self) -> None:
        """The write buffer drained: feeding it may resume."""

    def on_filter_error(self, error: Exception) -> bool:
        """A read filter raised ``error`` out of ``on_data`` or ``on_eof`` (a bug in
        it or in what it called). Return True when handled (answered in the protocol,
        counted, the connection closed or closing); if no callback handles it the
        connection logs it and resets."""
        return False

class ListenerFilter:
    """Runs on an accepted connection before its filter chain is chosen (Envoy's
    listener filters): it may look at the connection (addresses, the socket's original
    destination) and at the first bytes the client sent, and note what it learns on
    the connection (``original_destination``, ``detected_transport``,
    ``requested_server_name``, ``requested_alpn``). The bytes it sees are not
    consumed (the chain gets them all) unless it says they are its own (``consumed``:
    a PROXY protocol header)."""

    __slots__ = ()

    def on_accept(self, conn: Any) -> FilterStatus:
        """CONTINUE: done; STOP: it needs bytes (``on_data`` follows)."""
        return FilterStatus.CONTINUE

    def on_data(self, conn: Any, data: bytes) -> FilterStatus:
        """``data``: every byte read so far (less what filters before it consumed).
        CONTINUE: done; STOP: it needs more. Raise :class:`ListenerFilterError` for
        bytes that are wrong: the connection is closed and counted."""
        return FilterStatus.CONTINUE

    def consumed(self) -> int:
        """Bytes at the front of ``data`` that were the filter's own (read once it
        returned CONTINUE): the filters after it and the chain do not see them."""
        return 0


class ListenerFilterError(Exception):
    """A listener filter found the first bytes wrong (a malformed PROXY protocol
    header): the connection is closed, the listener's ``stat`` counted and the
    message logged (at most once per interval)."""

    def __init__(self, message: str, stat: str = "downstream_listener_filter_error") -> None:
        super().__init__(message)
        self.stat = stat
