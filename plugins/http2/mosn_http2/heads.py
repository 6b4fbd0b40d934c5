"""Which request header block, if any, a server's inbound bytes are in the middle of,
for ``request_headers_timeout`` (h2 says nothing of a header block until it is whole);
and how many streams the client opened after the server's last GOAWAY named its last
stream (an engine refuses those without a word: nghttp2 ignores them, h2 resets them).

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

    __slots__ = ("_skip", "_header", "_block_sid", "_block_ends", "highest", "_refusing",
                 "refused")

    def __init__(self) -> None:
        self._skip = PREFACE_SIZE
        """Bytes to pass over: the preface, then the rest of the current frame's payload."""
        self._header = b""
        """The start of the next frame's header, while it is not all in."""
        self._block_sid = 0
        """The stream whose header block is open, 0 when none is."""
        self._block_ends = False
        """The frame being read ends the open header block."""
        self.highest = 0
        """The highest stream id a HEADERS frame named: client streams open in
        increasing order (RFC 9113 5.1.1), so a higher one is a new stream."""
        self._refusing = False
        self.refused = 0
        """New streams opened after ``refuse_new_streams``."""

    def refuse_new_streams(self) -> None:
        """The server's last GOAWAY names the highest stream read so far (the engine
        has read what was fed before): every stream opened from now on is refused."""
        self._refusing = True

    def feed(self, data: bytes) -> int:
        """Take the next bytes read; the stream whose header block is open after them,
        or 0 (a frame header not all in yet counts for no stream)."""
        buf = data if type(data) is bytes else bytes(data)
        n = len(buf)
        skip = self._skip
        if skip:
            if skip > n:
                self._skip = skip - n
                return self._block_sid
            self._skip = 0
            self._frame_end()
        if self._header:
            buf = self._header + buf[skip:]
            self._header = b""
            i, n = 0, len(buf)
        else:
            i = skip
        p = buf  # its bytes through a C pointer in the compiled build (heads.pxd)
        while i + FRAME_HEADER_SIZE <= n:
            # Length (24 bits), type, flags, stream id (RFC 9113 4.1).
            length = p[i] << 16 | p[i + 1] << 8 | p[i + 2]
            kind = p[i + 3]
            if kind == HEADERS or (kind == CONTINUATION and self._block_sid):
                sid = p[i + 5] & 0x7F
                sid = sid << 24 | p[i + 6] << 16 | p[i + 7] << 8 | p[i + 8]
                if sid > self.highest and kind == HEADERS:
                    self.highest = sid
                    if self._refusing:
                        self.refused += 1
                self._block_sid = sid
                self._block_ends = bool(p[i + 4] & END_HEADERS)
            i += FRAME_HEADER_SIZE + length
            if i > n:
                self._skip = i - n  # the read ends inside this frame's payload
                return self._block_sid
            if self._block_ends:
                self._frame_end()
        if i < n:
            self._header = buf[i:]
        return self._block_sid

    def _frame_end(self) -> None:
        if self._block_ends:
            self._block_sid = 0
            self._block_ends = False
