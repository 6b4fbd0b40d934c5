"""No-unpack tunnels over HTTP/2: every client connection of a ``tunnel_entry`` becomes
one stream of a shared HTTP/2 connection to a far mosn, whose ``tunnel_exit`` forwards
the stream's bytes to the cluster the stream names (``over: http2`` on both filters).

Each tunnelled connection is an HTTP/2 ``CONNECT`` request (RFC 9113 section 8.5) whose
``:authority`` is the far cluster's name, as Envoy's ``tcp_proxy`` ``tunneling_config``
sends one; the far side answers ``200`` once its upstream connection is up (``403``
for a cluster it does not allow, ``502`` when no host of it can be reached), then the
stream's DATA carries the bytes both ways; an end of stream is a half-close, a reset
closes. One HTTP/2 connection per far host and worker carries every stream, so a
thousand clients cost the far side one connection.

Flow control is HTTP/2's own: bytes received on a stream are acknowledged (its window
reopened) only while the connection they are written to is below its write buffer's
high watermark, and bytes waiting for the peer's window stop the reading of their
connection past ``MAX_PENDING_BYTES``: nothing is buffered without bound.
"""

from __future__ import annotations

import logging
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from mosn.network.connection import Connection
from mosn.network.filter import CloseType, ConnectionCallbacks, ConnectionEvent, FilterStatus, ReadFilter

log = logging.getLogger("mosn.xprotocol.tunnel")

MAX_PENDING_BYTES = 256 * 1024
"""Bytes of one tunnelled connection held while the HTTP/2 peer's window is closed;
past it that connection is not read until the window opens (HTTP/2's initial window
is 64 KiB, so a few windows' worth keeps a fast link busy)."""
STREAM_WINDOW = 1024 * 1024
"""The receive window mosn opens per stream (HTTP/2's default 64 KiB would cap each
tunnel at 64 KiB per round trip)."""
CONNECTION_WINDOW = 16 * 1024 * 1024
"""The receive window of a whole HTTP/2 connection: room for every stream's window at
once for a few busy streams (HTTP/2's default 64 KiB is shared by all of them)."""
MAX_STREAMS = 1024
"""Streams a far mosn takes at once on one HTTP/2 connection; an entry opens another
connection past it (MOSN's ``max_request_per_conn`` default)."""

_STOP = FilterStatus.STOP


def _settings() -> dict[Any, int]:
    return {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS}


class _Carrier(ReadFilter, ConnectionCallbacks):
    """One HTTP/2 connection carrying tunnel streams (either side)."""

    def __init__(self, conn: Connection, client_side: bool) -> None:
        self.conn = conn
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=client_side, header_encoding="utf-8", validate_inbound_headers=False))
        self.h2.local_settings = h2.settings.Settings(client=client_side,
                                                      initial_values=_settings())
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.streams: dict[int, _Pump] = {}
        self.connected = not client_side
        self.closed = False
        conn.add_read_filter(self)
        conn.add_callbacks(self)

    # the HTTP/2 connection's bytes

    def flush(self) -> None:
        if self.connected and not self.closed:
            data = self.h2.data_to_send()
            if data:
                self.conn.write(data)

    def on_data(self, data: bytes) -> FilterStatus:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.info("tunnel: HTTP/2 error from %s: %s", self.conn.remote_address, exc)
            self.flush()
            self.conn.close(CloseType.FLUSH_WRITE)
            return _STOP
        for event in events:
            self.on_event_h2(event)
        self.flush()
        return _STOP

    def on_event_h2(self, event: Any) -> None:
        pump = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.DataReceived):
            if pump is not None:
                pump.received(event.data, event.flow_controlled_length)
            else:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            if pump is not None:
                pump.remote_ended()
        elif isinstance(event, h2.events.StreamReset):
            if pump is not None:
                pump.reset()
        elif isinstance(event, h2.events.WindowUpdated):
            for p in ([pump] if pump is not None else list(self.streams.values())):
                p.send_pending()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.conn.close(CloseType.FLUSH_WRITE)

    # callbacks of the HTTP/2 connection

    def on_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.CONNECTED:
            self.connected = True
            self.flush()
            for pump in list(self.streams.values()):
                pump.send_pending()
            self.flush()
        elif event.is_close or event in (ConnectionEvent.CONNECT_FAILED,
                                         ConnectionEvent.CONNECT_TIMEOUT):
            self.closed = True
            for pump in list(self.streams.values()):
                pump.reset()
            self.streams.clear()
            self.on_closed()

    def on_closed(self) -> None:
        pass

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)

    def reset_stream(self, stream_id: int) -> None:
        if not self.closed:
            try:
                self.h2.reset_stream(stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
            self.flush()
        self.forget(stream_id)


class _Pump(ConnectionCallbacks):
    """One tunnelled connection as one stream: bytes of ``peer`` go out as DATA, DATA
    received goes to ``peer``. ``peer`` is the client's connection at the entry, the
    upstream connection at the exit."""

    def __init__(self, carrier: _Carrier, stream_id: int) -> None:
        self.carrier = carrier
        self.stream_id = stream_id
        self.peer: Connection | None = None
        self.pending = bytearray()
        self.eof_pending = False
        self.open = False
        """True once the tunnel is up (the 200 sent or received)."""
        self.paused = False
        self.peer_full = False
        self.unacked = 0
        carrier.streams[stream_id] = self

    # from the peer connection

    def from_peer(self, data: bytes) -> None:
        self.pending += data
        self.send_pending()
        if len(self.pending) > MAX_PENDING_BYTES and not self.paused and self.peer is not None:
            self.paused = True
            self.peer.read_disable(True)

    def peer_eof(self) -> None:
        self.eof_pending = True
        self.send_pending()

    def send_pending(self) -> None:
        carrier = self.carrier
        if not self.open or carrier.closed or not carrier.connected:
            return
        h2c = carrier.h2
        try:
            while self.pending:
                window = min(h2c.local_flow_control_window(self.stream_id),
                             h2c.max_outbound_frame_size)
                if window <= 0:
                    break
                chunk = bytes(self.pending[:window])
                del self.pending[:window]
                h2c.send_data(self.stream_id, chunk)
            if not self.pending and self.eof_pending:
                self.eof_pending = False
                h2c.end_stream(self.stream_id)
                self._maybe_done()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.reset()
            return
        carrier.flush()
        if self.paused and len(self.pending) <= MAX_PENDING_BYTES // 2 and self.peer is not None:
            self.paused = False
            self.peer.read_disable(False)

    # from the stream

    def received(self, data: bytes, flow_length: int) -> None:
        peer = self.peer
        if peer is None or peer.closed:
            self.carrier.h2.acknowledge_received_data(flow_length, self.stream_id)
            return
        peer.write(data)
        if self.peer_full:
            self.unacked += flow_length
        else:
            self.carrier.h2.acknowledge_received_data(flow_length, self.stream_id)

    def remote_ended(self) -> None:
        if self.peer is not None:
            self.peer.write_eof()
        self._maybe_done()

    def reset(self) -> None:
        self.carrier.forget(self.stream_id)
        if self.peer is not None and not self.peer.closed:
            self.peer.close(CloseType.FLUSH_WRITE)

    def _maybe_done(self) -> None:
        state = self.carrier.h2.streams.get(self.stream_id)
        if state is None or state.closed:
            self.carrier.forget(self.stream_id)

    # callbacks of the peer connection

    def on_event(self, event: ConnectionEvent) -> None:
        if event.is_close:
            if self.carrier.streams.get(self.stream_id) is self:
                self.carrier.reset_stream(self.stream_id)

    def on_above_write_buffer_high_watermark(self) -> None:
        self.peer_full = True

    def on_below_write_buffer_low_watermark(self) -> None:
        self.peer_full = False
        if self.unacked and not self.carrier.closed:
            self.carrier.h2.acknowledge_received_data(self.unacked, self.stream_id)
            self.unacked = 0
            self.carrier.flush()


class _PeerReader(ReadFilter):
    """The peer connection's read filter: its bytes go to its stream."""

    __slots__ = ("pump",)

    def __init__(self, pump: _Pump) -> None:
        self.pump = pump

    def on_data(self, data: bytes) -> FilterStatus:
        self.pump.from_peer(data)
        return _STOP

    def on_eof(self) -> bool:
        self.pump.peer_eof()
        return True  # half-closed: the other way goes on


# -- the entry side ------------------------------------------------------------------------


class _EntryCarrier(_Carrier):
    def __init__(self, entry: "H2TunnelEntry", host: Any, conn: Connection) -> None:
        self.entry = entry
        self.host = host
        super().__init__(conn, client_side=True)

    def on_event_h2(self, event: Any) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            pump = self.streams.get(event.stream_id)
            if isinstance(pump, _EntryPump):
                pump.answered(dict(event.headers).get(":status", ""))
            return
        super().on_event_h2(event)

    def on_closed(self) -> None:
        carriers = self.entry.carriers.get(self.host)
        if carriers is not None and self in carriers:
            carriers.remove(self)

    def usable(self) -> bool:
        return (not self.closed and len(self.streams) < MAX_STREAMS
                and self.h2.state_machine.state is not h2.connection.ConnectionState.CLOSED)


class _EntryPump(_Pump):
    def answered(self, status: str) -> None:
        if status != "200":
            log.info("tunnel to %s refused by the far mosn: %s", self.carrier.conn.remote_address,
                     status)
            self.reset()
            return
        self.open = True
        if self.peer is not None:
            self.peer.read_disable(False)
        self.send_pending()


class H2TunnelEntry:
    """``tunnel_entry`` with ``over: http2``."""

    def __init__(self, cluster: Any, destination: str, idle_timeout: float | None) -> None:
        self.cluster = cluster
        self.destination = destination
        self.idle_timeout = idle_timeout
        self.carriers: dict[Any, list[_EntryCarrier]] = {}

    def install(self, conn: Connection) -> None:
        host = self.cluster.choose_host((), None)
        if host is None:
            conn.close(CloseType.NO_FLUSH)
            return
        carrier = next((c for c in self.carriers.get(host, ()) if c.usable()), None)
        if carrier is None:
            upstream = self.cluster.connect(host)
            carrier = _EntryCarrier(self, host, upstream)
            self.carriers.setdefault(host, []).append(carrier)
            upstream.start()
        stream_id = carrier.h2.get_next_available_stream_id()
        pump = _EntryPump(carrier, stream_id)
        pump.peer = conn
        carrier.h2.send_headers(stream_id, [(":method", "CONNECT"),
                                            (":authority", self.destination)])
        carrier.flush()
        conn.read_disable(True)  # until the far side says 200
        conn.add_read_filter(_PeerReader(pump))
        conn.add_callbacks(pump)
        if self.idle_timeout:
            conn.set_idle_timeout(self.idle_timeout)


# -- the exit side -------------------------------------------------------------------------


class _ExitPump(_Pump):
    """A stream whose peer is an upstream connection to the cluster it named."""

    carrier: "_ExitCarrier"

    def __init__(self, carrier: "_ExitCarrier", stream_id: int, cluster: Any) -> None:
        super().__init__(carrier, stream_id)
        self.cluster = cluster
        self.tried: list[Any] = []
        self.early = bytearray()
        """Bytes that came before the upstream was up: the stream's window bounds them
        (they are acknowledged once written)."""
        self.early_flow = 0
        self.eof_early = False
        self._connect()

    def _connect(self) -> None:
        cluster = self.cluster
        attempts = self.carrier.exit.max_connect_attempts or max(1, len(cluster.hosts))
        host = cluster.choose_host(self.tried, None) if len(self.tried) < attempts else None
        if host is None:
            self.carrier.respond(self.stream_id, "502")
            self.carrier.forget(self.stream_id)
            return
        self.tried.append(host)
        upstream = self.peer = cluster.connect(host)
        upstream.add_read_filter(_PeerReader(self))
        upstream.add_callbacks(self)
        upstream.start()

    def received(self, data: bytes, flow_length: int) -> None:
        if not self.open:
            self.early += data
            self.early_flow += flow_length
            return
        super().received(data, flow_length)

    def on_event(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.CONNECTED:
            self.open = True
            self.carrier.respond(self.stream_id, "200", end=False)
            if self.early_flow and self.peer is not None:
                self.peer.write(bytes(self.early))
                self.early.clear()
                self.carrier.h2.acknowledge_received_data(self.early_flow, self.stream_id)
                self.early_flow = 0
            if self.eof_early and self.peer is not None:
                self.peer.write_eof()
            self.send_pending()
        elif event in (ConnectionEvent.CONNECT_FAILED, ConnectionEvent.CONNECT_TIMEOUT):
            if not self.carrier.closed:
                self._connect()
        else:
            super().on_event(event)

    def remote_ended(self) -> None:
        if self.open:
            super().remote_ended()
        else:
            self.eof_early = True


class _ExitCarrier(_Carrier):
    def __init__(self, exit: "H2TunnelExit", conn: Connection) -> None:
        self.exit = exit
        super().__init__(conn, client_side=False)

    def on_event_h2(self, event: Any) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict(event.headers)
            if headers.get(":method") != "CONNECT":
                self.respond(event.stream_id, "405")
                return
            cluster = self.exit.clusters.get(headers.get(":authority", ""))
            if cluster is None:
                log.info("tunnel from %s refused: cluster %r is not allowed",
                         self.conn.remote_address, headers.get(":authority"))
                self.respond(event.stream_id, "403")
                return
            _ExitPump(self, event.stream_id, cluster)
            return
        super().on_event_h2(event)

    def respond(self, stream_id: int, status: str, end: bool = True) -> None:
        try:
            self.h2.send_headers(stream_id, [(":status", status)], end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return
        self.flush()


class H2TunnelExit:
    """``tunnel_exit`` with ``over: http2``."""

    def __init__(self, clusters: dict[str, Any], idle_timeout: float | None,
                 max_connect_attempts: int | None = None) -> None:
        self.clusters = clusters
        self.idle_timeout = idle_timeout
        self.max_connect_attempts = max_connect_attempts
        """Hosts tried for one stream (None: every host of the cluster once)."""

    def install(self, conn: Connection) -> None:
        carrier = _ExitCarrier(self, conn)
        carrier.flush()
        if self.idle_timeout:
            conn.set_idle_timeout(self.idle_timeout)
