"""The pure-Python engine: h2 (with hpack and hyperframe), through its public API
only. The interface and the events are ``engine``'s.

h2 is the protocol's state machine; this engine adds what the codecs need and h2
does not do:

- per-stream send queues, sent as the peer's windows allow, with trailers after the
  body and the buffer limit reported (``data``, DRAINED);
- acknowledgements held back for a paused reader (``pause``);
- a look at each received frame's header before h2 reads the frame: a frame over
  SETTINGS_MAX_FRAME_SIZE is refused as soon as its header is in (h2 would buffer
  it whole first), a header block split into more than MAX_CONTINUATIONS frames
  or bigger than the header list limit ends the connection, and a GOAWAY is read
  here, not by h2 (h2 refuses every frame after one, where RFC 9113 6.8 has the
  streams below its last stream id run to completion);
- a graceful GOAWAY of its own for the same reason (h2's ``close_connection``
  closes its state machine too);
- streams refused above SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM), as
  nghttp2 does until the peer acknowledged the setting.
"""

from __future__ import annotations

import base64
import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from h2 import events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import GoAwayFrame

from mosn_http2 import frames
from mosn_http2.frames import MalformedFields
from mosn_http2.wire import (
    ASSUMED_PEER_MAX_STREAMS,
    CLOSED,
    DATA,
    DRAINED,
    ENHANCE_YOUR_CALM,
    FRAME_SIZE_ERROR,
    GOAWAY,
    MAX_CONTINUATIONS,
    NO_ERROR,
    PING_ACK,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    REQUEST,
    RESET,
    RESPONSE,
    SETTINGS,
    TRAILERS,
    UNLIMITED_STREAMS,
    Handler,
)

if TYPE_CHECKING:
    from mosn_http2.config import Limits

PREFACE_SIZE = 24
"""Bytes of the client's connection preface (RFC 9113 3.4), read by h2 itself."""
FRAME_HEADER_SIZE = 9
"""Length (3), type, flags, stream id (4) (RFC 9113 4.1)."""
GOAWAY_MIN_SIZE = 8
"""Last stream id and error code; debug data may follow (RFC 9113 6.8)."""
_HEADERS, _SETTINGS, _GOAWAY, _CONTINUATION = 0x1, 0x4, 0x7, 0x9
_ACK = 0x1
_FRAME_HEADER = struct.Struct(">BHBBL")
_PING = struct.Struct(">Q")


class _Terminated(Exception):
    """The connection ends: its GOAWAY is queued."""


def _content_length(fields: Any) -> int:
    """A request's content-length; -1 if none (or not a number: ``frames`` refuses it)."""
    for name, value in fields:
        if name == b"content-length" or name == "content-length":
            return int(value) if value.isdigit() else -1
    return -1


class _Stream:
    __slots__ = ("id", "out", "out_bytes", "end", "trailers", "opened", "local_ended",
                 "remote_ended", "paused", "unacked", "above", "head", "body_left")

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.out: deque[bytes] = deque()
        self.out_bytes = 0
        self.end = False
        """The body's end is queued."""
        self.trailers: frames.HeaderList | None = None
        self.opened = True
        """The stream's HEADERS went out (a client stream may wait for a free slot)."""
        self.local_ended = False
        self.remote_ended = False
        self.paused = False
        self.unacked = 0
        self.above = False
        self.head: frames.HeaderList | None = None
        """A waiting client stream's request head."""
        self.body_left = -1
        """A request's content-length bytes still to come; -1: none given."""


class H2Engine:
    def __init__(self, client: bool, limits: Limits, upgrade: bytes | None = None,
                 upgrade_head: bool = False) -> None:
        self.limits = limits
        self.client = client
        # Received fields are checked by ``frames`` (RFC 9113 8.1.1), at a fraction of
        # the cost of h2's checks; sent ones are built correct by ``frames``.
        conn = self._conn = H2Connection(H2Configuration(
            client_side=client, header_encoding=None,
            validate_outbound_headers=False, normalize_outbound_headers=False,
            validate_inbound_headers=False, normalize_inbound_headers=False))
        # No MAX_CONCURRENT_STREAMS in the first SETTINGS: it comes in the second, and
        # h2 enforces it (a connection error) only once the peer acknowledged it;
        # until then a stream over it is refused here (see _on_request).
        conn.local_settings = Settings(client=client, initial_values={})
        self._streams: dict[int, _Stream] = {}
        if upgrade is None:
            conn.initiate_connection()
        else:
            conn.initiate_upgrade_connection(base64.urlsafe_b64encode(upgrade).rstrip(b"="))
            s = self._streams[1] = _Stream(1)
            s.remote_ended = True  # the upgraded request (RFC 7540 3.2)
        wanted = {
            SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
        }
        if client:
            wanted[SettingCodes.ENABLE_PUSH] = 0  # the proxy has nowhere to put a push
        else:
            wanted[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1  # RFC 8441
        conn.update_settings(wanted)
        extra = limits.connection_window_size - conn.inbound_flow_control_window
        if extra > 0:
            conn.increment_flow_control_window(extra)
        self._extra = b""
        """Frames of our own to send after what h2 queued (a graceful GOAWAY)."""
        self._skip = 0 if client else PREFACE_SIZE
        self._head = b""
        """A frame header not complete yet."""
        self._left = 0
        """Payload bytes of the current frame still to come."""
        self._goaway: bytearray | None = None
        """The payload of a GOAWAY being read (None: not in one)."""
        self._continuations = 0
        self._block_bytes = 0
        self._waiting: deque[_Stream] = deque()
        self._next_id = 1
        self._opened = 0
        """Client streams sent and not over."""
        self._peer_settings = False
        self._drained: list[int] = []
        self._handlers: list[Handler] = []
        self._goaway_sent = False
        self._goaway_received = False
        self._last_stream_id = UNLIMITED_STREAMS
        self._terminated = False
        self._pings = 0

    # -- receiving ------------------------------------------------------------------

    def receive(self, data: bytes, handlers: list[Handler]) -> bool:
        self._handlers = handlers
        try:
            self._read(data)
        except ProtocolError:
            self._terminated = True  # h2 has queued the GOAWAY with the error's code
            return False
        except _Terminated:
            return False
        self._report_drained()
        return True

    def _read(self, data: bytes) -> None:
        """Hand ``data`` to h2, reading each frame's header on the way (see the
        module docstring). A GOAWAY is taken out; the frames before it are read by
        h2 first, those after it once it is handled."""
        i, n = 0, len(data)
        start = 0  # the first byte not yet handed to h2
        while i < n:
            if self._skip:
                step = min(self._skip, n - i)
                self._skip -= step
                i += step
                continue
            if self._left:
                step = min(self._left, n - i)
                self._left -= step
                i += step
                if self._goaway is not None:
                    self._goaway += data[i - step:i]
                    start = i
                    if not self._left:
                        self._on_goaway(bytes(self._goaway))
                continue
            held = self._head
            head = held + data[i:i + FRAME_HEADER_SIZE - len(held)] if held else \
                data[i:i + FRAME_HEADER_SIZE]
            at = i
            i += len(head) - len(held)
            if len(head) < FRAME_HEADER_SIZE:
                if start < at:
                    self._feed(data[start:at])
                self._head = head  # held back until the rest of it comes
                return
            self._head = b""
            high, low, kind, flags, sid = _FRAME_HEADER.unpack(head)
            self._left = length = (high << 16) | low
            self._check(length, kind, flags, sid)
            if kind == _GOAWAY:
                if start < at:
                    self._feed(data[start:at])
                self._goaway = bytearray()
                start = i
                if not length:
                    self._on_goaway(b"")
            elif held:
                self._feed(head)  # nothing of this read was handed over yet
                start = i
        if start < n:
            self._feed(data[start:])

    def _check(self, length: int, kind: int, flags: int, sid: int) -> None:
        """What a frame's header alone tells (see the module docstring)."""
        if length > self._conn.max_inbound_frame_size:
            self._fail(FRAME_SIZE_ERROR)  # RFC 9113 4.2
        if kind == _SETTINGS and flags & _ACK and length:
            self._fail(FRAME_SIZE_ERROR)  # RFC 9113 6.5 (h2 says PROTOCOL_ERROR)
        if kind == _GOAWAY:
            if sid:
                self._fail(PROTOCOL_ERROR)  # RFC 9113 6.8
            if length < GOAWAY_MIN_SIZE:
                self._fail(FRAME_SIZE_ERROR)
        elif kind == _HEADERS:
            self._continuations = 0
            self._block_bytes = length
        elif kind == _CONTINUATION:
            self._continuations += 1
            self._block_bytes += length
            if self._continuations > MAX_CONTINUATIONS:
                self._fail(ENHANCE_YOUR_CALM)
        else:
            return
        if self._block_bytes > self.limits.max_header_list_size:
            self._fail(ENHANCE_YOUR_CALM)  # compressed, a block is never larger

    def _feed(self, data: bytes) -> None:
        for event in self._conn.receive_data(data):
            handle = _EVENTS.get(event.__class__)
            if handle is not None:
                handle(self, event)

    def _fail(self, code: int) -> None:
        self._conn.close_connection(code)
        self._terminated = True
        raise _Terminated

    def _on_goaway(self, payload: bytes) -> None:
        self._goaway = None
        last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        code = int.from_bytes(payload[4:8], "big")
        self._goaway_received = True  # no stream opens after it
        if self.client:
            # Streams above ``last`` were never processed (RFC 9113 6.8): forgotten
            # here, reported to the codec by the GOAWAY.
            for s in [s for s in self._streams.values() if s.id > last]:
                self._forget(s)
            self._waiting.clear()
        self._report(GOAWAY, last, False, code)

    def _report(self, kind: int, sid: int, end: bool, value: Any) -> None:
        self._handlers[kind](sid, end, value)

    def _fields(self, s: _Stream | None, sid: int, header_list: Any,
                slots: dict[str, int]) -> frames.Fields | None:
        """A received block checked and laid out (``frames``); None (the stream reset
        and reported CLOSED) if malformed."""
        try:
            fields, size = frames.checked_fields(header_list, slots)
        except MalformedFields:
            self._reset(sid, PROTOCOL_ERROR)
            if s is not None:
                self._forget(s)
            self._report(CLOSED, sid, False, PROTOCOL_ERROR)
            return None
        if size > self.limits.max_header_list_size:
            self._fail(ENHANCE_YOUR_CALM)  # SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 6.5.2)
        return fields

    def _on_request(self, event: ev.RequestReceived) -> None:
        sid = event.stream_id
        if (self._goaway_sent and sid > self._last_stream_id) \
                or len(self._streams) >= self.limits.max_concurrent_streams:
            # RFC 9113 5.1.2 / 6.8: refused, never processed, safe to retry.
            self._reset(sid, REFUSED_STREAM)
            return
        fields = self._fields(None, sid, event.headers, frames.REQUEST_SLOTS)
        if fields is None:
            return
        s = self._streams[sid] = _Stream(sid)
        end = s.remote_ended = event.stream_ended is not None
        if not end:
            s.body_left = _content_length(event.headers)
        self._report(REQUEST, sid, end, fields)

    def _on_response(self, event: ev.ResponseReceived) -> None:
        self._on_block(event, RESPONSE, event.stream_ended is not None, frames.RESPONSE_SLOTS)

    def _on_trailers(self, event: ev.TrailersReceived) -> None:
        self._on_block(event, TRAILERS, True, frames.NO_SLOTS)

    def _on_block(self, event: Any, kind: int, end: bool, slots: dict[str, int]) -> None:
        s = self._streams.get(event.stream_id)
        if s is None:
            return
        fields = self._fields(s, s.id, event.headers, slots)
        if fields is None:
            return
        if end:
            s.remote_ended = True
            self._ended(s)
        self._report(kind, s.id, end, fields)

    def _on_data(self, event: ev.DataReceived) -> None:
        sid = event.stream_id
        s = self._streams.get(sid)
        size = event.flow_controlled_length
        if s is not None and s.paused:
            s.unacked += size
        elif size:
            self._conn.acknowledge_received_data(size, sid)
        if s is None:
            return
        end = event.stream_ended is not None
        if s.body_left > 0:
            s.body_left -= len(event.data)
        if end:
            s.remote_ended = True
            self._ended(s)
        self._report(DATA, sid, end, event.data)

    def _on_reset(self, event: ev.StreamReset) -> None:
        s = self._streams.get(event.stream_id)
        if s is None:
            return
        self._forget(s)
        self._report(RESET if event.remote_reset else CLOSED, s.id, False, event.error_code)

    def _on_window_update(self, event: ev.WindowUpdated) -> None:
        if event.stream_id:
            s = self._streams.get(event.stream_id)
            if s is not None and s.out:
                self._pump(s)
        else:
            self._pump_all()

    def _on_settings(self, event: ev.RemoteSettingsChanged) -> None:
        self._peer_settings = True
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._pump_all()
        self._open_waiting()
        self._report(SETTINGS, 0, False, None)

    def _on_ping_ack(self, event: ev.PingAckReceived) -> None:
        self._report(PING_ACK, 0, False, None)

    # -- sending ----------------------------------------------------------------------

    def send(self) -> bytes:
        data = self._conn.data_to_send()
        if self._extra:
            data, self._extra = data + self._extra, b""
        return data

    def report(self, handlers: list[Handler]) -> None:
        if self._drained:
            self._handlers = handlers
            self._report_drained()

    def _report_drained(self) -> None:
        while self._drained:
            drained, self._drained = self._drained, []
            for sid in drained:
                self._report(DRAINED, sid, False, None)

    def respond(self, stream_id: int, status: int, items: list[tuple[str, str]],
                end_stream: bool) -> int:
        s = self._streams.get(stream_id)
        if s is None:
            return -1
        try:
            self._conn.send_headers(stream_id, _block((":status", str(status)), items),
                                    end_stream=end_stream)
        except ProtocolError:
            self._forget(s)
            return -1
        if end_stream:
            s.end = s.local_ended = True
            self._local_end(s)
        return stream_id

    def request(self, pseudo: list[str], items: list[tuple[str, str]], end_stream: bool) -> int:
        sid = self._next_id
        if self._goaway_received or self._terminated or sid > UNLIMITED_STREAMS:
            return -1
        self._next_id += 2
        s = self._streams[sid] = _Stream(sid)
        s.opened = False
        s.end = end_stream
        s.head = _block(pseudo, items)
        self._waiting.append(s)
        self._open_waiting()
        return sid

    def _peer_max(self) -> int:
        if not self._peer_settings:
            return ASSUMED_PEER_MAX_STREAMS
        return min(self._conn.remote_settings.max_concurrent_streams, UNLIMITED_STREAMS)

    def _open_waiting(self) -> None:
        if self._goaway_received:
            return
        waiting = self._waiting
        limit = self._peer_max()
        while waiting and self._opened < limit:
            s = waiting.popleft()
            if s.id not in self._streams:
                continue  # reset while it waited
            s.opened = True
            self._opened += 1
            head, s.head = s.head, None
            end = s.end and not s.out and s.trailers is None
            self._conn.send_headers(s.id, head, end_stream=end)
            if end:
                s.local_ended = True
                self._local_end(s)
            else:
                self._pump(s)

    def data(self, stream_id: int, data: bytes, end_stream: bool) -> bool:
        s = self._streams.get(stream_id)
        if s is None or s.end:
            return False
        if data:
            s.out.append(data)
            s.out_bytes += len(data)
        s.end = end_stream
        if s.opened:
            self._pump(s)
        if not s.above and s.out_bytes > self.limits.stream_buffer_limit:
            s.above = True
        return s.above

    def trailers(self, stream_id: int, items: list[tuple[str, str]]) -> None:
        s = self._streams.get(stream_id)
        if s is None or s.end:
            return
        s.trailers = _block((), items)
        s.end = True
        if s.opened:
            self._pump(s)

    def _pump_all(self) -> None:
        for s in list(self._streams.values()):
            if s.out or (s.end and not s.local_ended and s.opened):
                self._pump(s)

    def _pump(self, s: _Stream) -> None:
        """Send what ``s`` has queued, as far as the peer's windows allow."""
        if s.local_ended or not s.opened:
            return
        conn = self._conn
        sid = s.id
        out = s.out
        try:
            if out:
                window = conn.local_flow_control_window(sid)
                size = conn.max_outbound_frame_size
                while out and window > 0:
                    chunk = out[0]
                    n = len(chunk)
                    if n > window or n > size:
                        n = min(window, size)
                        out[0] = chunk[n:]
                        chunk = chunk[:n]
                    else:
                        out.popleft()
                    last = not out and s.end and s.trailers is None
                    conn.send_data(sid, chunk, end_stream=last)
                    window -= n
                    s.out_bytes -= n
                    s.local_ended = last
            if not out and s.end and not s.local_ended:
                if s.trailers:
                    conn.send_headers(sid, s.trailers, end_stream=True)
                else:
                    conn.end_stream(sid)
                s.local_ended = True
        except ProtocolError:
            self._forget(s)  # closed under it (crossing resets)
            return
        if s.above and s.out_bytes <= self.limits.stream_buffer_limit // 2:
            s.above = False
            self._drained.append(sid)
        if s.local_ended:
            self._local_end(s)

    def _local_end(self, s: _Stream) -> None:
        if not self.client and not s.remote_ended and s.body_left != 0:
            # A response complete before its request: RST_STREAM NO_ERROR tells the
            # client to stop sending the rest (RFC 9113 8.1). Not when every byte its
            # content-length announced has come: only END_STREAM is missing, which a
            # client may send in a frame of its own (and would fail to, were the
            # stream reset).
            self._reset(s.id, NO_ERROR)
            self._forget(s)
        else:
            self._ended(s)

    def _ended(self, s: _Stream) -> None:
        if s.local_ended and s.remote_ended:
            self._forget(s)

    def _forget(self, s: _Stream) -> None:
        if self._streams.pop(s.id, None) is None:
            return
        s.out.clear()
        if s.unacked:
            self._acknowledge(s.id, s.unacked)  # the connection's window still counts them
            s.unacked = 0
        if self.client and s.opened:
            self._opened -= 1
            self._open_waiting()

    def _acknowledge(self, sid: int, size: int) -> None:
        try:
            self._conn.acknowledge_received_data(size, sid)
        except ProtocolError:
            pass

    def _reset(self, sid: int, code: int) -> None:
        try:
            self._conn.reset_stream(sid, code)
        except ProtocolError:
            pass  # h2 already saw it closed (both ends crossed on the wire)

    def reset(self, stream_id: int, code: int) -> None:
        s = self._streams.get(stream_id)
        if s is None:
            return
        opened = s.opened
        self._forget(s)
        if opened:
            self._reset(stream_id, code)

    def pause(self, stream_id: int, paused: bool) -> None:
        s = self._streams.get(stream_id)
        if s is None:
            return
        s.paused = paused
        if not paused and s.unacked:
            unacked, s.unacked = s.unacked, 0
            self._acknowledge(stream_id, unacked)

    def local_closed(self, stream_id: int) -> bool:
        s = self._streams.get(stream_id)
        return s is None or s.local_ended

    def goaway(self, code: int) -> None:
        if code != NO_ERROR:
            self._conn.close_connection(code)
            self._terminated = True
            return
        if self._goaway_sent:
            return
        self._goaway_sent = True
        self._last_stream_id = self._conn.highest_inbound_stream_id
        self._extra += self._conn.data_to_send() + GoAwayFrame(
            0, last_stream_id=self._last_stream_id).serialize()

    def ping(self) -> None:
        self._pings += 1
        self._conn.ping(_PING.pack(self._pings))

    def remote_setting(self, setting: int) -> int:
        if setting == SettingCodes.MAX_CONCURRENT_STREAMS:
            return self._peer_max()
        return self._conn.remote_settings.get(SettingCodes(setting), 0)

    @property
    def failed(self) -> bool:
        return self._terminated

    def finished(self) -> bool:
        if self._terminated:
            return True
        return (self._goaway_sent or self._goaway_received) and not self._streams

    def close(self) -> None:
        self._streams.clear()
        self._waiting.clear()


def _block(pseudo: Any, items: list[tuple[str, str]]) -> frames.HeaderList:
    """A block to send as h2 takes it: pseudo-header fields, then the regular ones
    HTTP/2 allows (the per-request ones never indexed, ``frames.PER_REQUEST_FIELDS``)."""
    wire = frames.wire_bytes
    per_request = frames.PER_REQUEST_FIELDS
    return frames.pairs(pseudo) + [
        NeverIndexedHeaderTuple(wire(n), wire(v)) if n in per_request else (wire(n), wire(v))
        for n, v in frames.regular_fields(items)]


_EVENTS: dict[type, Any] = {
    ev.RequestReceived: H2Engine._on_request,
    ev.ResponseReceived: H2Engine._on_response,
    ev.TrailersReceived: H2Engine._on_trailers,
    ev.DataReceived: H2Engine._on_data,
    ev.StreamReset: H2Engine._on_reset,
    ev.WindowUpdated: H2Engine._on_window_update,
    ev.RemoteSettingsChanged: H2Engine._on_settings,
    ev.PingAckReceived: H2Engine._on_ping_ack,
}
"""h2's events that matter here; the others (StreamEnded, which comes with the
event it ends, interim responses, SETTINGS acknowledgements, priorities) do not."""
