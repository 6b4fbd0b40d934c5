"""The contracts between a connection and the filters installed on it (Envoy's and
MOSN's network filter API, in Python)."""

from __future__ import annotations

import enum
from typing import Any, Callable


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

    # -- connection migration (docs/upgrade.md): an upgrade hands the connection's
    # descriptor to a new mosn process, which continues it. A filter that does not
    # override these keeps its connection from migrating (it drains instead).

    def stop_for_migration(self, at_safe_point: Callable[[], None]) -> bool:
        """Stop at the next safe point and call ``at_safe_point()`` then (at once if
        now is one): nothing in flight that only this process could finish (every
        request read is answered, no message half parsed by a parser whose state
        cannot be handed on). The filter may stop reading to get there (the
        connection's reads are paused once every filter is at its safe point).
        False: this connection cannot be migrated."""
        return False

    def unprocessed(self) -> bytes:
        """At the safe point: the bytes read from the peer that this filter holds and
        has not processed (a partial frame); the new process reads them first."""
        return b""

    def migration_peer(self) -> Any:
        """At the safe point: another connection that goes with this one to the new
        process (``tcp_proxy``'s upstream), or None."""
        return None

    def resume_after_migration(self) -> None:
        """The migration was called off (the new process failed or refused the
        connection): go on as before ``stop_for_migration``."""


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
