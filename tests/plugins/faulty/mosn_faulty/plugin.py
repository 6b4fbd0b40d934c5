"""Protocols ``FaultyHttp1`` and ``FaultyHttp2``: the HTTP/1 and HTTP/2 plugins'
server codecs, raising on purpose (a stand-in for a bug) when a read holds
``TRIGGER``; everything else is the real codec. Auto never picks them."""

from __future__ import annotations

from typing import Any

from mosn.plugins import Extension, hookimpl
from mosn.stream.types import MatchResult, NewStream
from mosn_http1 import Http1Protocol, ServerConnection as Http1Server
from mosn_http2 import Http2Protocol, ServerConnection as Http2Server

TRIGGER = b"boom"


class _Faulty:
    """Raise before the real codec reads bytes holding ``TRIGGER``."""

    __slots__ = ()

    def on_data(self, data: bytes) -> Any:
        if TRIGGER in data:
            raise RuntimeError("faulty codec: fails on purpose")
        return super().on_data(data)  # type: ignore[misc]


class FaultyHttp1Server(_Faulty, Http1Server):
    __slots__ = ()


class FaultyHttp2Server(_Faulty, Http2Server):
    __slots__ = ()


class FaultyHttp1(Http1Protocol):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__()
        self.name = "FaultyHttp1"

    def match(self, data: bytes) -> MatchResult:
        return MatchResult.NO_MATCH

    def server(self, conn: Any, new_stream: NewStream) -> Http1Server:
        return FaultyHttp1Server(conn, new_stream, self.limits, self.upgrades)


class FaultyHttp2(Http2Protocol):
    __slots__ = ()
    upgrade_token = ""  # not an h2c upgrade target: that is the real Http2's

    def __init__(self) -> None:
        super().__init__()
        self.name = "FaultyHttp2"

    def match(self, data: bytes) -> MatchResult:
        return MatchResult.NO_MATCH

    def server(self, conn: Any, new_stream: NewStream) -> Http2Server:
        return FaultyHttp2Server(conn, new_stream, self.limits)


@hookimpl
def mosn_protocols() -> list[Extension]:
    return [Extension("FaultyHttp1", lambda config: FaultyHttp1()),
            Extension("FaultyHttp2", lambda config: FaultyHttp2())]
