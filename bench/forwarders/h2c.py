"""The least an h2c proxy can do with mosn's own HTTP/2 codecs (libnghttp2 through cffi)
used as a library: uvloop Protocols, mosn_http2's ServerConnection on the client side and
ClientConnection on the upstream side, each stream's events passed to a stream on the
other side, nothing else.

    python bench/forwarders/h2c.py LISTEN_PORT UPSTREAM_PORT [--engine nghttp2|python]

Each client connection gets its own upstream h2c connection to 127.0.0.1:UPSTREAM_PORT,
made when the client connects (what the client sends first waits for it); every stream
the client opens is one stream upstream, the request head and body passed as they were
decoded, the response likewise back. No routing, no pool, no stats, no filters, no
x-forwarded-* fields, no timeouts (Limits' defaults otherwise). What the codecs need of a
connection (read filters fed with each read, callbacks told of the close, write,
read_disable, close, the loop) is the Conn below over a uvloop transport: mosn's own
network layer is not used. Flow control is the codecs': a stream's watermark events
pause and resume the stream on the other side.
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from mosn.network import ConnectionEvent
from mosn_http2 import NATIVE, PYTHON, ClientConnection, Limits, ServerConnection

BACKLOG = 4096  # the peers' listen backlog in bench/peers/ (a burst of connects must not wait)


class Conn(asyncio.Protocol):
    """A connection as mosn's codecs see one, over a uvloop transport."""

    transport: asyncio.Transport
    other: Conn | None = None  # the connection at the other side of the proxy

    def __init__(self, on_made):
        self.loop = asyncio.get_running_loop()
        self.filters: list = []
        self.callbacks: list = []
        self.on_made = on_made  # called with this Conn once connected: it makes the codec

    def connection_made(self, transport):
        self.transport = transport
        self.on_made(self)

    def data_received(self, data):
        for f in self.filters:
            f.on_data(data)

    def connection_lost(self, exc):
        for callbacks in self.callbacks:
            callbacks.on_event(ConnectionEvent.REMOTE_CLOSE)
        if self.other is not None:  # either connection's close closes the other
            self.other.transport.close()

    # what the codecs call
    def add_read_filter(self, f):
        self.filters.append(f)

    def add_callbacks(self, callbacks):
        self.callbacks.append(callbacks)

    def write(self, data: bytes):
        self.transport.write(data)

    def read_disable(self, disable: bool):
        if disable:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def count_reads_as_activity(self, count: bool):
        pass  # no idle timeout here

    def close(self, how=None):
        self.transport.close()


class Relay:
    """One stream's events, passed to the stream at the other side (`to`)."""

    __slots__ = ("to",)

    def __init__(self, to):
        self.to = to

    def on_headers(self, head, end_stream: bool):
        self.to.send_headers(head, end_stream)

    def on_data(self, data: bytes, end_stream: bool):
        self.to.send_data(data, end_stream)

    def on_trailers(self, trailers):
        self.to.send_trailers(trailers)

    def on_reset(self, reason):
        self.to.reset(reason)

    def on_above_write_buffer_high_watermark(self):
        self.to.read_disable(True)

    def on_below_write_buffer_low_watermark(self):
        self.to.read_disable(False)


class Client(Conn):
    """A client connection: its ServerConnection opens a stream upstream for each of its own."""

    def __init__(self, upstream_port: int, limits: Limits):
        super().__init__(self.serve)
        self.upstream_port = upstream_port
        self.limits = limits
        self.upstream: ClientConnection | None = None
        self.early: list[bytes] = []  # what the client sent before the upstream connection was up

    def serve(self, conn):
        ServerConnection(self, self.new_stream, self.limits)
        self.loop.create_task(self.connect())

    def new_stream(self, stream):
        upstream = self.upstream.new_stream(Relay(stream))
        return Relay(upstream)

    async def connect(self):
        def made(conn):
            self.upstream = ClientConnection(conn, lambda: None, self.limits)
        try:
            _, upstream = await self.loop.create_connection(lambda: Conn(made), "127.0.0.1", self.upstream_port)
        except OSError:
            self.transport.close()
            return
        self.other, upstream.other = upstream, self
        if self.transport.is_closing():
            upstream.transport.close()
            return
        for data in self.early:
            super().data_received(data)
        self.early = []
        self.transport.resume_reading()

    def data_received(self, data):
        if self.upstream is None:
            self.early.append(data)
            self.transport.pause_reading()
            return
        super().data_received(data)


async def serve(listen: int, upstream: int, engine: str) -> None:
    limits = Limits(engine=engine)
    await asyncio.get_running_loop().create_server(lambda: Client(upstream, limits), "127.0.0.1", listen,
                                                   backlog=BACKLOG)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen", type=int)
    parser.add_argument("upstream", type=int)
    parser.add_argument("--engine", choices=(NATIVE, PYTHON), default=NATIVE)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.listen, args.upstream, args.engine))


if __name__ == "__main__":
    main()
