"""Registers the ``Http2`` protocol with mosn."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable

import dataclasses
import logging

from mosn.plugins import Extension, hookimpl
from mosn.proxy.http import HTTP_SEMANTICS
from mosn.stream.types import MatchResult, NewStream, RequestHead
from mosn_http2 import matcher
from mosn_http2.codec import ClientConnection, ServerConnection
from mosn_http2.config import Http2Config, Limits
from mosn_http2.engine import chosen_engine

log = logging.getLogger("mosn.http2")

PROTOCOL_NAME = "Http2"
"""MOSN's name for the protocol (``downstream_protocol: Http2``)."""
SWITCHING_PROTOCOLS = (b"HTTP/1.1 101 Switching Protocols\r\n"
                       b"connection: Upgrade\r\nupgrade: h2c\r\n\r\n")
_UPGRADE_FIELDS = frozenset({"upgrade", "http2-settings", "connection"})


class Http2Protocol:
    """What the ``proxy`` filter and the upstream pools build codecs with."""

    __slots__ = ("name", "limits")
    multiplexed = True
    alpn = "h2"
    """The TLS ALPN protocol id (RFC 9113 3.2): a TLS listener with
    ``downstream_protocol: Auto`` hands a connection whose handshake chose it to
    ``server``; a TLS upstream connection made for this protocol offers it."""
    upgrade_token = "h2c"
    """The HTTP/1.1 ``Upgrade`` token that switches a connection to this protocol."""
    semantics = HTTP_SEMANTICS
    """HTTP's, for the proxy (gRPC's local replies are trailers-only gRPC statuses)."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.name = PROTOCOL_NAME
        self.limits = dataclasses.replace(limits, engine=chosen_engine(limits.engine))

    def match(self, data: bytes) -> MatchResult:
        return matcher.match(data)

    def server(self, conn: Any, new_stream: NewStream) -> ServerConnection:
        return ServerConnection(conn, new_stream, self.limits)

    def client(self, conn: Any, on_idle: Callable[[], None]) -> ClientConnection:
        return ClientConnection(conn, on_idle, self.limits)

    def upgrade(self, conn: Any, new_stream: NewStream, head: RequestHead,
                data: bytes) -> bool:
        """Take over an HTTP/1.1 connection whose request ``head`` (read in full)
        asked for ``Upgrade: h2c``: answer 101, then serve that request as stream 1
        and ``data`` (what followed it) as HTTP/2. False, untouched, when the request
        does not carry exactly one valid ``HTTP2-Settings`` (RFC 7540 3.2.1)."""
        values = head.headers.get_all("http2-settings")
        if len(values) != 1:
            return False
        token = values[0].strip()
        try:
            settings = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return False
        if len(settings) % 6:
            return False  # six bytes a setting (RFC 9113 6.5.1)
        for name in _UPGRADE_FIELDS:
            head.headers.remove(name)
        conn.write(SWITCHING_PROTOCOLS)
        codec = ServerConnection(conn, new_stream, self.limits, upgrade=(head, settings))
        if data:
            codec.on_data(data)
        return True

    def __repr__(self) -> str:
        return f"<Http2Protocol {self.limits}>"


def build(config: Http2Config | None = None) -> Http2Protocol:
    protocol = Http2Protocol((config or Http2Config()).limits())
    log.info("Http2 on the %s engine", protocol.limits.engine)
    return protocol


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension(PROTOCOL_NAME, build, Http2Config,
                      description="HTTP/2 (h2c prior knowledge and upgrade) and gRPC, on nghttp2 or h2")]
