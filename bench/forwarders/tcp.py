"""The least a TCP proxy on mosn's stack can do: uvloop, one asyncio Protocol per side,
every chunk read on one side written to the other, nothing else.

    python bench/forwarders/tcp.py LISTEN_PORT:UPSTREAM_PORT [LISTEN_PORT:UPSTREAM_PORT ...]

Each accepted connection gets its own upstream connection to 127.0.0.1:UPSTREAM_PORT;
what the client sends before that connection is up waits for it. Flow control both ways (a
side whose peer's write buffer is over the high-water mark stops reading) and
half-closes are passed on, so it is a correct proxy, not only a fast one; there is no
routing, no stats, no timeout and no limit. bench/floor.py measures it beside mosn's
tcp_proxy, haproxy and Envoy.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

BACKLOG = 4096  # the peers' listen backlog in bench/peers/ (a burst of 50 connects must not wait)


class Side(asyncio.Protocol):
    """One end of a forwarded pair; `other` is the Side at the other end."""

    transport: asyncio.Transport
    other: Side | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.other.transport.write(data)

    def eof_received(self):
        if self.other is not None and self.other.transport.can_write_eof():
            self.other.transport.write_eof()
            return True  # keep our write side open for the other's last bytes
        return False

    def connection_lost(self, exc):
        if self.other is not None:
            self.other.transport.close()

    def pause_writing(self):
        self.other.transport.pause_reading()

    def resume_writing(self):
        self.other.transport.resume_reading()


class Downstream(Side):
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.early: list[bytes] = []  # what the client sent before the upstream connection was up

    def connection_made(self, transport):
        self.transport = transport
        asyncio.get_running_loop().create_task(self.connect())

    def data_received(self, data):
        if self.other is None:
            self.early.append(data)
            self.transport.pause_reading()
            return
        self.other.transport.write(data)

    async def connect(self):
        upstream = Side()
        upstream.other = self
        try:
            await asyncio.get_running_loop().create_connection(lambda: upstream, "127.0.0.1", self.upstream_port)
        except OSError:
            self.transport.close()
            return
        self.other = upstream
        if self.transport.is_closing():
            upstream.transport.close()
            return
        upstream.transport.writelines(self.early)
        self.early = []
        self.transport.resume_reading()


async def serve(pairs: list[tuple[int, int]]) -> None:
    loop = asyncio.get_running_loop()
    for listen, upstream in pairs:
        await loop.create_server(lambda port=upstream: Downstream(port), "127.0.0.1", listen, backlog=BACKLOG)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    pairs = [tuple(int(port) for port in arg.split(":")) for arg in argv]
    uvloop.run(serve(pairs))


if __name__ == "__main__":
    main(sys.argv[1:])
