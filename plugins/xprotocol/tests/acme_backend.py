"""A backend speaking the ACME protocol of xprotocol_examples.py, written by hand (no
mosn code): the kind of service a declarative codec puts behind mosn.

    python acme_backend.py --port N --name NAME

Answers each request with the body ``NAME:`` + the request's body (method ``slow``:
after two seconds), echoing the tenant, and each heartbeat with its reply.
"""

from __future__ import annotations

import argparse
import asyncio

from xprotocol_examples import (
    ACME_HEARTBEAT,
    ACME_HEARTBEAT_REPLY,
    ACME_REQUEST,
    ACME_RESPONSE,
    acme_frame,
    acme_parse,
)

SLOW_SECONDS = 2.0


class Backend(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (parsed := acme_parse(self.buffer)) is not None:
            frame, size = parsed
            del self.buffer[:size]
            if frame["kind"] == ACME_HEARTBEAT:
                self.transport.write(acme_frame(ACME_HEARTBEAT_REPLY, frame["request_id"]))
            elif frame["kind"] == ACME_REQUEST:
                reply = acme_frame(ACME_RESPONSE, frame["request_id"], frame["service"],
                                   frame["method"], self.name + b":" + frame["body"],
                                   tenant=frame["tenant"])
                if frame["method"] == "slow":
                    asyncio.get_running_loop().call_later(SLOW_SECONDS, self.write, reply)
                else:
                    self.write(reply)

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    server = await asyncio.get_running_loop().create_server(
        lambda: Backend(args.name), "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
