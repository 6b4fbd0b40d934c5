"""HTTP/2 field blocks <-> the stream layer's heads (RFC 9113 8.3).

The engines hand over received blocks as flat lists of text, pseudo-header fields in
fixed places: a request's ``[method, scheme, authority, path, protocol, name, value,
name, value, ...]`` (an absent pseudo-header field is empty), a response's
``[status, name, value, ...]``, trailers' ``[name, value, ...]``; values are the
wire's bytes as Latin-1 text (as the HTTP/1 codec keeps them, so a converted header
is the same bytes on both sides). They take blocks to send as pseudo-header fields
(``[":method", "GET", ...]``) and the head's regular fields, and leave the
connection-specific ones out (RFC 9113 8.2.2): a request or response from HTTP/1 may
still carry them. This module maps between those and :class:`RequestHead` /
:class:`ResponseHead`.

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
from typing import Iterable, Iterator

from mosn.stream.types import Headers, RequestHead, ResponseHead

HeaderList = list[tuple[bytes, bytes]]
Fields = list[str]
"""A field block as the engines give it (see the module docstring)."""

CONNECTION_SPECIFIC = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    "host", "http2-settings",
})
"""Fields HTTP/2 forbids (RFC 9113 8.2.2), plus ``host`` (carried as ``:authority``,
8.3.1) and ``http2-settings`` (only meaningful on an HTTP/1.1 upgrade request)."""
PER_REQUEST_FIELDS = frozenset({"x-request-id", "traceparent"})
"""Fields whose value is new on every request (the proxy's request id, a trace's
parent): sent as literals never indexed (RFC 7541 6.2.3), so they do not push the
fields that repeat out of the peer's HPACK table, nor cost an insertion and an
eviction on both sides (engine_nghttp2.c's ``per_request`` names the same)."""
TE_TRAILERS = "trailers"
"""The one ``te`` value HTTP/2 allows (RFC 9113 8.2.2); gRPC requires it."""
VERSION = "2"

FORBIDDEN_RECEIVED = frozenset({b"connection", b"proxy-connection", b"keep-alive",
                                b"transfer-encoding", b"upgrade"})
"""Connection-specific fields that make a received block malformed (RFC 9113 8.2.2)."""
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


REQUEST_SLOTS = {":method": 0, ":scheme": 1, ":authority": 2, ":path": 3, ":protocol": 4}
RESPONSE_SLOTS = {":status": 0}
NO_SLOTS: dict[str, int] = {}
"""Where each pseudo-header field goes in a received block (see the module docstring)."""


def checked_fields(header_list: Iterable[tuple[bytes, bytes]], slots: dict[str, int],
                   ) -> tuple[Fields, int]:
    """Check every field of a received block (RFC 9113 8.2.1, 8.2.2, 8.3): its
    pseudo-header fields each one of ``slots``, once, before the regular fields.
    Return it laid out as the engines hand blocks over, and its size (names, values
    and 32 per field, RFC 9113 6.5.2)."""
    pseudo = [""] * len(set(slots.values()))
    seen: set[str] = set()
    out: Fields = pseudo
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
        size += len(name) + len(field[1]) + 32
        if name[:1] == b":":
            slot = slots.get(text[0])
            if regular or slot is None or text[0] in seen or not text[1]:
                raise MalformedFields(f"pseudo-header field {name!r} repeated, unknown, empty or "
                                      "after a regular one")
            seen.add(text[0])
            pseudo[slot] = text[1]
        else:
            regular = True
            out += text
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


def request_head(fields: Fields, scheme: str) -> RequestHead:
    """A received request's head; MalformedFields if RFC 9113 8.1.1 calls it malformed."""
    method, pseudo_scheme, authority, path, protocol = fields[:5]
    if not method:
        raise MalformedFields("no :method")
    if method == "CONNECT" and not protocol:
        if pseudo_scheme or path:
            raise MalformedFields("CONNECT with :scheme or :path")  # 8.5
    elif not path or not pseudo_scheme:
        raise MalformedFields("no :scheme, or no or an empty :path")  # 8.3.1
    elif protocol and method != "CONNECT":
        raise MalformedFields(":protocol without CONNECT")  # RFC 8441 4
    host = ""
    if "host" in fields or "cookie" in fields:  # (a value equal to either costs a pass)
        kept, cookies = [], []
        for name, value in zip(fields[5::2], fields[6::2]):
            if name == "host":
                host = value  # 8.3.1: :authority wins when both are there
            elif name == "cookie":
                cookies.append(value)
            else:
                kept.append((name, value))
        if cookies:
            # 8.2.3: split cookie fields are joined with "; " before any HTTP/1 hop.
            kept.append(("cookie", "; ".join(cookies)))
        headers = Headers(kept)
        if authority and host and authority != host:
            raise MalformedFields(":authority and host differ")  # 8.3.1
    else:
        headers = Headers.from_flat(fields, 5)
    if not authority and not host:
        raise MalformedFields("no :authority and no host")
    if protocol:
        method = _upgrade_request(headers, protocol)
    return RequestHead(method, path, authority or host, pseudo_scheme or scheme, headers, VERSION)


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
    return head.headers.get("upgrade") is not None


_STATUS_CODES = {str(code): code for code in range(200, 600)}
"""The final statuses (RFC 9110 15): three digits."""


def response_head(fields: Fields) -> ResponseHead:
    """A received response's head; MalformedFields if RFC 9113 8.1.1 calls it malformed."""
    status = _STATUS_CODES.get(fields[0])
    if status is None:
        raise MalformedFields(f"no or an invalid :status {fields[0]!r}")  # RFC 9110 15
    return ResponseHead(status, Headers.from_flat(fields, 1))


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
    """Received trailers (the engines refuse a pseudo-header field in them, RFC 9113 8.1)."""
    return Headers.from_flat(fields)


# -- blocks to send -------------------------------------------------------------------


def regular_fields(fields: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """``fields`` without the connection-specific ones (what the nghttp2 engine leaves
    out in C, the pure-Python one with this)."""
    for name, value in fields:
        if name in CONNECTION_SPECIFIC or (name == "te" and value.strip().lower() != TE_TRAILERS):
            continue
        yield name, value


def request_pseudo(head: RequestHead, connect_protocol: bool = False) -> Fields:
    """The pseudo-header fields of a request (RFC 9113 8.3.1); CONNECT has no :scheme
    or :path (8.5). An upgrade request becomes an extended CONNECT where the peer
    takes one (``connect_protocol``, RFC 8441 4); elsewhere the upgrade is dropped
    (its fields are connection-specific)."""
    method = head.method
    authority = head.authority or head.headers.get("host") or ""
    if connect_protocol and is_upgrade(head):
        token = head.headers.get("upgrade", "").split(",")[0].strip()
        return [":method", "CONNECT", ":protocol", token, ":scheme", head.scheme or "http",
                ":path", head.path or "/", ":authority", authority]
    out = [":method", method]
    if method != "CONNECT":
        out += (":scheme", head.scheme or "http",
                ":path", head.path or ("*" if method == "OPTIONS" else "/"))
    if authority:
        out += (":authority", authority)
    return out


def tunnel_request_fields(head: RequestHead) -> list[tuple[str, str]]:
    """An upgrade request's regular fields as an extended CONNECT sends them: no
    Sec-WebSocket-Key (RFC 8441 5)."""
    return [f for f in head.headers.items() if f[0] != "sec-websocket-key"]


def tunnel_response(head: ResponseHead) -> tuple[int, list[tuple[str, str]]]:
    """An HTTP/1.1 upgrade's answer as an extended CONNECT's: ``101`` is ``200``,
    without Sec-WebSocket-Accept (RFC 8441 5)."""
    status = 200 if head.status == 101 else head.status
    return status, [f for f in head.headers.items() if f[0] not in TUNNEL_RESPONSE_FIELDS]


def pairs(fields: Iterable[str]) -> HeaderList:
    """A flat field list as h2 takes it: (name, value) byte pairs."""
    it = iter(fields)
    return [(wire_bytes(name), wire_bytes(value)) for name, value in zip(it, it)]


def wire_bytes(value: str) -> bytes:
    """Field text as sent: its Latin-1 bytes, as it was received."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")  # set by a filter outside Latin-1
