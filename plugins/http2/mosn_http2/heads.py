"""Which request header block, if any, a server's inbound bytes are in the middle of,
for ``request_headers_timeout`` (h2 says nothing of a header block until it is whole).

Frames follow one another on the wire (RFC 9113 4.1), so their 9-byte headers are
enough to follow along: a header block is open from the first byte of a HEADERS
frame until the end of the frame carrying END_HEADERS (that HEADERS frame, or the
last of the CONTINUATION frames that must come right after it, RFC 9113 6.10).
Sans-IO: bytes in, a stream id out.
"""

from __future__ import annotations

PREFACE_SIZE = 24
"""Bytes of the client connection preface before the first frame (RFC 9113 3.4)."""
FRAME_HEADER_SIZE = 9
"""Length (3), type, flags, stream id (4) (RFC 9113 4.1)."""
HEADERS = 0x1
CONTINUATION = 0x9
END_HEADERS = 0x4


class HeaderBlockWatch:
    """Follows a client's frames; ``feed`` says which stream's header block is open."""

    __slots__ = ("_skip", "_header", "_frame_sid", "_block_sid", "_block_ends")

    def __init__(self) -> None:
        self._skip = PREFACE_SIZE
        """Bytes to pass over: the preface, then the rest of the current frame's payload."""
        self._header = bytearray()
        """The current frame's header, while it is not all in."""
        self._frame_sid = 0
        """The stream of the header-block frame being read, 0 for another frame."""
        self._block_sid = 0
        """The stream whose header block is open, 0 when none is."""
        self._block_ends = False
        """The frame being read ends the open header block."""

    def feed(self, data: bytes) -> int:
        """Take the next bytes read; the stream whose header block is open after them,
        or 0 (a frame header not all in yet counts for no stream)."""
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                if not self._skip:
                    self._frame_end()
                continue
            header = self._header
            need = FRAME_HEADER_SIZE - len(header)
            header += data[i:i + need]
            i += need
            if len(header) < FRAME_HEADER_SIZE:
                break
            self._frame_start(int.from_bytes(header[:3], "big"), header[3], header[4],
                              int.from_bytes(header[5:9], "big") & 0x7FFFFFFF)
            header.clear()
        return self._block_sid or self._frame_sid

    def _frame_start(self, length: int, kind: int, flags: int, sid: int) -> None:
        if kind == HEADERS or (kind == CONTINUATION and self._block_sid):
            self._frame_sid = sid
            self._block_sid = sid
            self._block_ends = bool(flags & END_HEADERS)
        self._skip = length
        if not length:
            self._frame_end()

    def _frame_end(self) -> None:
        if self._block_ends:
            self._block_sid = 0
            self._block_ends = False
        self._frame_sid = 0
