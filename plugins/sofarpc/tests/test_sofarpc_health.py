"""The ``bolt`` health checker (MOSN's name): a bolt heartbeat to each host, healthy on
a SUCCESS heartbeat reply, against sofa-rpc-node's real server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mosn.config.types import Address
from mosn.testing import free_port
from mosn.upstream import HealthCheckFailed, Host
from mosn_sofarpc import BoltCodec, BoltV2Codec
from mosn_sofarpc.plugin import bolt_health_checker, boltv2_health_checker

from .sofarpc_peers import DATA


def test_the_heartbeat_is_the_one_sofa_bolt_node_sends():
    golden = (DATA / "v1_heartbeat.bin").read_bytes()
    sent = bytearray(BoltCodec().heartbeat())
    frame = BoltCodec().decode(bytearray(golden))
    ours = BoltCodec().decode(sent)
    assert (ours.kind, ours.request_id, len(ours.data)) == (frame.kind, 0, len(golden))


@pytest.mark.parametrize("factory", [bolt_health_checker, boltv2_health_checker])
def test_a_real_sofarpc_server_answers_the_heartbeat(node_server, factory):
    host = Host(Address("127.0.0.1", node_server.port))
    assert asyncio.run(factory().check(host)) is True


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP server that sends back what it gets: it takes connections (a ``tcp``
    checker calls it healthy) but never answers a heartbeat."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.sendall(conn.recv(65536))
                    conn.recv(65536)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def test_a_host_that_does_not_speak_bolt_fails(echo_port):
    host = Host(Address("127.0.0.1", echo_port))

    async def probe() -> Any:
        return await asyncio.wait_for(bolt_health_checker().check(host), 0.5)

    with pytest.raises(TimeoutError):  # its echo is a heartbeat request, not a reply
        asyncio.run(probe())


def test_a_host_that_answers_garbage_fails():
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    host = Host(Address("127.0.0.1", server.getsockname()[1]))
    with pytest.raises(HealthCheckFailed, match="not a bolt answer"):
        asyncio.run(bolt_health_checker().check(host))
    thread.join(5)
    server.close()


def wait_until(test: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        time.sleep(0.05)


def test_mosn_takes_a_host_that_does_not_answer_heartbeats_out(start_mosn, node_server,
                                                                 echo_port):
    port = free_port()
    good, bad = f"127.0.0.1:{node_server.port}", f"127.0.0.1:{echo_port}"
    config = {
        "servers": [{
            "routers": [{"router_config_name": "r", "virtual_hosts": [{
                "domains": ["*"], "routers": [{"route": {"cluster_name": "c"}}]}]}],
            "listeners": [{"address": f"127.0.0.1:{port}", "filter_chains": [{"filters": [{
                "type": "proxy", "config": {"downstream_protocol": "bolt",
                                            "router_config_name": "r"}}]}]}],
        }],
        "cluster_manager": {"clusters": [{
            "name": "c", "hosts": [{"address": good}, {"address": bad}],
            "health_check": {"protocol": "bolt", "interval": "0.2s", "timeout": "0.3s",
                             "initial_delay_seconds": "0.1s"}}]},
    }
    mosn = start_mosn(config)

    def health() -> dict[str, bool]:
        [cluster] = mosn.admin("/clusters").json()["clusters"]
        return {h["address"]: h["healthy"] for h in cluster["hosts"]}

    wait_until(lambda: health() == {good: True, bad: False}, 10)
    stats = mosn.stats()
    assert stats["cluster.c.health_check.success"] >= 1
    assert stats["cluster.c.health_check.failure"] >= 1
