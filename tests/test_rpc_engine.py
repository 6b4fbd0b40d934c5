"""The multiplexed RPC engine, end to end, with a minimal codec plugin (minirpc)
installed as a real distribution, a minirpc backend, and mosn in between."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT, Mosn, free_port, stop, wait_for_port
from mosn.testing import pip_install_target

SITE: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site-minirpc")
    pip_install_target(ROOT / "tests" / "plugins" / "minirpc", target)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))


@pytest.fixture(scope="module")
def codec_module(site):
    import mosn_minirpc.codec as codec

    return codec


def env_for(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.fixture
def backend(site) -> Iterator[Any]:
    procs = []

    def start(*args: str) -> tuple[int, subprocess.Popen]:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "minirpc_server.py"),
                                 "--port", str(port), *args], env=env_for(site),
                                stdout=subprocess.DEVNULL)
        procs.append(proc)
        wait_for_port(port)
        return port, proc

    yield start
    for proc in procs:
        stop(proc)


@pytest.fixture
def rpc_mosn(site, tmp_path) -> Iterator[Any]:
    started = []

    def start(backend_port: int, *, protocol: str = "minirpc", timeout: str = "1s",
              services: str = "echo|slow|silent|count", overload: dict[str, Any] | None = None,
              **cluster: Any) -> tuple[int, Mosn]:
        port = free_port()
        config = {
            "servers": [{
                "routers": [{"router_config_name": "rpc", "virtual_hosts": [{
                    "name": "rpc", "domains": ["*"], "routers": [
                        {"match": {"headers": [{"name": "service", "value": f"^({services})$",
                                                "regex": True}]},
                         "route": {"cluster_name": "backend", "timeout": timeout}}]}]}],
                "listeners": [{
                    "name": "rpc", "address": f"127.0.0.1:{port}",
                    "filter_chains": [{"filters": [{"type": "proxy", "config": {
                        "downstream_protocol": protocol, "upstream_protocol": "minirpc",
                        "router_config_name": "rpc"}}]}],
                }],
            }],
            "cluster_manager": {"clusters": [{
                "name": "backend", "hosts": [{"address": f"127.0.0.1:{backend_port}"}],
                **cluster}]},
        }
        if overload is not None:
            config["overload_manager"] = overload
        mosn = Mosn(config, tmp_path, env=env_for(site))
        started.append(mosn)
        return port, mosn

    yield start
    for m in started:
        m.stop()


class Client:
    """A minirpc client: many requests in flight on one connection."""

    def __init__(self, codec: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.codec, self.reader, self.writer = codec, reader, writer
        self.waiting: dict[int, asyncio.Future] = {}
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, codec: Any, port: int) -> "Client":
        return cls(codec, *await asyncio.open_connection("127.0.0.1", port))

    async def _read(self) -> None:
        decoder, buffer = self.codec.MiniRpcCodec(), bytearray()
        while data := await self.reader.read(65536):
            buffer += data
            while (frame := decoder.decode(buffer)) is not None:
                future = self.waiting.pop(frame.request_id, None)
                if future is not None and not future.done():
                    future.set_result(frame)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    def send(self, kind: Any, request_id: int, service: str, body: bytes = b"") -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        self.writer.write(self.codec.encode(kind, request_id, service, body))
        return future

    async def call(self, request_id: int, service: str, body: bytes = b"") -> Any:
        from mosn.rpc import FrameKind

        return await asyncio.wait_for(self.send(FrameKind.REQUEST, request_id, service, body), 10)

    def close(self) -> None:
        self.writer.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_10000_in_flight_requests_over_few_connections(codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    # A timeout far above what 10,000 requests take through a Python backend on a
    # loaded 2-core machine: this test is about ids, not about time.
    port, _ = rpc_mosn(backend()[0], timeout="20s")
    n, conns = 10_000, 4

    async def main() -> int:
        clients = [await Client.connect(codec_module, port) for _ in range(conns)]
        futures = []
        for i in range(n):
            # The same ids on every connection: mosn must remap them upstream.
            c = clients[i % conns]
            futures.append((i, c.send(FrameKind.REQUEST, i // conns + 1, "echo", b"req-%d" % i)))
        good = 0
        for i, fut in futures:
            frame = await asyncio.wait_for(fut, 30)
            good += codec_module.body_of(frame) == b"echo:req-%d" % i and frame.status == 0
        for c in clients:
            c.close()
        return good

    assert run(main()) == n


def test_no_route_gets_the_protocols_error_reply(codec_module, backend, rpc_mosn):
    port, _ = rpc_mosn(backend()[0])

    async def main() -> Any:
        c = await Client.connect(codec_module, port)
        frame = await c.call(7, "unknown.Service")
        c.close()
        return frame

    frame = run(main())
    assert (frame.request_id, frame.status) == (7, codec_module.NO_ROUTE)


def test_heartbeat_is_answered_by_mosn(codec_module, rpc_mosn):
    from mosn.rpc import FrameKind

    port, _ = rpc_mosn(free_port())  # no backend at all

    async def main() -> Any:
        c = await Client.connect(codec_module, port)
        frame = await asyncio.wait_for(c.send(FrameKind.HEARTBEAT, 9, ""), 5)
        c.close()
        return frame

    frame = run(main())
    assert (frame.kind, frame.request_id) == (FrameKind.HEARTBEAT_REPLY, 9)


def test_timeout_gets_the_timeout_status_and_a_late_reply_is_dropped(codec_module, backend,
                                                                     rpc_mosn):
    port, _ = rpc_mosn(backend()[0])

    async def main() -> tuple[Any, Any]:
        c = await Client.connect(codec_module, port)
        late = await c.call(1, "slow", b"1.5")  # the route's timeout is 1s
        await asyncio.sleep(0.8)  # the late response arrives at mosn and is dropped
        after = await c.call(2, "echo", b"x")
        c.close()
        return late, after

    late, after = run(main())
    assert late.status == codec_module.TIMEOUT
    assert (after.request_id, codec_module.body_of(after)) == (2, b"echo:x")


def test_no_backend_is_unavailable(codec_module, rpc_mosn):
    port, _ = rpc_mosn(free_port())

    async def main() -> Any:
        c = await Client.connect(codec_module, port)
        frame = await c.call(3, "echo")
        c.close()
        return frame

    assert run(main()).status == codec_module.UNAVAILABLE


def test_backend_killed_mid_flight_answers_every_caller(codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    backend_port, proc = backend()
    port, _ = rpc_mosn(backend_port)

    async def main() -> list[Any]:
        c = await Client.connect(codec_module, port)
        assert (await c.call(1, "echo")).status == 0
        futures = [c.send(FrameKind.REQUEST, 100 + i, "silent") for i in range(50)]
        await asyncio.sleep(0.3)
        proc.kill()
        frames = [await asyncio.wait_for(f, 5) for f in futures]
        c.close()
        return frames

    frames = run(main())
    assert sorted(f.request_id for f in frames) == list(range(100, 150))
    assert {f.status for f in frames} == {codec_module.UPSTREAM_LOST}


def test_oneway_requests_are_forwarded_without_a_reply(codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    port, _ = rpc_mosn(backend()[0])

    async def main() -> bytes:
        c = await Client.connect(codec_module, port)
        for i in range(5):
            c.writer.write(codec_module.encode(FrameKind.ONEWAY, i + 1, "echo", b"o"))
        await asyncio.sleep(0.3)
        frame = await c.call(99, "count")
        c.close()
        return codec_module.body_of(frame)

    assert run(main()) == b"5"


def test_goaway_moves_new_requests_to_a_new_connection(codec_module, backend, rpc_mosn):
    port, mosn = rpc_mosn(backend("--goaway-after", "3")[0])

    async def main() -> list[int]:
        c = await Client.connect(codec_module, port)
        statuses = [(await c.call(i + 1, "echo", b"%d" % i)).status for i in range(8)]
        c.close()
        return statuses

    assert run(main()) == [0] * 8
    # Each backend connection says GOAWAY after its third request: 3 + 3 + 2.
    assert mosn.stats()["cluster.backend.upstream_cx_total"] == 3


def test_connections_per_host_spreads_requests(codec_module, backend, rpc_mosn):
    port, mosn = rpc_mosn(backend()[0], connections_per_host=3)

    async def main() -> None:
        c = await Client.connect(codec_module, port)
        await asyncio.gather(*(c.call(i + 1, "echo") for i in range(30)))
        c.close()

    run(main())
    assert mosn.stats()["cluster.backend.upstream_cx_total"] == 3


def test_malformed_frame_closes_only_that_connection(codec_module, backend, rpc_mosn):
    port, _ = rpc_mosn(backend()[0])

    async def main() -> tuple[bytes, Any]:
        good = await Client.connect(codec_module, port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"MR\xff" + b"\x00" * 20)
        closed = await asyncio.wait_for(reader.read(), 5)
        frame = await good.call(5, "echo", b"fine")
        good.close()
        return closed, frame

    closed, frame = run(main())
    assert closed == b""
    assert codec_module.body_of(frame) == b"echo:fine"


def test_mosn_bench_and_mock_through_the_proxy(site, rpc_mosn):
    env = env_for(site)
    mock_port = free_port()
    mock = subprocess.Popen([sys.executable, "-m", "mosn", "mock", "server", "--protocol",
                             "minirpc", "--listen", f"127.0.0.1:{mock_port}",
                             "--response-bytes", "16"], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(mock_port)
        port, mosn = rpc_mosn(mock_port)
        out = subprocess.run(
            [sys.executable, "-m", "mosn", "bench", "--protocol", "minirpc", "--target",
             f"127.0.0.1:{port}", "--connections", "4", "--concurrency", "8", "--duration", "1",
             "--warmup", "0.2", "--service", "echo", "--json"],
            env=env, capture_output=True, text=True, timeout=30)
    finally:
        stop(mock)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["requests"] > 100
    assert result["errors"] == 0
    assert 0 < result["p50_us"] <= result["p99_us"]
    assert mosn.stats()["cluster.backend.upstream_cx_total"] == 1  # multiplexed


def test_mosn_bench_names_the_codecs_it_knows(site):
    out = subprocess.run([sys.executable, "-m", "mosn", "bench", "--protocol", "nope",
                          "--target", "127.0.0.1:1"], env=env_for(site), capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "no RPC codec named 'nope' (known: " in out.stderr and "minirpc" in out.stderr


# -- robustness: bad bytes, broken codecs, clients and hosts that do not read ---------


READ_TIMEOUT = 10.0
"""Seconds a test waits for mosn's answer before failing."""
STALL = 2.0
"""Seconds without progress after which a writing client counts as blocked (mosn no
longer reads it): far above a loop turn, far below the time to send what it has."""


def call(codec_module: Any, sock: socket.socket, request_id: int, service: str,
         body: bytes = b"") -> Any:
    """One request on a blocking socket; the frame answered, or None if mosn closed."""
    from mosn.rpc import FrameKind

    sock.sendall(codec_module.encode(FrameKind.REQUEST, request_id, service, body))
    frames = read_frames(codec_module, sock, 1)
    return frames[0] if frames else None


def read_frames(codec_module: Any, sock: socket.socket, count: int | None = None) -> list[Any]:
    """Frames read until ``count`` of them came, or (``count`` None) until mosn closes."""
    decoder, buffer, frames = codec_module.MiniRpcCodec(), bytearray(), []
    sock.settimeout(READ_TIMEOUT)
    while count is None or len(frames) < count:
        data = sock.recv(65536)
        if not data:
            break
        buffer += data
        while (frame := decoder.decode(buffer)) is not None:
            frames.append(frame)
    return frames


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)


def test_requests_before_a_malformed_frame_are_answered_before_the_close(
        codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    port, mosn = rpc_mosn(backend()[0])
    encode = codec_module.encode
    with connect(port) as sock:
        sock.sendall(encode(FrameKind.REQUEST, 1, "echo", b"a")
                     + encode(FrameKind.REQUEST, 2, "echo", b"b")
                     + b"MR\xff" + b"\x00" * 20 + encode(FrameKind.REQUEST, 3, "echo", b"c"))
        frames = read_frames(codec_module, sock)  # up to the close
    assert sorted((f.request_id, codec_module.body_of(f)) for f in frames) == [
        (1, b"echo:a"), (2, b"echo:b")]
    stats = mosn.wait_stat("protocol.minirpc.downstream_cx_protocol_error", 1)
    assert stats["protocol.minirpc.downstream_cx_protocol_error"] == 1


def test_a_codec_raising_in_decode_answers_what_came_before_and_closes_only_that_connection(
        codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    port, mosn = rpc_mosn(backend()[0], protocol="faultyrpc", services="echo|boom-decode")
    encode = codec_module.encode
    with connect(port) as other, connect(port) as sock:
        assert codec_module.body_of(call(codec_module, other, 1, "echo", b"before")) == \
            b"echo:before"
        sock.sendall(encode(FrameKind.REQUEST, 1, "echo", b"x")
                     + encode(FrameKind.REQUEST, 2, "boom-decode")
                     + encode(FrameKind.REQUEST, 3, "echo", b"y"))
        frames = read_frames(codec_module, sock)
        after = call(codec_module, other, 2, "echo", b"after")
    assert [(f.request_id, codec_module.body_of(f)) for f in frames] == [(1, b"echo:x")]
    assert codec_module.body_of(after) == b"echo:after"
    assert mosn.wait_stat("protocol.faultyrpc.codec_error", 1)["protocol.faultyrpc.codec_error"] \
        == 1
    log = mosn.output()
    assert "protocol faultyrpc (plugin minirpc): the codec raised RuntimeError in decode" in log
    assert "Fatal error" not in log  # nothing reached the event loop's handler


def test_a_codec_raising_on_a_response_answers_that_request_with_the_error_status(
        codec_module, backend, rpc_mosn):
    port, mosn = rpc_mosn(backend()[0], protocol="faultyrpc", services="echo|boom-id")
    with connect(port) as sock:
        failed = call(codec_module, sock, 1, "boom-id")
        after = call(codec_module, sock, 2, "echo", b"same connection")
    assert (failed.request_id, failed.status) == (1, codec_module.BAD_FRAME)
    assert codec_module.body_of(after) == b"echo:same connection"
    assert mosn.wait_stat("protocol.faultyrpc.codec_error", 1)["protocol.faultyrpc.codec_error"] \
        == 1


def test_a_codec_that_cannot_make_an_error_reply_closes_that_connection(
        codec_module, backend, rpc_mosn):
    port, mosn = rpc_mosn(backend()[0], protocol="faultyrpc")
    with connect(port) as other, connect(port) as sock:
        assert call(codec_module, sock, 1, "boom-reply") is None  # no route: closed
        assert codec_module.body_of(call(codec_module, other, 1, "echo")) == b"echo:"
    assert mosn.wait_stat("protocol.faultyrpc.codec_error", 1)["protocol.faultyrpc.codec_error"] \
        == 1


def test_codec_failures_are_each_counted_but_not_each_logged(codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    port, mosn = rpc_mosn(backend()[0], protocol="faultyrpc")
    failures = 30
    for _ in range(failures):
        with connect(port) as sock:
            sock.sendall(codec_module.encode(FrameKind.REQUEST, 1, "boom-decode"))
            assert read_frames(codec_module, sock) == []
    stats = mosn.wait_stat("protocol.faultyrpc.codec_error", failures)
    assert stats["protocol.faultyrpc.codec_error"] == failures
    lines = mosn.output().count("the codec raised RuntimeError in decode")
    assert 1 <= lines < failures


def write_until_blocked(sock: socket.socket, chunk: bytes, total: int) -> int:
    """Write ``chunk`` over and over, up to ``total`` bytes or until the peer stops
    reading (no progress for ``STALL`` seconds); the bytes written in whole chunks."""
    sock.settimeout(STALL)
    written = 0
    try:
        while written < total:
            sock.sendall(chunk)
            written += len(chunk)
    except (TimeoutError, socket.timeout):
        pass
    return written


REQUESTS_BYTES = 200 * 1024 * 1024
"""What a client tries to send without reading: far more than mosn may hold."""
HELD_BOUND = 32 * 1024 * 1024
"""What mosn may buffer for such a client: its write buffer's limit and one read of
requests per request in flight, well under ``REQUESTS_BYTES``."""


def test_a_client_that_never_reads_its_responses_is_no_longer_read(
        codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    port, mosn = rpc_mosn(backend()[0], timeout="30s")
    chunk = codec_module.encode(FrameKind.REQUEST, 1, "echo", b"x" * 16384) * 64
    with connect(port) as sock:
        written = write_until_blocked(sock, chunk, REQUESTS_BYTES)
        held = mosn.stats().get("overload.buffered_bytes")
    assert written < REQUESTS_BYTES // 2
    assert held < HELD_BOUND
    assert mosn.wait_stat("overload.buffered_bytes", 0)["overload.buffered_bytes"] == 0


def test_clients_feeding_a_host_that_never_reads_are_no_longer_read(
        codec_module, rpc_mosn):
    from mosn.rpc import FrameKind

    with socket.create_server(("127.0.0.1", 0)) as host:  # accepts, never reads
        held_connections: list[socket.socket] = []
        accepting = threading.Thread(
            target=lambda: held_connections.append(host.accept()[0]), daemon=True)
        accepting.start()
        port, mosn = rpc_mosn(host.getsockname()[1], timeout="30s")
        chunk = codec_module.encode(FrameKind.REQUEST, 1, "echo", b"x" * 16384) * 64
        with connect(port) as sock:
            written = write_until_blocked(sock, chunk, REQUESTS_BYTES)
            held = mosn.stats().get("overload.buffered_bytes")
        for conn in held_connections:
            conn.close()
    assert written < REQUESTS_BYTES // 2
    assert held < HELD_BOUND


def test_a_shed_client_gets_the_busy_status_for_its_requests_in_flight(
        codec_module, backend, rpc_mosn):
    from mosn.rpc import FrameKind

    port, mosn = rpc_mosn(backend()[0], timeout="30s", overload={
        "max_buffered_bytes": 4 * 1024 * 1024,
        "actions": {"stop_accepting_connections": 0.9, "shed_high_memory_connections": 0.9}})
    body = b"x" * (100 * 1024)  # 40 of them in flight pass the shedding threshold
    with connect(port) as sock:
        sock.sendall(b"".join(codec_module.encode(FrameKind.REQUEST, i + 1, "silent", body)
                              for i in range(40)))
        frames = read_frames(codec_module, sock)  # up to the close
    assert frames, "closed without answering the requests in flight"
    assert {f.status for f in frames} == {codec_module.BUSY}
    assert len({f.request_id for f in frames}) == len(frames)
    assert mosn.stats()["overload.shed_high_memory_connections.shed"] == 1
