"""Registers the ``Http1`` protocol with mosn."""

from __future__ import annotations

from typing import Any, Callable

from mosn.plugins import Extension, hookimpl
from mosn.proxy.http import HTTP_SEMANTICS
from mosn.stream.types import MatchResult, NewStream
from mosn_http1 import matcher
from mosn_http1.codec import ClientConnection, ServerConnection, TakeOver
from mosn_http1.config import Http1Config, Limits

PROTOCOL_NAME = "Http1"
"""MOSN's name for the protocol (``downstream_protocol: Http1``)."""


class Http1Protocol:
    """What the ``proxy`` filter and the upstream pools build codecs with."""

    __slots__ = ("name", "limits", "upgrades")
    multiplexed = False
    alpn = "http/1.1"
    """The TLS ALPN protocol id (RFC 9112): offered by a TLS upstream connection
    made for this protocol, and what ``downstream_protocol: Auto`` serves with it."""
    semantics = HTTP_SEMANTICS
    """HTTP's, for the proxy: paths normalized, forwarding fields, text local replies
    (gRPC statuses to a gRPC call), connection-specific fields dropped."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.name = PROTOCOL_NAME
        self.limits = limits
        self.upgrades: dict[str, TakeOver] = {}
        """Upgrade token -> hand-over to the protocol speaking it, filled by the proxy
        with the installed protocols that have an ``upgrade_token`` (Http2: ``h2c``)."""

    def match(self, data: bytes) -> MatchResult:
        return matcher.match(data)

    def server(self, conn: Any, new_stream: NewStream) -> ServerConnection:
        return ServerConnection(conn, new_stream, self.limits, self.upgrades)

    def client(self, conn: Any, on_idle: Callable[[], None]) -> ClientConnection:
        return ClientConnection(conn, on_idle, self.limits)

    def __repr__(self) -> str:
        return f"<Http1Protocol {self.limits}>"


def build(config: Http1Config | None = None) -> Http1Protocol:
    return Http1Protocol((config or Http1Config()).limits())


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension(PROTOCOL_NAME, build, Http1Config,
                      description="HTTP/1.1 and HTTP/1.0 on httptools (llhttp)")]
