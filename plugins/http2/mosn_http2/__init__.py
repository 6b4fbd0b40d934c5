"""mosn's HTTP/2 protocol plugin: server and client stream connections on h2."""

from mosn_http2.codec import ClientConnection, ClientStream, ServerConnection, ServerStream
from mosn_http2.config import Http2Config, Limits
from mosn_http2.matcher import PREFACE, match
from mosn_http2.plugin import PROTOCOL_NAME, Http2Protocol, build

__all__ = [
    "PREFACE",
    "PROTOCOL_NAME",
    "ClientConnection",
    "ClientStream",
    "Http2Config",
    "Http2Protocol",
    "Limits",
    "ServerConnection",
    "ServerStream",
    "build",
    "match",
]
