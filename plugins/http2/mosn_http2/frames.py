"""HTTP/2 field blocks <-> the stream layer's heads (RFC 9113 8.3).

h2 parses and writes the frames; this is the mapping between its header lists
(``(name, value)`` byte pairs) and :class:`RequestHead` / :class:`ResponseHead`:
pseudo-headers to and from method, path, authority, scheme and status; regular
fields kept with lower-case names and values as Latin-1 text (as the HTTP/1 codec
keeps them, so a converted header is the same bytes on both sides).

Connection-specific fields are never written (RFC 9113 8.2.2): a request or response
from HTTP/1 may still carry them.
"""

from __future__ import annotations

from typing import Iterable

from mosn.stream.types import Headers, RequestHead, ResponseHead

HeaderList = list[tuple[bytes, bytes]]

CONNECTION_SPECIFIC = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    "host", "http2-settings",
})
"""Fields HTTP/2 forbids (RFC 9113 8.2.2), plus ``host`` (carried as ``:authority``,
8.3.1) and ``http2-settings`` (only meaningful on an HTTP/1.1 upgrade request)."""
TE_TRAILERS = "trailers"
"""The one ``te`` value HTTP/2 allows (RFC 9113 8.2.2); gRPC requires it."""
VERSION = "2"

_STATUS = {s: str(s).encode() for s in range(100, 600)}


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _wire(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")  # set by a filter outside Latin-1


def regular_fields(fields: Iterable[tuple[str, str]], out: HeaderList) -> HeaderList:
    """``fields`` as h2 header pairs, connection-specific ones left out."""
    for name, value in fields:
        if name in CONNECTION_SPECIFIC or (name == "te" and value.strip().lower() != TE_TRAILERS):
            continue
        out.append((_wire(name), _wire(value)))
    return out


def request_fields(head: RequestHead) -> HeaderList:
    """The header list of a request (RFC 9113 8.3.1); CONNECT has no :scheme or :path
    (8.5)."""
    method = head.method
    out: HeaderList = [(b":method", _wire(method))]
    if method != "CONNECT":
        out.append((b":scheme", _wire(head.scheme or "http")))
        out.append((b":path", _wire(head.path or ("*" if method == "OPTIONS" else "/"))))
    authority = head.authority or head.headers.get("host")
    if authority:
        out.append((b":authority", _wire(authority)))
    return regular_fields(head.headers.items(), out)


def response_fields(head: ResponseHead) -> HeaderList:
    status = _STATUS.get(head.status) or str(head.status).encode()
    return regular_fields(head.headers.items(), [(b":status", status)])


def trailer_fields(trailers: Headers) -> HeaderList:
    return regular_fields(trailers.items(), [])


def request_head(header_list: Iterable[tuple[bytes, bytes]], scheme: str) -> RequestHead:
    """A received request's head. h2 has already checked the pseudo-headers (present,
    first, not repeated, RFC 9113 8.3)."""
    method = path = authority = ""
    fields: list[tuple[str, str]] = []
    cookies: list[str] = []
    host = ""
    for name, value in header_list:
        if name[:1] == b":":
            if name == b":method":
                method = _text(value)
            elif name == b":path":
                path = _text(value)
            elif name == b":authority":
                authority = _text(value)
            elif name == b":scheme":
                scheme = _text(value)
        elif name == b"host":
            host = _text(value)  # 8.3.1: :authority wins when both are there
        elif name == b"cookie":
            cookies.append(_text(value))
        else:
            fields.append((_text(name), _text(value)))
    if cookies:
        # 8.2.3: split cookie fields are joined with "; " before any HTTP/1 hop.
        fields.append(("cookie", "; ".join(cookies)))
    return RequestHead(method, path, authority or host, scheme, Headers(fields), VERSION)


def response_head(header_list: Iterable[tuple[bytes, bytes]]) -> ResponseHead:
    status = 0
    fields: list[tuple[str, str]] = []
    for name, value in header_list:
        if name[:1] != b":":
            fields.append((_text(name), _text(value)))
        elif name == b":status":
            status = int(value)
    return ResponseHead(status, Headers(fields))


def trailers(header_list: Iterable[tuple[bytes, bytes]]) -> Headers:
    return Headers([(_text(n), _text(v)) for n, v in header_list if n[:1] != b":"])
