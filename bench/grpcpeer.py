"""The gRPC server and load generator of bench/h2.py --mode grpc, on grpcio.

    python bench/grpcpeer.py server PORT
    python bench/grpcpeer.py client PORT SECONDS [--channels N] [--calls N]
    python bench/grpcpeer.py check PORT

The server answers the unary method /bench.Echo/Call with the request's bytes (no
protobuf: grpcio's generic handlers pass bytes through when given no serializers) and
prints "listening PORT" once it accepts connections. It is grpcio's thread-pool server,
which ran twice the rate of its asyncio server here. The client (grpcio's asyncio
API, a little faster here than futures on its blocking API) opens --channels
channels, each its own HTTP/2 connection (a local subchannel pool, so channels to one
target do not share one), keeps --calls unary calls in flight on each (a new call as
soon as one ends: closed loop, like h2load -c -m), for SECONDS, and prints one JSON
object: calls completed and their rate, p50/p99 latency in microseconds, and calls
that ended with a status other than OK. check makes one call and prints its status
and reply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from concurrent import futures

import grpc

SERVICE, METHOD = "bench.Echo", "Call"
PATH = f"/{SERVICE}/{METHOD}"
REQUEST = b"\x0a\x05hello"  # a protobuf message with one string field: "hello"
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
SERVER_THREADS = 8  # the server's handler threads (more than the CPU it is pinned to)


def echo(request: bytes, context) -> bytes:
    return request


def serve(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SERVER_THREADS))
    handler = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"listening {port}", flush=True)
    server.wait_for_termination()


async def load(port: int, seconds: float, channels: int, calls: int) -> dict:
    opened = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) for _ in range(channels)]
    latencies: list[float] = []
    failed = 0

    async def caller(call, deadline: float) -> None:
        nonlocal failed
        while (start := time.perf_counter()) < deadline:
            try:
                await call(REQUEST)
            except grpc.aio.AioRpcError:
                failed += 1
                continue
            latencies.append(time.perf_counter() - start)

    try:
        for channel in opened:
            await channel.channel_ready()
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(caller(channel.unary_unary(PATH), deadline)
                               for channel in opened for _ in range(calls)))
        elapsed = time.perf_counter() - began
    finally:
        for channel in opened:
            await channel.close()
    latencies.sort()

    def percentile(pct: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * pct / 100))] * 1e6, 1)

    return {"requests": len(latencies), "req_per_s": round(len(latencies) / elapsed), "failed": failed,
            "p50_us": percentile(50) if latencies else 0, "p99_us": percentile(99) if latencies else 0}


async def check(port: int) -> dict:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await channel.unary_unary(PATH)(REQUEST, timeout=5)
            return {"status": "OK", "reply": reply.hex()}
        except grpc.aio.AioRpcError as exc:
            return {"status": exc.code().name, "details": exc.details()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("server", "client", "check"))
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float, nargs="?", default=5.0)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    if args.role == "server":
        serve(args.port)
    elif args.role == "client":
        print(json.dumps(asyncio.run(load(args.port, args.seconds, args.channels, args.calls))))
    else:
        print(json.dumps(asyncio.run(check(args.port))))


if __name__ == "__main__":
    main()
