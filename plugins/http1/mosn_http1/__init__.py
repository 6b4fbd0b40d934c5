"""mosn's HTTP/1 protocol plugin: a sans-IO codec (readers on httptools, writers,
a state table by role) and the server and client stream connections over it."""

# First: under MOSN_NO_EXTENSIONS=1 this package's compiled modules load as .py.
import mosn.extensions  # noqa: F401, I001
from mosn_http1.codec import ClientConnection, ClientStream, ServerConnection, ServerStream
from mosn_http1.config import Http1Config, Limits
from mosn_http1.matcher import match
from mosn_http1.plugin import PROTOCOL_NAME, Http1Protocol, build
from mosn_http1.readers import RequestReader, ResponseReader
from mosn_http1.state import StateError
from mosn_http1.writers import RequestWriter, ResponseWriter

__all__ = [
    "PROTOCOL_NAME",
    "ClientConnection",
    "ClientStream",
    "Http1Config",
    "Http1Protocol",
    "Limits",
    "RequestReader",
    "RequestWriter",
    "ResponseReader",
    "ResponseWriter",
    "ServerConnection",
    "ServerStream",
    "StateError",
    "build",
    "match",
]
