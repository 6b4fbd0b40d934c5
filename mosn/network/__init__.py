"""The network layer: listeners, connections, filter chains. The only layer that
touches sockets."""

from mosn.network.connection import (
    DEFAULT_BUFFER_LIMIT,
    ClientConnection,
    Connection,
)
from mosn.network.filter import (
    CloseType,
    ConnectionCallbacks,
    ConnectionEvent,
    FilterStatus,
    ListenerFilter,
    ListenerFilterError,
    ReadFilter,
    WriteFilter,
)
from mosn.network.listener import Listener, ServerConnection, bind
from mosn.network.tls import TLS_VARIABLES, TlsLayer

__all__ = [
    "DEFAULT_BUFFER_LIMIT",
    "ClientConnection",
    "CloseType",
    "Connection",
    "ConnectionCallbacks",
    "ConnectionEvent",
    "FilterStatus",
    "Listener",
    "ListenerFilter",
    "ListenerFilterError",
    "ReadFilter",
    "ServerConnection",
    "TLS_VARIABLES",
    "TlsLayer",
    "WriteFilter",
    "bind",
]
