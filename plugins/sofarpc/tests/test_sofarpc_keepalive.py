"""A cluster's ``keepalive`` (MOSN's xprotocol keepalive): mosn sends a bolt heartbeat
on each upstream connection every interval, and closes a connection whose heartbeats
go unanswered six times in a row. The backend counts the heartbeats it gets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mosn.rpc.codec import FrameKind
from mosn.testing import free_port
from mosn_sofarpc import BoltCodec

CODEC = BoltCodec()
SERVICE = "com.example.EchoService:1.0"


class BoltBackend:
    """A bolt server on its own loop: answers requests with ``ok``; counts the
    heartbeats of each connection, and answers them unless ``answer_heartbeats`` is
    off; notes each connection that the peer closed."""

    def __init__(self, answer_heartbeats: bool = True) -> None:
        self.answer_heartbeats = answer_heartbeats
        self.heartbeats = 0
        self.closed = 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: Any = None

    def __enter__(self) -> "BoltBackend":
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port), self.loop).result(5)
        return self

    def __exit__(self, *_: Any) -> None:
        async def stop() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        try:
            while data := await reader.read(65536):
                buffer += data
                while (frame := CODEC.decode(buffer)) is not None:
                    if frame.kind is FrameKind.HEARTBEAT:
                        self.heartbeats += 1
                        if self.answer_heartbeats:
                            writer.write(CODEC.heartbeat_reply(frame))
                    elif frame.kind is FrameKind.REQUEST:
                        writer.write(CODEC.response(frame, b"ok"))
            self.closed += 1
        finally:
            writer.close()


def config(listen: int, backend: int, keepalive: dict[str, str]) -> dict[str, Any]:
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{
                "domains": ["*"], "routers": [{"route": {"cluster_name": "c"}}]}]}],
            "listeners": [{"address": f"127.0.0.1:{listen}", "filter_chains": [{"filters": [{
                "type": "proxy", "config": {"downstream_protocol": "bolt",
                                            "router_config_name": "r"}}]}]}],
        }],
        "cluster_manager": {"clusters": [{
            "name": "c", "keepalive": keepalive,
            "hosts": [{"address": f"127.0.0.1:{backend}"}]}]},
    }


def call(port: int) -> int:
    """One bolt request through mosn (which opens the upstream connection); its
    response's status."""
    request = bytearray(CODEC.request(SERVICE, "echo", b"hi"))
    CODEC.set_request_id(request, 7)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        buffer = bytearray()
        while (frame := CODEC.decode(buffer)) is None:
            data = sock.recv(65536)
            assert data, "mosn closed the connection"
            buffer += data
    assert frame.kind is FrameKind.RESPONSE and frame.request_id == 7
    return CODEC.http_status(frame.status)


def wait_until(test: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.05)


@pytest.fixture
def backend() -> Iterator[BoltBackend]:
    with BoltBackend() as b:
        yield b


@pytest.fixture
def mute_backend() -> Iterator[BoltBackend]:
    with BoltBackend(answer_heartbeats=False) as b:
        yield b


def test_heartbeats_keep_an_upstream_connection_checked(start_mosn, backend):
    port = free_port()
    mosn = start_mosn(config(port, backend.port, {"interval": "0.2s", "timeout": "1s"}))
    assert call(port) == 200
    wait_until(lambda: backend.heartbeats >= 3, 10)
    assert mosn.stats()["cluster.c.upstream_cx_keepalive_heartbeat"] >= 3
    assert backend.closed == 0  # answered heartbeats keep the connection
    assert call(port) == 200


def test_a_connection_whose_heartbeats_go_unanswered_is_closed(start_mosn, mute_backend):
    port = free_port()
    mosn = start_mosn(config(port, mute_backend.port, {"interval": "0.1s", "timeout": "0.1s"}))
    assert call(port) == 200
    wait_until(lambda: mute_backend.closed == 1, 10)
    assert mute_backend.heartbeats == 6  # MOSN's six in a row, then the close
    assert mosn.stats()["cluster.c.upstream_cx_keepalive_close"] == 1
    assert call(port) == 200  # a new connection serves the next request


def test_keepalive_without_an_interval_is_refused():
    from mosn.config import ConfigError, validate

    with pytest.raises(ConfigError) as info:
        validate(config(2045, 2046, {"timeout": "1s"}))
    assert info.value.errors == [
        "cluster_manager.clusters[0].keepalive: interval: set it (more than 0s) or leave "
        "keepalive out"]
