"""HTTP/2 field blocks <-> the stream layer's heads (RFC 9113 8.3).

The engines hand over and take field blocks as flat lists of text, ``[name, value,
name, value, ...]``, pseudo-header fields first; values are the wire's bytes as
Latin-1 text (as the HTTP/1 codec keeps them, so a converted header is the same
bytes on both sides). This module maps them to and from :class:`RequestHead` and
:class:`ResponseHead`: pseudo-headers to and from method, path, authority, scheme
and status; regular fields kept with their lower-case names.

Connection-specific fields are never written (RFC 9113 8.2.2): a request or response
from HTTP/1 may still carry them.

Received blocks: the nghttp2 engine checks every field itself (RFC 9113 8.2, 8.3);
the pure-Python engine has h2's checks off (their per-byte generators cost about an
eighth of the proxy's CPU per request) and checks them with ``checked_fields``. Either
way what RFC 9113 8.1.1 calls malformed raises :class:`MalformedFields`, which the
codecs answer with RST_STREAM PROTOCOL_ERROR.

Extended CONNECT (RFC 8441): a request ``CONNECT`` with ``:protocol websocket`` is
the HTTP/2 form of HTTP/1.1's ``Upgrade: websocket``; it maps to that form (a GET
with ``upgrade`` and ``connection: upgrade``), which the proxy forwards as an
upgrade, and back.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import Iterable

from mosn.stream.types import Headers, RequestHead, ResponseHead

HeaderList = list[tuple[bytes, bytes]]
Fields = list[str]
"""A field block as the engines take and give it: ``[name, value, name, value, ...]``."""

CONNECTION_SPECIFIC = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    "host", "http2-settings",
})
"""Fields HTTP/2 forbids (RFC 9113 8.2.2), plus ``host`` (carried as ``:authority``,
8.3.1) and ``http2-settings`` (only meaningful on an HTTP/1.1 upgrade request)."""
TE_TRAILERS = "trailers"
"""The one ``te`` value HTTP/2 allows (RFC 9113 8.2.2); gRPC requires it."""
VERSION = "2"

_STATUS = {s: str(s) for s in range(100, 600)}

FORBIDDEN_RECEIVED = frozenset({b"connection", b"proxy-connection", b"keep-alive",
                                b"transfer-encoding", b"upgrade"})
"""Connection-specific fields that make a received block malformed (RFC 9113 8.2.2)."""
REQUEST_PSEUDO = frozenset({":method", ":scheme", ":path", ":authority", ":protocol"})
RESPONSE_PSEUDO = frozenset({":status"})
_REGULAR_NAME = re.compile(rb"[!-9;-@\[-~]+").fullmatch
"""RFC 9113 8.2.1: no control, space, upper-case, DEL or non-ASCII byte, and no colon."""
_BAD_VALUE = re.compile(rb"[\0\r\n]|\A[ \t]|[ \t]\Z").search
"""RFC 9113 8.2.1: no NUL, CR or LF, no leading or trailing space or tab."""
KNOWN_FIELDS_CACHE_SIZE = 4096
"""Received (name, value) pairs already checked, with their text: a field that comes
again (most do: the HPACK table hands back the same pairs) is one dict lookup;
emptied when full."""
_known_fields: dict[tuple[bytes, bytes], tuple[str, str]] = {}

WEBSOCKET = "websocket"
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""Appended to Sec-WebSocket-Key to make Sec-WebSocket-Accept (RFC 6455 4.2.2)."""
WEBSOCKET_KEY_BYTES = 16
"""Random bytes in a Sec-WebSocket-Key (RFC 6455 4.1)."""
TUNNEL_RESPONSE_FIELDS = frozenset({"sec-websocket-accept"})
"""HTTP/1.1 upgrade fields an extended CONNECT response does without (RFC 8441 5)."""


class MalformedFields(ValueError):
    """A received header block is malformed (RFC 9113 8.1.1): a stream error of type
    PROTOCOL_ERROR."""


# -- received blocks ------------------------------------------------------------------


def checked_fields(header_list: Iterable[tuple[bytes, bytes]]) -> tuple[Fields, int]:
    """Check every field of a received block (RFC 9113 8.2.1, 8.2.2, 8.3) and the
    order of its pseudo-header fields; return it as a flat list of text, and its
    size (names, values and 32 per field, RFC 9113 6.5.2)."""
    out: Fields = []
    size = 0
    regular = False
    for field in header_list:
        name = field[0]
        text = _known_fields.get(field)  # type: ignore[call-overload]
        if text is None:
            text = _check_field(name, field[1])
            if len(_known_fields) >= KNOWN_FIELDS_CACHE_SIZE:
                _known_fields.clear()
            _known_fields[field] = text  # type: ignore[index]
        if name[:1] == b":":
            if regular:
                raise MalformedFields(f"pseudo-header field {name!r} after a regular one")
        else:
            regular = True
        out += text
        size += len(name) + len(field[1]) + 32
    return out, size


def _check_field(name: bytes, value: bytes) -> tuple[str, str]:
    if name[:1] != b":":
        if _REGULAR_NAME(name) is None:
            raise MalformedFields(f"invalid field name {name!r}")
        if name in FORBIDDEN_RECEIVED or (name == b"te" and value.lower() != b"trailers"):
            raise MalformedFields(f"connection-specific field {name!r}")
    if value and _BAD_VALUE(value) is not None:
        raise MalformedFields(f"invalid value of {name!r}")
    return name.decode("latin-1"), value.decode("latin-1")


def _pseudo(fields: Fields, allowed: frozenset[str]) -> tuple[dict[str, str], int]:
    """The pseudo-header fields at the start of ``fields`` (each once, each one
    ``allowed``), and where the regular fields begin."""
    pseudo: dict[str, str] = {}
    i, n = 0, len(fields)
    while i < n and fields[i][:1] == ":":
        name = fields[i]
        if name in pseudo or name not in allowed:
            raise MalformedFields(f"pseudo-header field {name!r} repeated or unknown")
        pseudo[name] = fields[i + 1]
        i += 2
    return pseudo, i


def _pairs(fields: Fields, start: int) -> list[tuple[str, str]]:
    it = iter(fields[start:])
    return list(zip(it, it))


def request_head(fields: Fields, scheme: str) -> RequestHead:
    """A received request's head; MalformedFields if RFC 9113 8.1.1 calls it malformed."""
    pseudo, start = _pseudo(fields, REQUEST_PSEUDO)
    method = pseudo.get(":method")
    if method is None:
        raise MalformedFields("no :method")
    path = pseudo.get(":path", "")
    protocol = pseudo.get(":protocol")
    if method == "CONNECT" and protocol is None:
        if ":scheme" in pseudo or ":path" in pseudo:
            raise MalformedFields("CONNECT with :scheme or :path")  # 8.5
    elif not path or ":scheme" not in pseudo:
        raise MalformedFields("no :scheme, or no or an empty :path")  # 8.3.1
    elif protocol is not None and method != "CONNECT":
        raise MalformedFields(":protocol without CONNECT")  # RFC 8441 4
    authority = pseudo.get(":authority", "")
    regular = _pairs(fields, start)
    host = ""
    if "host" in fields or "cookie" in fields:  # a value equal to either only costs a pass
        kept, cookies = [], []
        for name, value in regular:
            if name == "host":
                host = value  # 8.3.1: :authority wins when both are there
            elif name == "cookie":
                cookies.append(value)
            else:
                kept.append((name, value))
        if cookies:
            # 8.2.3: split cookie fields are joined with "; " before any HTTP/1 hop.
            kept.append(("cookie", "; ".join(cookies)))
        regular = kept
        if authority and host and authority != host:
            raise MalformedFields(":authority and host differ")  # 8.3.1
    if not authority and not host:
        raise MalformedFields("no :authority and no host")
    headers = Headers(regular)
    if protocol is not None:
        method = _upgrade_request(headers, protocol)
    return RequestHead(method, path, authority or host, pseudo.get(":scheme", scheme), headers, VERSION)


def _upgrade_request(headers: Headers, protocol: str) -> str:
    """An extended CONNECT's fields as an HTTP/1.1 upgrade request's (RFC 8441 5);
    its method."""
    headers.add("upgrade", protocol)
    headers.add("connection", "upgrade")
    if protocol.lower() == WEBSOCKET and "sec-websocket-key" not in headers:
        # An HTTP/1.1 WebSocket server needs one; over HTTP/2 there is none (RFC 8441 5).
        headers.add("sec-websocket-key", base64.b64encode(os.urandom(WEBSOCKET_KEY_BYTES)).decode())
    return "GET"


def is_upgrade(head: RequestHead) -> bool:
    """True for a request the proxy forwards as an upgrade (a received extended
    CONNECT, or an HTTP/1.1 ``Upgrade`` request)."""
    return "upgrade" in head.headers


def response_head(fields: Fields) -> ResponseHead:
    """A received response's head; MalformedFields if RFC 9113 8.1.1 calls it malformed."""
    pseudo, start = _pseudo(fields, RESPONSE_PSEUDO)
    status = pseudo.get(":status")
    if status is None or len(status) != 3 or not (status.isascii() and status.isdigit()):
        raise MalformedFields(f"no or an invalid :status {status!r}")  # RFC 9110 15
    return ResponseHead(int(status), Headers(_pairs(fields, start)))


def upgraded_response(head: ResponseHead, request: RequestHead) -> ResponseHead:
    """The 2xx answer to an extended CONNECT as the ``101`` of the HTTP/1.1 upgrade
    it stands for (RFC 8441 5, RFC 6455 4.2.2)."""
    if not 200 <= head.status < 300:
        return head
    headers = head.headers
    headers.set("upgrade", request.headers.get("upgrade", WEBSOCKET))
    headers.set("connection", "upgrade")
    key = request.headers.get("sec-websocket-key")
    if key is not None:
        digest = hashlib.sha1(key.encode("latin-1") + WEBSOCKET_GUID).digest()
        headers.set("sec-websocket-accept", base64.b64encode(digest).decode())
    return ResponseHead(101, headers, "Switching Protocols")


def trailers(fields: Fields) -> Headers:
    """Received trailers; MalformedFields if RFC 9113 8.1.1 calls them malformed."""
    if fields and fields[0][:1] == ":":
        raise MalformedFields("a pseudo-header field in trailers")  # 8.1
    return Headers(_pairs(fields, 0))


# -- blocks to send -------------------------------------------------------------------


def regular_fields(fields: Iterable[tuple[str, str]], out: Fields) -> Fields:
    """``fields`` appended to ``out``, connection-specific ones left out."""
    append = out.append
    for name, value in fields:
        if name in CONNECTION_SPECIFIC or (name == "te" and value.strip().lower() != TE_TRAILERS):
            continue
        append(name)
        append(value)
    return out


def request_fields(head: RequestHead, connect_protocol: bool = False) -> Fields:
    """The field block of a request (RFC 9113 8.3.1); CONNECT has no :scheme or :path
    (8.5). An upgrade request becomes an extended CONNECT where the peer takes one
    (``connect_protocol``, RFC 8441 4); elsewhere the upgrade is dropped."""
    method = head.method
    authority = head.authority or head.headers.get("host") or ""
    if connect_protocol and is_upgrade(head):
        token = head.headers.get("upgrade", "").split(",")[0].strip()
        out = [":method", "CONNECT", ":protocol", token, ":scheme", head.scheme or "http",
               ":path", head.path or "/", ":authority", authority]
        return regular_fields((f for f in head.headers.items() if f[0] != "sec-websocket-key"), out)
    out = [":method", method]
    if method != "CONNECT":
        out += (":scheme", head.scheme or "http",
                ":path", head.path or ("*" if method == "OPTIONS" else "/"))
    if authority:
        out += (":authority", authority)
    return regular_fields(head.headers.items(), out)


def response_fields(head: ResponseHead, tunnel: bool = False) -> Fields:
    """The field block of a response; for an extended CONNECT (``tunnel``) the
    HTTP/1.1 upgrade's ``101`` is its ``200`` (RFC 8441 5)."""
    status = head.status
    items: Iterable[tuple[str, str]] = head.headers.items()
    if tunnel:
        if status == 101:
            status = 200
        items = (f for f in items if f[0] not in TUNNEL_RESPONSE_FIELDS)
    return regular_fields(items, [":status", _STATUS.get(status) or str(status)])


def trailer_fields(trailers: Headers) -> Fields:
    return regular_fields(trailers.items(), [])


def pairs(fields: Fields) -> HeaderList:
    """A flat field list as h2 takes it: (name, value) byte pairs."""
    it = iter(fields)
    return [(wire_bytes(name), wire_bytes(value)) for name, value in zip(it, it)]


def wire_bytes(value: str) -> bytes:
    """Field text as sent: its Latin-1 bytes, as it was received."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")  # set by a filter outside Latin-1
