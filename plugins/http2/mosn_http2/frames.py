"""HTTP/2 field blocks <-> the stream layer's heads (RFC 9113 8.3).

h2 parses and writes the frames; this is the mapping between its header lists
(``(name, value)`` byte pairs) and :class:`RequestHead` / :class:`ResponseHead`:
pseudo-headers to and from method, path, authority, scheme and status; regular
fields kept with lower-case names and values as Latin-1 text (as the HTTP/1 codec
keeps them, so a converted header is the same bytes on both sides).

Connection-specific fields are never written (RFC 9113 8.2.2): a request or response
from HTTP/1 may still carry them.

Received header blocks are checked here, in the same pass that maps them, rather than
by h2 (``validate_inbound_headers``), whose chain of per-byte generators cost about an
eighth of the proxy's CPU per request: a block RFC 9113 8.1.1 calls malformed raises
:class:`MalformedFields`, which the codecs answer with RST_STREAM PROTOCOL_ERROR.
"""

from __future__ import annotations

import re
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

FORBIDDEN_RECEIVED = frozenset({b"connection", b"proxy-connection", b"keep-alive",
                                b"transfer-encoding", b"upgrade"})
"""Connection-specific fields that make a received block malformed (RFC 9113 8.2.2)."""
REQUEST_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})
RESPONSE_PSEUDO = frozenset({b":status"})
_REGULAR_NAME = re.compile(rb"[!-9;-@\[-~]+").fullmatch
"""RFC 9113 8.2.1: no control, space, upper-case, DEL or non-ASCII byte, and no colon."""
_BAD_VALUE = re.compile(rb"[\0\r\n]|\A[ \t]|[ \t]\Z").search
"""RFC 9113 8.2.1: no NUL, CR or LF, no leading or trailing space or tab."""
KNOWN_FIELDS_CACHE_SIZE = 4096
"""Received (name, value) pairs already checked, with their text: a field that comes
again (most do: the HPACK table hands back the same pairs) is one dict lookup;
emptied when full."""
_known_fields: dict[tuple[bytes, bytes], tuple[str, str]] = {}
_HOST_OR_COOKIE = frozenset({b"host", b"cookie"})


class MalformedFields(ValueError):
    """A received header block is malformed (RFC 9113 8.1.1): a stream error of type
    PROTOCOL_ERROR."""


def _checked(header_list: Iterable[tuple[bytes, bytes]], pseudo_allowed: frozenset[bytes],
             ) -> tuple[dict[bytes, str], list[tuple[str, str]], bool]:
    """Check every field of a received block (RFC 9113 8.2.1, 8.2.2, 8.3); return its
    pseudo-header fields (name -> text), its regular fields as text, and whether a
    host or cookie field is among them."""
    pseudo: dict[bytes, str] = {}
    regular: list[tuple[str, str]] = []
    host_or_cookie = False
    for field in header_list:
        text = _known_fields.get(field)  # type: ignore[call-overload]
        if text is None:
            text = _check_field(field[0], field[1])
            if len(_known_fields) >= KNOWN_FIELDS_CACHE_SIZE:
                _known_fields.clear()
            _known_fields[field] = text  # type: ignore[index]
        name = field[0]
        if name[:1] == b":":
            if regular or name in pseudo or name not in pseudo_allowed:
                raise MalformedFields(f"pseudo-header field {name!r} repeated, unknown or after a regular one")
            pseudo[name] = text[1]
        else:
            regular.append(text)
            if name in _HOST_OR_COOKIE:
                host_or_cookie = True
    return pseudo, regular, host_or_cookie


def _check_field(name: bytes, value: bytes) -> tuple[str, str]:
    if name[:1] != b":":
        if _REGULAR_NAME(name) is None:
            raise MalformedFields(f"invalid field name {name!r}")
        if name in FORBIDDEN_RECEIVED or (name == b"te" and value.lower() != b"trailers"):
            raise MalformedFields(f"connection-specific field {name!r}")
    if value and _BAD_VALUE(value) is not None:
        raise MalformedFields(f"invalid value of {name!r}")
    return _text(name), _text(value)


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
    """A received request's head; MalformedFields if RFC 9113 8.1.1 calls it malformed."""
    pseudo, fields, host_or_cookie = _checked(header_list, REQUEST_PSEUDO)
    method = pseudo.get(b":method")
    if method is None:
        raise MalformedFields("no :method")
    path = pseudo.get(b":path", "")
    if method == "CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise MalformedFields("CONNECT with :scheme or :path")  # 8.5
    elif not path or b":scheme" not in pseudo:
        raise MalformedFields("no :scheme, or no or an empty :path")  # 8.3.1
    elif b":protocol" in pseudo:
        raise MalformedFields(":protocol without CONNECT")  # RFC 8441 4
    authority = pseudo.get(b":authority", "")
    host = ""
    if host_or_cookie:
        regular, cookies = [], []
        for name, value in fields:
            if name == "host":
                host = value  # 8.3.1: :authority wins when both are there
            elif name == "cookie":
                cookies.append(value)
            else:
                regular.append((name, value))
        if cookies:
            # 8.2.3: split cookie fields are joined with "; " before any HTTP/1 hop.
            regular.append(("cookie", "; ".join(cookies)))
        fields = regular
        if authority and host and authority != host:
            raise MalformedFields(":authority and host differ")  # 8.3.1
    if not authority and not host:
        raise MalformedFields("no :authority and no host")
    return RequestHead(method, path, authority or host, pseudo.get(b":scheme", scheme), Headers(fields),
                       VERSION)


def response_head(header_list: Iterable[tuple[bytes, bytes]]) -> ResponseHead:
    """A received response's head; MalformedFields if RFC 9113 8.1.1 calls it malformed."""
    pseudo, fields, _ = _checked(header_list, RESPONSE_PSEUDO)
    status = pseudo.get(b":status")
    if status is None or len(status) != 3 or not (status.isascii() and status.isdigit()):
        raise MalformedFields(f"no or an invalid :status {status!r}")  # RFC 9110 15
    return ResponseHead(int(status), Headers(fields))


def trailers(header_list: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Received trailers; MalformedFields if RFC 9113 8.1.1 calls them malformed."""
    return Headers(_checked(header_list, frozenset())[1])  # 8.1: no pseudo-header field in trailers
