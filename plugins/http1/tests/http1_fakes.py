"""An in-memory stand-in for mosn's Connection and a handler that records calls,
for the codec unit tests (pure logic, no IO)."""

from __future__ import annotations

from typing import Any

from mosn.network.filter import CloseType, ConnectionEvent
from mosn.testing.streams import FakeLoop, Recorder
from mosn_http1 import ClientConnection, Limits, ServerConnection


class FakeConnection:
    """What the codecs use of mosn's Connection, with its counted read_disable and
    its delivery of the bytes held while reading was disabled."""

    def __init__(self) -> None:
        self.read_filters: list[Any] = []
        self.callbacks: list[Any] = []
        self.writes: list[bytes] = []
        self.closed: CloseType | None = None
        self.eof_sent = False
        self.disabled = 0
        self.held: list[bytes] = []
        self.transport = None
        self.loop = FakeLoop()
        self.reads_are_activity = True

    def add_read_filter(self, f: Any) -> None:
        self.read_filters.append(f)

    def add_callbacks(self, cb: Any) -> None:
        self.callbacks.append(cb)

    def hand_over(self, codec: Any, take_over: Any) -> bool:
        self.read_filters.remove(codec)
        self.callbacks.remove(codec)
        if take_over():
            return True
        self.read_filters.append(codec)
        self.callbacks.append(codec)
        return False

    def write(self, data: bytes) -> None:
        if self.closed is None:
            self.writes.append(bytes(data))

    def write_eof(self) -> None:
        self.eof_sent = True

    def close(self, how: CloseType = CloseType.FLUSH_WRITE) -> None:
        if self.closed is None:
            self.closed = how

    def count_reads_as_activity(self, count: bool) -> None:
        self.reads_are_activity = count

    def read_disable(self, disable: bool) -> None:
        self.disabled += 1 if disable else -1
        assert self.disabled >= 0, "read_disable(False) without a matching True"
        while self.held and not self.disabled:
            self.receive(self.held.pop(0))

    # -- the test's side ------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self.disabled:
            self.held.append(data)
            return
        for f in self.read_filters:
            f.on_data(data)

    def receive_eof(self) -> bool:
        return any([f.on_eof() for f in self.read_filters])

    def lose(self, event: ConnectionEvent = ConnectionEvent.REMOTE_CLOSE) -> None:
        """The connection is gone (after close(), or reset by the peer)."""
        for cb in self.callbacks:
            cb.on_event(event)

    def above(self) -> None:
        for cb in self.callbacks:
            cb.on_above_write_buffer_high_watermark()

    def below(self) -> None:
        for cb in self.callbacks:
            cb.on_below_write_buffer_low_watermark()

    def take(self) -> bytes:
        """Everything written since the last take."""
        out = b"".join(self.writes)
        self.writes.clear()
        return out


class Server:
    """A server codec on a fake connection; ``handlers`` in request order."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.conn = FakeConnection()
        self.handlers: list[Recorder] = []
        self.codec = ServerConnection(self.conn, self._new_stream, limits)

    def _new_stream(self, stream: Any) -> Recorder:
        handler = Recorder(stream)
        self.handlers.append(handler)
        return handler


class Client:
    """A client codec on a fake connection; ``idle`` counts on_idle calls."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.conn = FakeConnection()
        self.idle = 0
        self.codec = ClientConnection(self.conn, self._on_idle, limits)

    def _on_idle(self) -> None:
        self.idle += 1

    def request(self) -> tuple[Any, Recorder]:
        handler = Recorder()
        return self.codec.new_stream(handler), handler
