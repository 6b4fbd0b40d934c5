"""A small, fast TCP echo server to stand behind mosn as an upstream.

    python examples/echo_upstream.py --address 127.0.0.1:20000
    python examples/echo_upstream.py --unix /tmp/echo.sock

Every byte received is written back as it arrives. When the client half-closes
(EOF), the server finishes echoing and then closes its own write side. Prints
``listening on HOST:PORT`` (or ``listening on PATH``) once ready to accept.
"""

from __future__ import annotations

import argparse
import asyncio

# Stop reading from a client that does not read its echoes once this much is queued.
HIGH_WATER = 256 * 1024


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        # Keep the transport open: the queued echo drains, then our write side closes.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            return True
        return False

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def serve(address: str | None, unix: str | None) -> None:
    loop = asyncio.get_running_loop()
    if unix:
        server = await loop.create_unix_server(Echo, unix, backlog=4096)
        where = unix
    else:
        host, _, port = address.rpartition(":")
        server = await loop.create_server(Echo, host or "127.0.0.1", int(port), backlog=4096)
        bound = server.sockets[0].getsockname()
        where = f"{bound[0]}:{bound[1]}"
    print(f"listening on {where}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:20000",
                        help="HOST:PORT to listen on (port 0: any free port)")
    parser.add_argument("--unix", help="listen on this unix socket path instead")
    parser.add_argument("--uvloop", action="store_true",
                        help="run on uvloop (default: the standard asyncio loop, which is "
                             "all an example upstream needs)")
    args = parser.parse_args()
    run = asyncio.run
    if args.uvloop:
        import uvloop

        run = uvloop.run
    try:
        run(serve(args.address, args.unix))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
