"""A minirpc backend for the RPC engine's tests (needs mosn_minirpc importable).

    python tests/minirpc_server.py --port N [--goaway-after K]

Answers each request with body b"echo:" + body (service "slow": after body-as-seconds),
never answers service "silent", answers heartbeats, counts oneway requests (service
"count" replies with that count), and after K requests sends GOAWAY.
"""

from __future__ import annotations

import argparse
import asyncio

from mosn_minirpc.codec import MiniRpcCodec, body_of, encode
from mosn.rpc import FrameKind

oneways = 0


class Server(asyncio.Protocol):
    def __init__(self, goaway_after: int) -> None:
        self.codec = MiniRpcCodec()
        self.buffer = bytearray()
        self.served = 0
        self.goaway_after = goaway_after

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        global oneways
        self.buffer += data
        while (frame := self.codec.decode(self.buffer)) is not None:
            service = frame.headers["service"]
            body = body_of(frame)
            if frame.kind is FrameKind.HEARTBEAT:
                self.transport.write(self.codec.heartbeat_reply(frame))
            elif frame.kind is FrameKind.ONEWAY:
                oneways += 1
            elif frame.kind is FrameKind.REQUEST:
                self.served += 1
                if service == "silent":
                    continue
                if service == "count":
                    reply = encode(FrameKind.RESPONSE, frame.request_id, service, b"%d" % oneways)
                    self.transport.write(reply)
                elif service == "slow":
                    asyncio.get_running_loop().call_later(
                        float(body), self.reply, frame.request_id, service, body)
                else:
                    self.reply(frame.request_id, service, body)
                if self.served == self.goaway_after:
                    self.transport.write(encode(FrameKind.GOAWAY, 0))

    def reply(self, request_id: int, service: str, body: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(encode(FrameKind.RESPONSE, request_id, service, b"echo:" + body))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--goaway-after", type=int, default=0)
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Server(args.goaway_after), "127.0.0.1", args.port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
