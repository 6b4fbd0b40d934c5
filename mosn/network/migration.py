"""Connection migration: a downstream connection stopped at a safe point in one
process and continued in another (an upgrade, docs/upgrade.md), as MOSN does.

The old process (:func:`stop_at_safe_point`): every read filter of the connection is
asked to stop at its next safe point (``ReadFilter.stop_for_migration``: the RPC engine
stops reading and waits for the requests in flight to be answered; an HTTP/1 server
codec waits until it is between requests; ``tcp_proxy`` stops both directions); then
reading is paused and what was written is left to the kernel. What it yields, a
:class:`Leaving`, gives the socket's descriptor, the bytes read but not processed,
the facts the listener knew (original destination, SNI ...) and, for ``tcp_proxy``,
the upstream connection. Once the new process has it, :meth:`Leaving.done` closes
this process's descriptors without a word to the peers; :meth:`Leaving.cancel` goes
on as before.

The new process (:func:`arrive`): the socket becomes a connection of the listener of
the same name, skipping its listener filters (they ran in the old process), with the
filter chain chosen by the facts handed over; the unprocessed bytes are read first.

What cannot migrate says so and drains instead: a TLS connection (Python's ``ssl``
cannot hand its session state to another process), a connection whose filters cannot
stop (HTTP/2), one the peer half-closed, or one that reaches no safe point in time.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from mosn.network.connection import Connection
from mosn.network.filter import ConnectionCallbacks, ConnectionEvent
from mosn.network.listener import ServerConnection

WRITE_FLUSH_POLL = 0.005
"""Seconds between looks at whether a stopped connection's write buffer is empty
(the kernel takes it within a few ms unless the peer does not read)."""

TLS = "tls"
NOT_SUPPORTED = "not_supported"
NO_SAFE_POINT = "no_safe_point"
CLOSED = "closed"
"""Why a connection did not migrate (it drains instead)."""


@dataclass
class Leaving:
    """A connection stopped at a safe point, ready to go to another process."""

    conn: Connection
    unprocessed: bytes
    facts: dict[str, Any]
    peer: Connection | None = None
    peer_unwritten: bytes = b""
    """Bytes read from the peer and not yet written to the connection."""
    filters: list[Any] = field(default_factory=list)

    def fds(self) -> list[int]:
        """The descriptors to pass (the connection's, then its peer's): passed as
        they are, no copy made, so a large upgrade needs no more descriptors."""
        return [self.conn.fileno()] + ([self.peer.fileno()] if self.peer is not None else [])

    def done(self) -> None:
        """The other process has it: close the descriptors here, silently."""
        if self.peer is not None:
            self.peer.detach()
        self.conn.detach()

    def cancel(self) -> None:
        """The other process did not take it: serve it here as before."""
        _resume(self.conn, self.filters)


class Refused(Exception):
    """The connection cannot migrate; ``reason`` is one of the names above."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _resume(conn: Connection, filters: list[Any], paused: bool = True) -> None:
    """Undo a stop: the connection's pause (``paused``: it was reached) and each
    filter's."""
    if paused:
        conn.read_disable(False)
    for f in filters:
        f.resume_after_migration()


def facts_of(conn: Any) -> dict[str, Any]:
    """What the listener filters found of a connection (the new process skips them)."""
    listener = getattr(conn, "listener", None)
    return {
        "listener": listener.name if listener is not None else "",
        "original_destination": conn.original_destination,
        "detected_transport": conn.detected_transport,
        "requested_server_name": conn.requested_server_name,
        "requested_alpn": list(conn.requested_alpn),
        "handed_off": conn.handed_off,
    }


async def stop_at_safe_point(conn: Any, timeout: float) -> Leaving:
    """Stop ``conn`` at a safe point within ``timeout`` seconds; raises :class:`Refused`
    (the connection goes on as before) when it cannot migrate."""
    if conn.tls is not None:
        raise Refused(TLS)
    if conn.closing or conn.at_eof or conn.transport is None:
        raise Refused(CLOSED)
    filters = list(conn.read_filters)
    if not filters:
        raise Refused(NOT_SUPPORTED)  # its listener filters still run
    loop = asyncio.get_running_loop()
    reached = loop.create_future()
    pending = len(filters)

    def at_safe_point() -> None:
        nonlocal pending
        pending -= 1
        if pending == 0 and not reached.done():
            conn.read_disable(True)  # in the same turn: nothing is read after the point
            reached.set_result(True)

    asked: list[Any] = []
    for f in filters:
        asked.append(f)
        if not f.stop_for_migration(at_safe_point):
            _resume(conn, asked, reached.done())
            raise Refused(NOT_SUPPORTED)
    conn.add_callbacks(_ClosedBefore(reached))
    deadline = loop.time() + timeout
    try:
        # Waited for without polling: thousands of connections may be waiting at once.
        if not await asyncio.wait_for(asyncio.shield(reached), timeout):
            raise Refused(CLOSED)
        peer = _peer(filters)
        while conn.write_pending or (peer is not None and peer.write_pending):
            if conn.closed or loop.time() > deadline:
                raise TimeoutError
            await asyncio.sleep(WRITE_FLUSH_POLL)
        if conn.closed or conn.at_eof or (peer is not None and (peer.closed or peer.at_eof)):
            raise Refused(CLOSED)
    except TimeoutError:
        if conn.closed:
            raise Refused(CLOSED) from None
        _resume(conn, filters, reached.done())
        raise Refused(NO_SAFE_POINT) from None
    except Refused:
        if not conn.closed:
            _resume(conn, filters, reached.done() and reached.result())
        raise
    except asyncio.CancelledError:  # the hand-over was called off
        if not conn.closed:
            _resume(conn, filters, reached.done() and reached.result())
        raise
    unprocessed = b"".join(f.unprocessed() for f in filters) + conn.held_bytes()
    return Leaving(conn, unprocessed, facts_of(conn), peer,
                   peer.held_bytes() if peer is not None else b"", filters)


class _ClosedBefore(ConnectionCallbacks):
    """Ends the wait for a safe point when the connection closes first."""

    __slots__ = ("reached",)

    def __init__(self, reached: asyncio.Future[bool]) -> None:
        self.reached = reached

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close and not self.reached.done():
            self.reached.set_result(False)


def _peer(filters: list[Any]) -> Connection | None:
    for f in filters:
        peer = f.migration_peer()
        if peer is not None:
            return peer
    return None


async def arrive(listener: Any, sock: socket.socket, unprocessed: bytes,
                 facts: dict[str, Any], peer: socket.socket | None = None,
                 peer_unwritten: bytes = b"") -> Any:
    """Continue a migrated connection on ``listener`` (a
    :class:`mosn.network.listener.Listener`); returns its ``ServerConnection``.
    ``peer``: the upstream socket that goes with it, and ``peer_unwritten`` what was
    read from it and not yet written to the client."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)

    def made() -> ServerConnection:
        conn = ServerConnection(listener)
        destination = facts.get("original_destination")
        conn.original_destination = tuple(destination) if destination else None
        conn.detected_transport = facts.get("detected_transport", "")
        conn.requested_server_name = facts.get("requested_server_name", "")
        conn.requested_alpn = tuple(facts.get("requested_alpn", ()))
        conn.handed_off = bool(facts.get("handed_off"))
        conn.arrival = unprocessed
        conn.migrated_peer = (peer, peer_unwritten) if peer is not None else None
        return conn

    _, conn = await loop.connect_accepted_socket(made, sock)
    return conn


async def move(conn: Any, listener: Any, timeout: float) -> None:
    """Move ``conn`` to ``listener`` in this process (a listener replaced by a reload
    in place): stopped at a safe point, continued by the new listener's filter chain on
    a new descriptor, the old one closed silently. Raises :class:`Refused` (the
    connection goes on where it was) when it cannot move."""
    leaving = await stop_at_safe_point(conn, timeout)
    fds = leaving.fds()
    try:
        sock = socket.socket(fileno=os.dup(fds[0]))
        peer = socket.socket(fileno=os.dup(fds[1])) if len(fds) > 1 else None
    except OSError:
        leaving.cancel()
        raise Refused(NOT_SUPPORTED) from None
    leaving.done()
    await arrive(listener, sock, leaving.unprocessed, leaving.facts, peer,
                 leaving.peer_unwritten)
