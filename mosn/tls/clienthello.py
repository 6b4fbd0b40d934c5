"""A sans-IO reader of the TLS ClientHello (RFC 8446 section 4.1.2, RFC 5246 7.4.1.2):
bytes in, a verdict out; what the TLS inspector decides with.

:func:`inspect` tells plaintext from TLS by the first byte (a handshake record is
0x16; no text protocol starts with it), then reads the server name (RFC 6066 section
3), the ALPN list (RFC 7301) and the offered versions (RFC 8446 4.2.1) once the whole
ClientHello is there.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_CLIENT_HELLO = 64 * 1024
"""Bytes the inspector waits for before it stops looking for the end of a
ClientHello (Envoy's ``max_client_hello_size``); the handshake itself still runs."""

RECORD_HANDSHAKE = 0x16
HANDSHAKE_CLIENT_HELLO = 0x01
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
_RECORD_HEADER = 5


class Verdict(enum.Enum):
    NEED_MORE = "need_more"
    NOT_TLS = "not_tls"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class ClientHello:
    verdict: Verdict
    server_name: str = ""
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    complete: bool = False
    """The whole ClientHello was read (else: TLS by its first bytes only)."""


_NEED_MORE = ClientHello(Verdict.NEED_MORE)
_NOT_TLS = ClientHello(Verdict.NOT_TLS)
_TLS_UNREAD = ClientHello(Verdict.TLS)


def inspect(data: bytes) -> ClientHello:
    """What ``data`` (the first bytes of a connection) is."""
    if not data:
        return _NEED_MORE
    if data[0] != RECORD_HANDSHAKE:
        return _NOT_TLS
    if len(data) < 2:
        return _NEED_MORE
    if data[1] != 3:  # record version major: 3 for SSL 3.0 up to TLS 1.3
        return _NOT_TLS
    body = _handshake_bytes(data)
    if body is None:
        return _TLS_UNREAD if len(data) >= MAX_CLIENT_HELLO else _NEED_MORE
    if not body or body[0] != HANDSHAKE_CLIENT_HELLO:
        return _TLS_UNREAD
    try:
        return _parse_hello(body[4:])
    except (IndexError, ValueError, UnicodeDecodeError):
        return _TLS_UNREAD  # malformed: the handshake will refuse it


def _handshake_bytes(data: bytes) -> bytes | None:
    """The first handshake message, joined from its records; None until all there."""
    out = bytearray()
    pos = 0
    while pos + _RECORD_HEADER <= len(data):
        if data[pos] != RECORD_HANDSHAKE:
            return bytes(out)
        length = int.from_bytes(data[pos + 3:pos + 5], "big")
        end = pos + _RECORD_HEADER + length
        if end > len(data):
            return None
        out += data[pos + _RECORD_HEADER:end]
        pos = end
        if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[1:4], "big"):
            return bytes(out)
    return None


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.int(length_bytes))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _parse_hello(body: bytes) -> ClientHello:
    r = _Reader(body)
    legacy_version = r.int(2)
    r.take(32)  # random
    r.vector(1)  # session id
    r.vector(2)  # cipher suites
    r.vector(1)  # compression methods
    server_name, alpn, versions = "", (), (legacy_version,)
    if r.left:
        exts = _Reader(r.vector(2))
        while exts.left:
            kind = exts.int(2)
            ext = _Reader(exts.vector(2))
            if kind == EXT_SERVER_NAME:
                names = _Reader(ext.vector(2))
                while names.left:
                    name_type = names.int(1)
                    name = names.vector(2)
                    if name_type == 0:
                        server_name = name.decode("ascii")
            elif kind == EXT_ALPN:
                protocols = _Reader(ext.vector(2))
                found = []
                while protocols.left:
                    found.append(protocols.vector(1).decode("ascii"))
                alpn = tuple(found)
            elif kind == EXT_SUPPORTED_VERSIONS:
                listed = _Reader(ext.vector(1))
                versions = tuple(listed.int(2) for _ in range(listed.left // 2))
    return ClientHello(Verdict.TLS, server_name, alpn, versions, complete=True)
