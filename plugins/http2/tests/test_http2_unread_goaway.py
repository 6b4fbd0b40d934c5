"""An upstream's GOAWAY that mosn has not read when the upstream resets the connection
and mosn's next write fails: the event loop closes the connection on the write's error,
and mosn/network reads what the socket still holds first, so the GOAWAY still says
which streams the upstream never processed (REFUSED_STREAM: the proxy sends them
again, even a POST) instead of leaving them closed before their response.

Real sockets on 127.0.0.1 and a real event loop (uvloop, as mosn runs, and asyncio):
the client codec on mosn's upstream connection, a raw-frame upstream in the test."""

from __future__ import annotations

import asyncio
import select
import socket
import struct
from typing import Any

import pytest
import uvloop

from h2_fixtures import ENGINES
from mosn.config.types import Address
from mosn.network.connection import ClientConnection as UpstreamConnection
from mosn.network.filter import ConnectionCallbacks, ConnectionEvent
from mosn.stream.types import Headers, RequestHead, StreamResetReason
from mosn_http2 import PREFACE, ClientConnection, Limits

DEADLINE = 5.0
"""Seconds any one step may take on a loaded machine."""
_FRAME = struct.Struct(">HBBBL")  # length (high 16, low 8 bits), type, flags, stream id
_SETTINGS, _GOAWAY = 0x4, 0x7


def frame(kind: int, payload: bytes = b"", flags: int = 0, stream_id: int = 0) -> bytes:
    n = len(payload)
    return _FRAME.pack(n >> 8, n & 0xFF, kind, flags, stream_id) + payload


class Ends(ConnectionCallbacks):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.connected = loop.create_future()
        self.closed = loop.create_future()

    def on_event(self, event: ConnectionEvent) -> None:
        future = self.connected if event is ConnectionEvent.CONNECTED else self.closed
        if not future.done():
            future.set_result(event)


class Response:
    """The stream's handler: how the stream ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reset = loop.create_future()

    def on_reset(self, reason: StreamResetReason) -> None:
        if not self.reset.done():
            self.reset.set_result(reason)

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None  # headers, data, watermarks: none come here


async def goaway_unread_at_write(engine: str) -> tuple[StreamResetReason, int]:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    conn = UpstreamConnection(loop)
    ends = Ends(loop)
    conn.add_callbacks(ends)
    conn.connect(Address("127.0.0.1", listener.getsockname()[1]), DEADLINE)
    upstream, _ = await asyncio.wait_for(loop.sock_accept(listener), DEADLINE)
    listener.close()
    await asyncio.wait_for(ends.connected, DEADLINE)
    codec = ClientConnection(conn, lambda: None, Limits(engine=engine))
    received = b""
    while len(received) < len(PREFACE):  # the client's preface, then its SETTINGS
        received += await asyncio.wait_for(loop.sock_recv(upstream, 65536), DEADLINE)
    assert received.startswith(PREFACE)
    response = Response(loop)
    head = RequestHead("POST", "/", "upstream", "http", Headers([("content-length", "0")]), "2")

    def cut() -> None:
        """The upstream's SETTINGS and a GOAWAY taking no stream, then its reset."""
        upstream.setblocking(True)
        upstream.sendall(frame(_SETTINGS) + frame(_GOAWAY, struct.pack(">LL", 0, 0)))
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        upstream.close()

    if isinstance(loop, uvloop.Loop):
        # uvloop writes what a loop turn queued after that turn's poll: the POST's
        # HEADERS (queued on the next turn, before its poll) fail if the reset lands
        # during the poll, as when the upstream's GOAWAY and reset come while mosn
        # handles other connections' reads. A reader callback runs in that poll.
        ping, pong = socket.socketpair()
        codec.new_stream(response).send_headers(head, True)

        def during_the_poll() -> None:
            loop.remove_reader(pong.fileno())
            cut()

        loop.add_reader(pong.fileno(), during_the_poll)
        ping.send(b"!")
    else:
        # asyncio writes at once, on the turn after the one that queued the POST: its
        # HEADERS fail if the GOAWAY and the reset arrived before, unread.
        ping = pong = None
        cut()
        ready, _, _ = select.select([conn.fileno()], [], [], DEADLINE)
        assert ready, "the upstream's frames did not arrive"
        codec.new_stream(response).send_headers(head, True)
    reason = await asyncio.wait_for(response.reset, DEADLINE)
    await asyncio.wait_for(ends.closed, DEADLINE)
    for sock in (ping, pong):
        if sock is not None:
            sock.close()
    return reason, codec.active_streams()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_goaway_read_before_the_close_of_a_failed_write(engine: str, event_loop: str):
    runner = uvloop.run if event_loop == "uvloop" else asyncio.run
    reason, active = runner(goaway_unread_at_write(engine))
    assert reason is StreamResetReason.REFUSED_STREAM  # never processed: safe to send again
    assert active == 0
