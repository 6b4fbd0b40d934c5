"""mosn's HTTP/1 protocol plugin: server and client stream connections on httptools."""

# First: under MOSN_NO_EXTENSIONS=1 this package's compiled modules load as .py.
import mosn.extensions  # noqa: F401, I001
from mosn_http1.codec import ClientConnection, ClientStream, ServerConnection, ServerStream
from mosn_http1.config import Http1Config, Limits
from mosn_http1.matcher import match
from mosn_http1.plugin import PROTOCOL_NAME, Http1Protocol, build

__all__ = [
    "PROTOCOL_NAME",
    "ClientConnection",
    "ClientStream",
    "Http1Config",
    "Http1Protocol",
    "Limits",
    "ServerConnection",
    "ServerStream",
    "build",
    "match",
]
