"""HTTP/1 stream connections: the codec as a sans-IO core and two thin adapters.

The core takes bytes and calls a handler, takes messages and gives bytes, and has no
socket, transport, connection or loop in it:

- :mod:`mosn_http1.state`: the state table of each half of an exchange, by role
  (client: the request; server: the response); every transition goes through it.
- :mod:`mosn_http1.readers`: ``RequestReader`` and ``ResponseReader`` on httptools
  (llhttp): bytes in, calls of a :mod:`mosn_http1.handlers` handler out (the
  adapters are the handlers), with the size limits and the framing checks (RFC 9112)
  and the status each error is answered with.
- :mod:`mosn_http1.writers`: ``ResponseWriter`` and ``RequestWriter``: the framing
  decisions (length, chunked, until close, none), keep-alive, ``connection`` fields.
- :mod:`mosn_http1.frames`: the bytes of heads, chunks, trailers, error replies.

The adapters bind the core to a ``mosn.network`` connection and to the proxy's and
the pool's streams (``mosn.stream``): :mod:`mosn_http1.server` (pipelining in order,
``Expect: 100-continue``, the upgrade tunnel and the hand-over to another protocol)
and :mod:`mosn_http1.client` (one request at a time); :mod:`mosn_http1.adapter` is
what both share.

Header names are lower-cased once, by the readers; values are the wire's bytes as
Latin-1 text.
"""

from mosn_http1.client import ClientConnection, ClientStream
from mosn_http1.server import (
    UPGRADE_OFFER_FIELDS,
    ServerConnection,
    ServerStream,
    TakeOver,
)

__all__ = [
    "UPGRADE_OFFER_FIELDS",
    "ClientConnection",
    "ClientStream",
    "ServerConnection",
    "ServerStream",
    "TakeOver",
]
