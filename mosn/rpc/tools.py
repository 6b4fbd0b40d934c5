"""Tools built on any installed RPC codec: a load generator (``mosn bench``) and a
mock server (``mosn mock server``), for benchmarks and for trying a plugin without
its real peers.

Both are asyncio Protocols on uvloop when installed, like the proxy's data path:
the load generator keeps ``concurrency`` requests in flight on each of its
connections and sends the next as each response arrives.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from mosn.config.types import Address
from mosn.plugins import PluginHost
from mosn.rpc.codec import FrameCodec, FrameError, FrameKind

PERCENTILES = (50, 90, 99, 99.9)


def codec_named(name: str, plugins: PluginHost | None = None) -> FrameCodec:
    """The codec an installed plugin registers under ``name`` (``mosn_xprotocol_codecs``)."""
    host = plugins or PluginHost().load()
    ext = host.get("xprotocol_codec", name)
    if ext is None:
        known = ", ".join(host.names("xprotocol_codec")) or "none installed"
        raise LookupError(f"no RPC codec named {name!r} (known: {known})")
    config = ext.config_model() if ext.config_model is not None else None
    return ext.factory(config)


# -- load generator ----------------------------------------------------------------------


@dataclass
class BenchResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in microseconds."""
        data = sorted(self.latencies_ns)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(len(data) * p / 100))] / 1000

    def report(self) -> str:
        lines = [f"requests {self.requests} in {self.seconds:.2f}s: {self.rate:,.0f} req/s, "
                 f"errors {self.errors}"]
        lines.append("latency us: " + "  ".join(
            f"p{p:g} {self.percentile(p):,.0f}" for p in PERCENTILES))
        return "\n".join(lines)


class _BenchConnection(asyncio.Protocol):
    def __init__(self, bench: "_Bench") -> None:
        self.bench = bench
        self.codec = bench.codec
        self.buffer = bytearray()
        self.sent: dict[int, int] = {}
        self.next_id = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for _ in range(self.bench.concurrency):
            self.send()

    def send(self) -> None:
        if not self.bench.running or self.transport is None or self.transport.is_closing():
            return
        self.next_id = self.next_id + 1 if self.next_id < self.codec.max_request_id else 1
        data = bytearray(self.bench.template)
        self.codec.set_request_id(data, self.next_id)
        self.sent[self.next_id] = time.perf_counter_ns()
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        bench, codec = self.bench, self.codec
        try:
            while (frame := codec.decode(self.buffer)) is not None:
                started = self.sent.pop(frame.request_id, None)
                if frame.kind is not FrameKind.RESPONSE or started is None:
                    continue
                if bench.running:
                    bench.record(time.perf_counter_ns() - started,
                                 codec.http_status(frame.status) < 300)
                self.send()
        except FrameError:
            bench.result.errors += 1
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.bench.result.errors += len(self.sent) if self.bench.running else 0


class _Bench:
    def __init__(self, codec: FrameCodec, template: bytes, concurrency: int) -> None:
        self.codec = codec
        self.template = template
        self.concurrency = concurrency
        self.running = False
        self.result = BenchResult()

    def record(self, latency_ns: int, ok: bool) -> None:
        self.result.requests += 1
        self.result.latencies_ns.append(latency_ns)
        if not ok:
            self.result.errors += 1


async def bench(codec: FrameCodec, target: Address, *, connections: int = 50,
                concurrency: int = 1, payload: int = 1024, duration: float = 10.0,
                warmup: float = 1.0, service: str = "com.example.EchoService:1.0",
                method: str = "echo") -> BenchResult:
    """Drive ``target`` with requests of ``payload`` bytes; measure after ``warmup``."""
    loop = asyncio.get_running_loop()
    run = _Bench(codec, codec.request(service, method, b"x" * payload), concurrency)
    run.running = True
    conns = []
    for _ in range(connections):
        if target.is_unix:
            transport, _ = await loop.create_unix_connection(lambda: _BenchConnection(run),
                                                             target.path)
        else:
            transport, _ = await loop.create_connection(lambda: _BenchConnection(run),
                                                        target.host, target.port)
        conns.append(transport)
    await asyncio.sleep(warmup)
    run.result = BenchResult()
    started = time.perf_counter()
    await asyncio.sleep(duration)
    run.result.seconds = time.perf_counter() - started
    run.running = False
    for transport in conns:
        transport.close()
    return run.result


# -- mock server -------------------------------------------------------------------------


class _MockConnection(asyncio.Protocol):
    def __init__(self, codec: FrameCodec, delay: float, body: bytes) -> None:
        self.codec = codec
        self.delay = delay
        self.body = body
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        codec = self.codec
        try:
            while (frame := codec.decode(self.buffer)) is not None:
                if frame.kind is FrameKind.HEARTBEAT:
                    self._write(codec.heartbeat_reply(frame))
                elif frame.kind is FrameKind.REQUEST:
                    reply = codec.response(frame, self.body)
                    if self.delay:
                        asyncio.get_running_loop().call_later(self.delay, self._write, reply)
                    else:
                        self._write(reply)
        except FrameError as exc:
            if exc.reply:
                self._write(exc.reply)
            if self.transport is not None:
                self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve_mock(codec: FrameCodec, listen: Address, delay: float = 0.0,
                     response_bytes: int = 0, ready: Any = None) -> None:
    """Answer every request with a success response of ``response_bytes`` bytes
    (after ``delay`` seconds) and every heartbeat with its reply."""
    loop = asyncio.get_running_loop()
    body = b"y" * response_bytes
    factory = lambda: _MockConnection(codec, delay, body)  # noqa: E731
    if listen.is_unix:
        server = await loop.create_unix_server(factory, listen.path)
    else:
        server = await loop.create_server(factory, listen.host, listen.port, backlog=4096)
    if ready is not None:
        ready(server)
    async with server:
        await server.serve_forever()
