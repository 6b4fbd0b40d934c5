"""The Http2 codecs' own CPU per request, without the proxy, the network or the event loop.

    python bench/h2engine.py [--requests N] [--rounds R] [--engine nghttp2|python|both]
                             [--shape get|grpc]

What a proxied HTTP/2 request costs mosn in its Http2 codecs and engine is one request
through a client codec (the upstream side: the request sent, the response read) and
one through a server codec (the downstream side: the request read, the response
sent). Here a ClientConnection and a ServerConnection talk to each other through
in-memory connections in this process: the client codec sends requests shaped like
h2load's through the proxy (10 in flight, as bench/h2.py's -m 10), the server codec's
handler answers each with bench/h2.py's 6-byte body and the response fields nghttpd
sends (``--shape grpc``: unary calls shaped like bench/grpcpeer.py's through the proxy,
the request's 7-byte message in a DATA frame, the answer headers, the message echoed
and trailers with grpc-status, as grpcio's server sends them), and the bytes each side writes are handed to the other once per turn of a
stand-in loop, as a real loop batches them. CPU time (time.process_time) over N
requests, per request, for each engine, over R rounds (the minimum is the figure least
touched by other work on the machine; the median is printed too): the share of
bench/h2.py's "CPU us/req" that is the codecs' and the engine's (the rest is the proxy
core, the network layer and the event loop). Everything runs on the CPU this process
is given (pin it with taskset for a steadier figure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

# This directory's h2.py (bench/h2.py) would be imported as the h2 library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from mosn.stream.types import Headers, RequestHead, ResponseHead  # noqa: E402
from mosn_http2 import NATIVE, PYTHON, ClientConnection, Limits, ServerConnection, native_error  # noqa: E402

IN_FLIGHT = 10  # requests in flight on the connection (h2load -m 10 in bench/h2.py)
BODY = b"hello\n"  # bench/h2.py's body
REQUEST_FIELDS = [("user-agent", "h2load nghttp2/1.52.0"),
                  ("x-forwarded-for", "127.0.0.1"), ("x-forwarded-proto", "http")]
"""What mosn forwards of an h2load request (x-request-id is added per request)."""
RESPONSE_FIELDS = [("server", "nghttpd nghttp2/1.52.0"), ("content-length", "6"),
                   ("cache-control", "max-age=3600"),
                   ("date", "Sun, 06 Dec 2026 23:00:00 GMT"),
                   ("last-modified", "Sun, 06 Dec 2026 22:00:00 GMT")]
"""What nghttpd answers with bench/h2.py's file."""
GRPC_PATH = "/bench.Echo/Call"  # bench/grpcpeer.py's method
GRPC_MESSAGE = b"\x00\x00\x00\x00\x07\x0a\x05hello"  # its 7-byte message, length-prefixed
GRPC_REQUEST_FIELDS = [("content-type", "application/grpc"), ("te", "trailers"),
                       ("grpc-accept-encoding", "identity,deflate,gzip"),
                       ("user-agent", "grpc-python-asyncio/1.85.3 grpc-c/52.0.0 (linux; chttp2)"),
                       ("x-forwarded-for", "127.0.0.1"), ("x-forwarded-proto", "http")]
"""What mosn forwards of a grpcio call (x-request-id is added per call)."""
GRPC_RESPONSE_FIELDS = [("content-type", "application/grpc"),
                        ("grpc-accept-encoding", "identity,deflate,gzip")]
GRPC_TRAILERS = [("grpc-status", "0")]
"""What grpcio's server answers a unary call with."""


class Loop:
    """call_soon callbacks run at the next turn; time stands still (no timer fires)."""

    def __init__(self) -> None:
        self.soon: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self.soon.append((callback, args))

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any:
        return None

    def time(self) -> float:
        return 0.0

    def turn(self) -> None:
        for _ in range(len(self.soon)):
            callback, args = self.soon.popleft()
            callback(*args)


class Pipe:
    """One side of an in-memory connection: what it writes is read by ``peer`` when
    the loop delivers it."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.peer: Pipe | None = None
        self.out: list[bytes] = []
        self.filters: list[Any] = []
        self.callbacks: list[Any] = []
        self.transport = None
        self.closed = False

    def add_read_filter(self, f: Any) -> None:
        self.filters.append(f)

    def add_callbacks(self, cb: Any) -> None:
        self.callbacks.append(cb)

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def deliver(self) -> bool:
        if not self.out:
            return False
        data = b"".join(self.out)
        self.out.clear()
        for f in self.peer.filters:  # type: ignore[union-attr]
            f.on_data(data)
        return True

    def read_disable(self, disable: bool) -> None:
        pass

    def close(self, how: Any = None) -> None:
        self.closed = True


class Handler:
    """A stream handler that takes what comes and fails on a reset."""

    __slots__ = ()

    def on_headers(self, head: Any, end_stream: bool) -> None:
        pass

    def on_data(self, data: bytes, end_stream: bool) -> None:
        pass

    def on_trailers(self, trailers: Any) -> None:
        pass

    def on_reset(self, reason: Any) -> None:
        raise AssertionError(f"reset: {reason}")

    def on_above_write_buffer_high_watermark(self) -> None:
        pass

    def on_below_write_buffer_low_watermark(self) -> None:
        pass


class Upstream(Handler):
    """The server codec's handler: answers each request as nghttpd does."""

    __slots__ = ("stream",)

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def on_headers(self, head: RequestHead, end_stream: bool) -> None:
        self.stream.send_headers(ResponseHead(200, Headers(list(RESPONSE_FIELDS))), False)
        self.stream.send_data(BODY, True)


class GrpcUpstream(Upstream):
    """The server codec's handler for --shape grpc: once the call's message is in,
    answers it as grpcio's server does."""

    __slots__ = ()

    def on_headers(self, head: RequestHead, end_stream: bool) -> None:
        pass

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            stream = self.stream
            stream.send_headers(ResponseHead(200, Headers(list(GRPC_RESPONSE_FIELDS))), False)
            stream.send_data(GRPC_MESSAGE, False)
            stream.send_trailers(Headers(list(GRPC_TRAILERS)))


class Client:
    """The client codec's side: keeps IN_FLIGHT requests going, counts responses."""

    def __init__(self, codec: ClientConnection, grpc: bool = False) -> None:
        self.codec = codec
        self.grpc = grpc
        self.done = 0
        self.sent = 0
        self.total = 0

    def start(self) -> None:
        if self.grpc:
            stream = self.codec.new_stream(GrpcResponse(self))
            headers = Headers([*GRPC_REQUEST_FIELDS, ("x-request-id", f"{self.sent:036d}")])
            stream.send_headers(RequestHead("POST", GRPC_PATH, "127.0.0.1:3000", "http", headers, "2"), False)
            stream.send_data(GRPC_MESSAGE, True)
        else:
            stream = self.codec.new_stream(Response(self))
            headers = Headers([*REQUEST_FIELDS, ("x-request-id", f"{self.sent:036d}")])
            stream.send_headers(RequestHead("GET", "/index.html", "127.0.0.1:3000", "http", headers, "2"), True)
        self.sent += 1


class Response(Handler):
    __slots__ = ("client",)

    def __init__(self, client: Client) -> None:
        self.client = client

    def on_headers(self, head: ResponseHead, end_stream: bool) -> None:
        assert head.status == 200

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if end_stream:
            client = self.client
            client.done += 1
            if client.sent < client.total:
                client.start()


class GrpcResponse(Response):
    """A call's answer: it ends with its trailers."""

    __slots__ = ()

    def on_data(self, data: bytes, end_stream: bool) -> None:
        pass

    def on_trailers(self, trailers: Any) -> None:
        assert trailers.get("grpc-status") == "0"
        client = self.client
        client.done += 1
        if client.sent < client.total:
            client.start()


def run(engine: str, requests: int, grpc: bool = False) -> float:
    """CPU us per request (``grpc``: per unary call) through both codecs on ``engine``."""
    loop = Loop()
    a, b = Pipe(loop), Pipe(loop)
    a.peer, b.peer = b, a
    limits = Limits(engine=engine)
    ServerConnection(b, GrpcUpstream if grpc else Upstream, limits)
    client = Client(ClientConnection(a, lambda: None, limits), grpc)
    client.total = requests
    started = time.process_time()
    for _ in range(min(IN_FLIGHT, requests)):
        client.start()
    while client.done < requests:
        loop.turn()
        moved = a.deliver() | b.deliver()
        if not moved and not loop.soon:
            raise AssertionError(f"stuck after {client.done} responses")
    return (time.process_time() - started) * 1e6 / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engine", choices=(NATIVE, PYTHON, "both"), default="both")
    parser.add_argument("--shape", choices=("get", "grpc"), default="get",
                        help="h2load's GETs (bench/h2.py) or unary gRPC calls (its --mode grpc)")
    args = parser.parse_args()
    grpc = args.shape == "grpc"
    engines = [NATIVE, PYTHON] if args.engine == "both" else [args.engine]
    if NATIVE in engines and (reason := native_error()) is not None:
        print(f"nghttp2 engine skipped: {reason}")
        engines.remove(NATIVE)
    for engine in engines:
        run(engine, 1000, grpc)  # warm up
        figures = [run(engine, args.requests, grpc) for _ in range(args.rounds)]
        print(f"{engine:8} CPU us per {'call' if grpc else 'request'} (client + server codec): min {min(figures):.1f}, "
              f"median {statistics.median(figures):.1f}  (rounds: {' '.join(f'{f:.1f}' for f in figures)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
