"""mosn's HTTP/2 protocol plugin: server and client stream connections on an HTTP/2
engine (libnghttp2, or h2 in pure Python)."""

from mosn_http2.codec import (
    GOAWAY_NOTICE_WAIT,
    GOAWAY_QUIESCE_WAIT,
    ClientConnection,
    ClientStream,
    ServerConnection,
    ServerStream,
)
from mosn_http2.config import Http2Config, Limits
from mosn_http2.engine import AUTO, ENGINES, NATIVE, PYTHON, chosen_engine, native_error
from mosn_http2.matcher import PREFACE, match
from mosn_http2.plugin import PROTOCOL_NAME, Http2Protocol, build

__all__ = [
    "AUTO",
    "ENGINES",
    "GOAWAY_NOTICE_WAIT",
    "GOAWAY_QUIESCE_WAIT",
    "NATIVE",
    "PREFACE",
    "PROTOCOL_NAME",
    "PYTHON",
    "ClientConnection",
    "ClientStream",
    "Http2Config",
    "Http2Protocol",
    "Limits",
    "ServerConnection",
    "ServerStream",
    "build",
    "chosen_engine",
    "match",
    "native_error",
]
