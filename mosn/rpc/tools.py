"""Tools built on any installed RPC codec: a load generator (``mosn bench``), a
mock server (``mosn mock server``) and a mock client (``mosn mock client``), for
benchmarks and for trying a plugin without its real peers.

All are asyncio Protocols on uvloop when installed, like the proxy's data path:
the load generator keeps ``concurrency`` requests in flight on each of its
connections and sends the next as each response arrives; the mock client is the
same connection sending a counted number of requests and keeping every answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from mosn.config.types import Address
from mosn.plugins import PluginHost
from mosn.rpc.codec import Frame, FrameCodec, FrameError, FrameKind

PERCENTILES = (50, 90, 99, 99.9)


def codec_named(name: str, plugins: PluginHost | None = None,
                config: Mapping[str, Any] | None = None) -> FrameCodec:
    """The codec an installed plugin registers under ``name`` (``mosn_xprotocol_codecs``),
    built from ``config`` (what the proxy's ``extend_config.<name>`` would hold;
    validated by the extension's model, so it may raise ``pydantic.ValidationError``)."""
    host = plugins or PluginHost().load()
    ext = host.get("xprotocol_codec", name)
    if ext is None:
        known = ", ".join(host.names("xprotocol_codec")) or "none installed"
        raise LookupError(f"no RPC codec named {name!r} (known: {known})")
    parsed = ext.config_model.model_validate(config or {}) if ext.config_model is not None else None
    return ext.factory(parsed)


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


class _RequestConnection(asyncio.Protocol):
    """One client connection of the tools: sends copies of a request template, each
    with the next id (wrapping at the protocol's maximum), and matches responses to
    them by id. Subclasses say what to send when, and what a response means."""

    def __init__(self, codec: FrameCodec, template: bytes) -> None:
        self.codec = codec
        self.template = template
        self.buffer = bytearray()
        self.sent: dict[int, int] = {}
        """Request id -> ``perf_counter_ns`` when it was sent."""
        self.next_id = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send_request(self) -> int:
        self.next_id = self.next_id + 1 if self.next_id < self.codec.max_request_id else 1
        data = bytearray(self.template)
        self.codec.set_request_id(data, self.next_id)
        self.sent[self.next_id] = time.perf_counter_ns()
        self.transport.write(data)  # type: ignore[union-attr]
        return self.next_id

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        codec = self.codec
        try:
            while (frame := codec.decode(self.buffer)) is not None:
                started = self.sent.pop(frame.request_id, None)
                if frame.kind is not FrameKind.RESPONSE or started is None:
                    continue
                self.on_response(frame, time.perf_counter_ns() - started)
        except FrameError as exc:
            self.on_frame_error(exc)
            if self.transport is not None:
                self.transport.close()

    def on_response(self, frame: Frame, latency_ns: int) -> None:
        raise NotImplementedError

    def on_frame_error(self, exc: FrameError) -> None:
        pass


class _BenchConnection(_RequestConnection):
    def __init__(self, bench: "_Bench") -> None:
        super().__init__(bench.codec, bench.template)
        self.bench = bench

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        for _ in range(self.bench.concurrency):
            self.send()

    def send(self) -> None:
        if not self.bench.running or self.transport is None or self.transport.is_closing():
            return
        self.send_request()

    def on_response(self, frame: Frame, latency_ns: int) -> None:
        bench = self.bench
        if bench.running:
            bench.record(latency_ns, self.codec.http_status(frame.status) < 300)
        self.send()

    def on_frame_error(self, exc: FrameError) -> None:
        self.bench.result.errors += 1

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


# -- mock client ------------------------------------------------------------------------

CONNECT_RETRY_INTERVAL = 0.1
"""Seconds between connection attempts while the mock client waits for its target."""


@dataclass
class CallResult:
    """One request of the mock client and what came back."""

    request_id: int
    frame: Frame | None = None
    """The response; None when none came (``error`` says why)."""
    http_status: int = 0
    """The response status as the proxy reads it (200 for success); 0 without one."""
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.frame is not None and self.http_status == 200


class _ClientConnection(_RequestConnection):
    """Sends ``count`` requests, ``concurrency`` at a time, and keeps every answer."""

    def __init__(self, codec: FrameCodec, template: bytes, count: int, concurrency: int,
                 done: asyncio.Future[None]) -> None:
        super().__init__(codec, template)
        self.remaining = count
        self.concurrency = concurrency
        self.done = done
        self.results: dict[int, CallResult] = {}
        """By request id, in the order the requests were sent."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        for _ in range(min(self.concurrency, self.remaining)):
            self.send()

    def send(self) -> None:
        self.remaining -= 1
        request_id = self.send_request()
        self.results[request_id] = CallResult(request_id, error="no response")

    def on_response(self, frame: Frame, latency_ns: int) -> None:
        self.results[frame.request_id] = CallResult(
            frame.request_id, frame, self.codec.http_status(frame.status), latency_ns / 1e9)
        if self.remaining > 0:
            self.send()
        elif not self.sent and not self.done.done():
            self.done.set_result(None)

    def on_frame_error(self, exc: FrameError) -> None:
        for request_id in self.sent:
            self.results[request_id].error = f"undecodable reply: {exc}"
        self.sent.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        for request_id in self.sent:
            self.results[request_id].error = "connection closed"
        if not self.done.done():
            self.done.set_result(None)


async def call(codec: FrameCodec, target: Address, *, service: str, method: str = "echo",
               body: bytes = b"", count: int = 1, concurrency: int = 1, timeout: float = 5.0,
               wait: float = 0.0) -> list[CallResult]:
    """Send ``count`` requests (``concurrency`` in flight) on one connection to ``target``
    and return one result per request, in the order sent. ``timeout`` bounds the whole
    exchange; ``wait`` is how long to keep trying to connect (for a target that is
    still starting)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    template = codec.request(service, method, body)

    def factory() -> _ClientConnection:
        return _ClientConnection(codec, template, count, max(1, concurrency), done)

    deadline = loop.time() + wait
    while True:
        try:
            if target.is_unix:
                transport, conn = await loop.create_unix_connection(factory, target.path)
            else:
                transport, conn = await loop.create_connection(factory, target.host, target.port)
            break
        except OSError:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(CONNECT_RETRY_INTERVAL)
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    except asyncio.TimeoutError:
        for request_id in conn.sent:
            conn.results[request_id].error = f"no response in {timeout:g}s"
    finally:
        transport.close()
    return list(conn.results.values())


# -- mock server -------------------------------------------------------------------------


class _MockConnection(asyncio.Protocol):
    def __init__(self, codec: FrameCodec, delay: float, body: bytes,
                 received: list[Frame] | None = None) -> None:
        self.codec = codec
        self.delay = delay
        self.body = body
        self.received = received
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
                    if self.received is not None:
                        self.received.append(frame)
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
                     response_bytes: int = 0, ready: Any = None,
                     received: list[Frame] | None = None) -> None:
    """Answer every request with a success response of ``response_bytes`` bytes
    (after ``delay`` seconds) and every heartbeat with its reply; each request frame
    is also appended to ``received`` when given (a test reads what it was sent)."""
    loop = asyncio.get_running_loop()
    body = b"y" * response_bytes
    factory = lambda: _MockConnection(codec, delay, body, received)  # noqa: E731
    if listen.is_unix:
        server = await loop.create_unix_server(factory, listen.path)
    else:
        server = await loop.create_server(factory, listen.host, listen.port, backlog=4096)
    if ready is not None:
        ready(server)
    async with server:
        await server.serve_forever()
