"""The native engine: one libnghttp2 session per connection, through the C layer of
``engine_nghttp2.c`` (compiled into ``mosn_http2._nghttp2`` at install). The
interface and the events are ``engine``'s; what the C layer keeps per stream (the
queued body, trailers, the acknowledgements held for a paused reader) is described
there."""

from __future__ import annotations

from itertools import chain
from typing import TYPE_CHECKING, Sequence

from mosn_http2._nghttp2 import ffi, lib
from mosn_http2.frames import wire_bytes
from mosn_http2.wire import (
    ASSUMED_PEER_MAX_STREAMS,
    DATA,
    ENHANCE_YOUR_CALM,
    MAX_CONTINUATIONS,
    PROTOCOL_ERROR,
    Handler,
)

if TYPE_CHECKING:
    from mosn_http2.config import Limits

_EVENT_SIZE = 12
"""Bytes of an event's header (engine_nghttp2.c's EV_HEADER_SIZE)."""
_ERR_FLOODED = -904
"""nghttp2's NGHTTP2_ERR_FLOODED: the peer makes it queue answers it does not read."""

# SETTINGS ids (RFC 9113 6.5.2, RFC 8441 3).
_ENABLE_PUSH = 0x2
_MAX_CONCURRENT_STREAMS = 0x3
_INITIAL_WINDOW_SIZE = 0x4
_MAX_FRAME_SIZE = 0x5
_MAX_HEADER_LIST_SIZE = 0x6
_ENABLE_CONNECT_PROTOCOL = 0x8


_STATUS = {code: str(code) for code in range(100, 600)}


_join = "\0".join
_flat = chain.from_iterable


def _blob(pseudo: Sequence[str], items: list[tuple[str, str]]) -> tuple[bytes, int]:
    """A field block to send as the C layer takes it ("name\\0value\\0...",
    pseudo-header fields first) and its number of fields."""
    n = (len(pseudo) >> 1) + len(items)
    flat = list(pseudo)
    flat += _flat(items)
    text = _join(flat)  # one join, no string per field
    try:
        blob = text.encode("latin-1")
    except UnicodeEncodeError:
        blob = b"\0".join(map(wire_bytes, text.split("\0")))
    if n and blob.count(0) != 2 * n - 1:
        # A NUL inside a field (set by a filter): that field is left out, as a
        # field HTTP/2 cannot carry (RFC 9113 8.2.1).
        return _blob(pseudo, [f for f in items if "\0" not in f[0] and "\0" not in f[1]])
    return blob, n


class Nghttp2Engine:
    # No __slots__: engine_nghttp2.pxd declares its attribute (a C field when compiled).

    def __init__(self, client: bool, limits: Limits, upgrade: bytes | None = None,
                 upgrade_head: bool = False) -> None:
        settings = [
            _MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams,
            _MAX_HEADER_LIST_SIZE, limits.max_header_list_size,
            _MAX_FRAME_SIZE, limits.max_frame_size,
            _INITIAL_WINDOW_SIZE, limits.initial_window_size,
        ]
        if client:
            settings += [_ENABLE_PUSH, 0]  # the proxy has nowhere to put a push
        else:
            settings += [_ENABLE_CONNECT_PROTOCOL, 1]  # WebSocket over HTTP/2 (RFC 8441)
        h = lib.mosn_h2_new(
            0 if client else 1, ffi.new("uint32_t[]", settings), len(settings) // 2,
            limits.connection_window_size, limits.max_header_list_size,
            limits.stream_buffer_limit, MAX_CONTINUATIONS, ASSUMED_PEER_MAX_STREAMS,
            upgrade if upgrade is not None else ffi.NULL, len(upgrade or b""), upgrade_head)
        if h == ffi.NULL:
            raise ValueError("nghttp2 refused the session (out of memory, or invalid "
                             "HTTP2-Settings on an upgrade)")
        self._h = ffi.gc(h, lib.mosn_h2_del)

    def receive(self, data: bytes, handlers: list[Handler]) -> bool:
        h = self._h
        n = lib.mosn_h2_recv(h, data, len(data))
        if n < 0:  # a fatal error: a bad preface, a flood
            if h.ev.len:
                self._report(handlers, h.ev.len)
            lib.mosn_h2_goaway(h, ENHANCE_YOUR_CALM if n == _ERR_FLOODED else PROTOCOL_ERROR)
            return False
        if n:
            self._report(handlers, n)
            lib.mosn_h2_settle(h)
        return True

    def send(self) -> bytes:
        h = self._h
        n = lib.mosn_h2_send(h)
        return ffi.buffer(h.out.data, n)[:] if n > 0 else b""

    def report(self, handlers: list[Handler]) -> None:
        n = self._h.ev.len
        if n:
            self._report(handlers, n)

    def _report(self, handlers: list[Handler], n: int) -> None:
        ev = self._h.ev
        buf = ffi.buffer(ev.data, n)[:]
        ev.len = 0
        p = buf  # its bytes through a C pointer in the compiled build (engine_nghttp2.pxd)
        pos = 0
        while pos < n:
            # An event's header (engine_nghttp2.c): type, end_stream, padding, stream
            # id and value, little-endian.
            kind = p[pos]
            end = p[pos + 1] != 0
            sid = p[pos + 7]  # (in a 64-bit C integer before it is shifted)
            sid = sid << 24 | p[pos + 6] << 16 | p[pos + 5] << 8 | p[pos + 4]
            size = p[pos + 11]
            size = size << 24 | p[pos + 10] << 16 | p[pos + 9] << 8 | p[pos + 8]
            pos += _EVENT_SIZE
            if kind == DATA:  # body bytes follow
                start = pos
                pos += size
                handlers[kind](sid, end, buf[start:pos])
            elif kind < DATA:  # a header block follows
                start = pos
                pos += size
                handlers[kind](sid, end, buf[start:pos].decode("latin-1").split("\0")
                               if pos > start else [])
            else:
                handlers[kind](sid, end, size)

    def request(self, pseudo: list[str], items: list[tuple[str, str]], end_stream: bool) -> int:
        blob, n = _blob(pseudo, items)
        return lib.mosn_h2_submit(self._h, 0, blob, len(blob), n, end_stream)

    def respond(self, stream_id: int, status: int, items: list[tuple[str, str]],
                end_stream: bool) -> int:
        blob, n = _blob((":status", _STATUS.get(status) or str(status)), items)
        return lib.mosn_h2_submit(self._h, stream_id, blob, len(blob), n, end_stream)

    def data(self, stream_id: int, data: bytes, end_stream: bool) -> bool:
        if type(data) is not bytes:
            data = bytes(data)
        return lib.mosn_h2_data(self._h, stream_id, data, len(data), end_stream) == 1

    def trailers(self, stream_id: int, items: list[tuple[str, str]]) -> None:
        blob, n = _blob((), items)
        lib.mosn_h2_trailers(self._h, stream_id, blob, len(blob), n)

    def reset(self, stream_id: int, code: int) -> None:
        lib.mosn_h2_reset(self._h, stream_id, code)

    def pause(self, stream_id: int, paused: bool) -> None:
        lib.mosn_h2_pause(self._h, stream_id, paused)

    def local_closed(self, stream_id: int) -> bool:
        return lib.mosn_h2_local_closed(self._h, stream_id) != 0

    def goaway(self, code: int) -> None:
        lib.mosn_h2_goaway(self._h, code)

    def ping(self) -> None:
        lib.mosn_h2_ping(self._h)

    def remote_setting(self, setting: int) -> int:
        return lib.mosn_h2_remote_setting(self._h, setting)

    def finished(self) -> bool:
        return lib.mosn_h2_finished(self._h) != 0

    @property
    def failed(self) -> bool:
        return self._h.error != 0

    def close(self) -> None:
        pass  # the session is freed with this object (ffi.gc): a late call stays safe
