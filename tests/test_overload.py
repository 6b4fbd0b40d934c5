"""Overload and limits: the buffer budget and the overload manager, memory freed
when a connection closes, and a process out of file descriptors.

The attacks are the ones that broke mosn before: clients each holding a partial bolt
frame of megabytes, and more clients than the process has descriptors for."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import re
import resource
import socket
import struct
import sys
import time
import urllib.request
import weakref
from typing import Any, Callable

import httpx
import pytest
import yaml

from conftest import ROOT, Mosn, free_port, serving, tcp_proxy_config
from mosn.config import ConfigError, validate
from mosn.config.types import Address
from mosn.network import Listener, bind
from mosn.network.filter_chain import FilterChain
from mosn.observability.stats import LISTENER_STATS, StatsStore
from mosn.rpc.engine import rpc_protocol
from mosn_sofarpc import BoltCodec
from mosn_sofarpc.frames import build_request

MIB = 1024 * 1024
FRAME = 16 * MIB - 64
"""The content a partial frame announces: just under bolt's default max_frame_size."""
DEADLINE = 10.0
"""Seconds a test waits for a condition before failing."""
POLL = 0.02


def partial_bolt_frame(sent: int) -> bytes:
    """The first ``sent`` bytes of a bolt request announcing ``FRAME`` bytes of content."""
    header = build_request(1)  # 22 bytes: no class, header map or content
    header = header[:18] + struct.pack(">I", FRAME)
    return header + b"\0" * (sent - len(header))


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not after {timeout}s: {what}")
        time.sleep(POLL)
    return value


# -- memory is freed when a connection closes ----------------------------------------


async def until(condition: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not after {DEADLINE}s: {what}")
        await asyncio.sleep(POLL)


def test_a_closed_connection_frees_its_partial_frame_without_the_garbage_collector() -> None:
    """The codec and the connection refer to each other; if nothing breaks that cycle
    on close, a partial frame of megabytes stays until a garbage collection runs."""
    held = 4 * MIB

    async def main() -> weakref.ref[Any]:
        store = StatsStore()
        stats = store.scope("listener.t", LISTENER_STATS)
        store.allocate(1)
        protocol = rpc_protocol(BoltCodec())
        listener = Listener("t", bind(Address("127.0.0.1", 0)), store, stats, [FilterChain(
            "0", lambda conn: protocol.server(conn, lambda stream: None))])
        await listener.start()
        _, writer = await asyncio.open_connection(*listener.sock.getsockname())
        writer.write(partial_bolt_frame(held))
        await until(lambda: store.total(stats.downstream_cx_rx_bytes_total) >= held,
                    "mosn read the partial frame")
        (conn,) = listener.connections
        ref = weakref.ref(conn)
        del conn
        writer.close()
        await until(lambda: not listener.connections, "the connection closed")
        await until(lambda: ref() is None, "the closed connection freed")
        listener.stop_accepting()
        return ref

    gc.disable()  # what is freed must be freed by reference counting alone
    try:
        asyncio.run(main())
    finally:
        gc.enable()
    from mosn.network.budget import BUDGET

    assert BUDGET.used == 0  # and its share of the buffer budget given back


# -- the buffer budget -----------------------------------------------------------------


def bolt_listener_config(port: int, overload: dict[str, Any]) -> dict[str, Any]:
    """A bolt listener routing everything to a host that listens nowhere (the frames
    under test never complete, and the heartbeats are answered by mosn itself)."""
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "bolt", "virtual_hosts": [{
                "name": "bolt", "domains": ["*"], "routers": [
                    {"match": {"headers": [{"name": "service", "value": ".*", "regex": True}]},
                     "route": {"cluster_name": "nowhere"}}]}]}],
            "listeners": [{
                "name": "bolt", "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "bolt", "router_config_name": "bolt"}}]}],
            }],
        }],
        "cluster_manager": {"clusters": [
            {"name": "nowhere", "hosts": [{"address": f"127.0.0.1:{free_port()}"}]}]},
        "overload_manager": overload,
    }


def heartbeat(sock: socket.socket) -> Any:
    """Send a bolt heartbeat; the frame answered."""
    codec = BoltCodec()
    sock.sendall(build_request(77, cmd_code=0))
    buffer = bytearray()
    while (frame := codec.decode(buffer)) is None:
        data = sock.recv(65536)
        assert data, "closed without an answer"
        buffer += data
    return frame


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(DEADLINE)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_partial_frames_past_the_budget_stop_accepting_then_the_largest_are_shed(
        start_mosn: Callable[..., Mosn]) -> None:
    port = free_port()
    mosn = start_mosn(bolt_listener_config(port, {
        "max_buffered_bytes": 64 * MIB,
        "actions": {"stop_accepting_connections": 0.5, "shed_high_memory_connections": 0.75}}))
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    mosn.wait_stat("listener.bolt.downstream_cx_active", 10)
    sent = []
    for i, sock in enumerate(clients):  # 6 MiB each (of 16 MiB frames): 60 MiB in all
        try:
            sock.sendall(partial_bolt_frame(6 * MIB - i))
            sent.append(sock)
        except OSError:  # shed while sending
            pass
    stats = wait_for(lambda: (s := mosn.stats())["overload.shed_high_memory_connections.shed"]
                     >= 2 and s["overload.buffered_bytes"] < 48 * MIB and s,
                     "connections shed until under the shedding threshold")
    assert stats["overload.stop_accepting_connections.triggered"] >= 1
    assert stats["overload.stop_accepting_connections.active"] == 1
    shed = stats["overload.shed_high_memory_connections.shed"]
    assert stats["overload.shed_high_memory_connections.shed_bytes"] >= shed * 5 * MIB
    # A new client waits in the backlog while accepting is off ...
    waiting = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    for sock in clients:
        sock.close()
    # ... and is served once the budget is free again.
    assert heartbeat(waiting).request_id == 77
    waiting.close()
    stats = mosn.wait_stat("overload.buffered_bytes", 0)
    assert stats["overload.buffered_bytes"] == 0
    assert stats["overload.stop_accepting_connections.active"] == 0
    log = mosn.output()
    assert "not accepting connections" in log and "accepting connections again" in log
    assert "connections holding the most" in log


def test_the_connection_shed_is_the_one_holding_the_most(
        start_mosn: Callable[..., Mosn]) -> None:
    port = free_port()
    mosn = start_mosn(bolt_listener_config(port, {
        "max_buffered_bytes": 16 * MIB,
        "actions": {"stop_accepting_connections": 0.9, "shed_high_memory_connections": 0.9}}))
    small = socket.create_connection(("127.0.0.1", port))
    small.sendall(partial_bolt_frame(MIB))
    wait_for(lambda: mosn.stats()["overload.buffered_bytes"] >= MIB, "the small one held")
    large = socket.create_connection(("127.0.0.1", port))
    try:
        large.sendall(partial_bolt_frame(15 * MIB))
    except OSError:
        pass  # shed before it finished sending
    assert closed_by_peer(large)
    stats = mosn.stats()
    assert stats["overload.shed_high_memory_connections.shed"] == 1
    assert stats["overload.shed_high_memory_connections.shed_bytes"] > 12 * MIB  # not small's
    assert stats["listener.bolt.downstream_cx_active"] == 1
    small.close()
    large.close()


def test_an_http_request_body_kept_for_a_retry_counts_until_the_request_ends(
        start_mosn: Callable[..., Mosn]) -> None:
    body = b"x" * (512 * 1024)
    with serving(lambda p: [sys.executable, str(ROOT / "examples" / "http_upstream.py"),
                            "--port", str(p), "--name", "slow"]) as upstream:
        port = free_port()
        mosn = start_mosn({
            "servers": [{
                "routers": [{"router_config_name": "web", "virtual_hosts": [{
                    "name": "web", "domains": ["*"], "routers": [{
                        "match": {"prefix": "/"},
                        "route": {"cluster_name": "slow", "timeout": "30s", "retry_policy": {
                            "retry_on": "5xx", "num_retries": 1}}}]}]}],
                "listeners": [{
                    "name": "web", "address": f"127.0.0.1:{port}",
                    "filter_chains": [{"filters": [{"type": "proxy", "config": {
                        "downstream_protocol": "Http1", "router_config_name": "web"}}]}],
                }],
            }],
            "cluster_manager": {"clusters": [
                {"name": "slow", "hosts": [{"address": f"127.0.0.1:{upstream}"}]}]},
        })
        with httpx.Client(timeout=DEADLINE) as client:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                answer = pool.submit(client.post, f"http://127.0.0.1:{port}/delay/2", content=body)
                wait_for(lambda: mosn.stats()["overload.buffered_bytes"] >= len(body),
                         "the body held while the request is in flight")
                assert answer.result().text == "late\n"
        assert mosn.wait_stat("overload.buffered_bytes", 0)["overload.buffered_bytes"] == 0


# -- out of file descriptors -----------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_descriptors_is_logged_and_counted_and_mosn_recovers(
        start_mosn: Callable[..., Mosn]) -> None:
    port = free_port()
    mosn = start_mosn(bolt_listener_config(port, {}))
    first = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    assert heartbeat(first).request_id == 77
    pid = mosn.proc.pid
    limit = open_fds(pid) + 3  # three more clients, then no descriptor is left
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    more = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    wait_for(lambda: "cannot accept connections: Too many open files" in mosn.output(),
             "the accept failure logged")
    with pytest.raises(OSError):  # the admin API is out of descriptors too, and lives on
        urllib.request.urlopen(mosn.url("/ready"), timeout=1)
    assert heartbeat(first).request_id == 77  # the connections it has are served
    for sock in more:
        sock.close()
    later = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    assert heartbeat(later).request_id == 77  # served once descriptors are free
    later.close()
    first.close()
    assert mosn.stats()["listener.bolt.downstream_cx_accept_error"] >= 1
    assert mosn.proc.poll() is None


# -- the config -------------------------------------------------------------------------


def operations_yaml_blocks() -> list[str]:
    """The YAML blocks of docs/operations.md's "Overload and limits" section."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Overload and limits", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, re.S)


def test_the_documented_overload_config_loads_as_written() -> None:
    (block,) = operations_yaml_blocks()
    beside = tcp_proxy_config(free_port(), ["127.0.0.1:9"])  # a config needs a listener
    config = validate({**beside, **yaml.safe_load(block)}).config.overload_manager
    assert (config.refresh_interval, config.max_buffered_bytes) == (0.25, 256 * MIB)
    assert config.actions.stop_accepting_connections == 0.8
    assert config.actions.shed_high_memory_connections == 0.95


@pytest.mark.parametrize("overload, error", [
    ({"max_buffered_bytes": 1024}, "overload_manager.max_buffered_bytes"),
    ({"refresh_interval": "0s"}, "overload_manager.refresh_interval"),
    ({"actions": {"stop_accepting": 0.5}}, "overload_manager.actions.stop_accepting"),
    ({"budget": 1}, "overload_manager.budget"),
    ({"actions": {"stop_accepting_connections": 0.9, "shed_high_memory_connections": 0.5}},
     "overload_manager.actions"),
    ({"actions": {"shed_high_memory_connections": 1.5}},
     "overload_manager.actions.shed_high_memory_connections"),
])
def test_a_bad_overload_config_is_refused_with_its_path(overload: dict[str, Any],
                                                        error: str) -> None:
    with pytest.raises(ConfigError) as refused:
        validate({"overload_manager": overload})
    assert any(line.startswith(error) for line in refused.value.errors), refused.value.errors


# -- shedding an HTTP connection answers in its protocol ------------------------------


def http_and_bolt_config(http_port: int, bolt_port: int, protocol: str,
                         upstream: int) -> dict[str, Any]:
    """``bolt_listener_config`` plus a ``protocol`` listener whose requests wait on the
    ``upstream`` with their bodies kept for a retry (so they count in the budget)."""
    config = bolt_listener_config(bolt_port, {
        "max_buffered_bytes": 4 * MIB,
        "actions": {"stop_accepting_connections": 0.5, "shed_high_memory_connections": 0.5}})
    server = config["servers"][0]
    server["routers"].append({"router_config_name": "web", "virtual_hosts": [{
        "name": "web", "domains": ["*"], "routers": [{
            "match": {"prefix": "/"},
            "route": {"cluster_name": "slow", "timeout": "30s",
                      "retry_policy": {"retry_on": "5xx", "num_retries": 1}}}]}]})
    server["listeners"].append({
        "name": "web", "address": f"127.0.0.1:{http_port}",
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": protocol, "upstream_protocol": "Http1",
            "router_config_name": "web"}}]}]})
    config["cluster_manager"]["clusters"].append(
        {"name": "slow", "hosts": [{"address": f"127.0.0.1:{upstream}"}]})
    return config


@pytest.mark.parametrize("protocol", ["Http1", "Http2"])
def test_a_shed_http_connection_answers_its_waiting_request_503(
        start_mosn: Callable[..., Mosn], protocol: str) -> None:
    """A request whose body (900 KiB, kept for a retry) makes its connection the
    largest holder gets 503 (HTTP/2: and GOAWAY) when three smaller bolt clients push
    the budget over the shedding threshold (2 MiB; a body being kept counts twice for
    a moment, so the request alone stays under it)."""
    body = b"x" * (900 * 1024)
    with serving(lambda p: [sys.executable, str(ROOT / "examples" / "http_upstream.py"),
                            "--port", str(p), "--name", "slow"]) as upstream:
        http_port, bolt_port = free_port(), free_port()
        mosn = start_mosn(http_and_bolt_config(http_port, bolt_port, protocol, upstream))
        http2 = protocol == "Http2"
        with httpx.Client(http1=not http2, http2=http2, timeout=DEADLINE) as client:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                answer = pool.submit(client.post, f"http://127.0.0.1:{http_port}/delay/20",
                                     content=body)
                wait_for(lambda: mosn.stats()["overload.buffered_bytes"] >= len(body),
                         "the body held while the request waits")
                small = []
                for _ in range(3):
                    small.append(socket.create_connection(("127.0.0.1", bolt_port)))
                    small[-1].sendall(partial_bolt_frame(400 * 1024))
                response = answer.result()
        assert response.status_code == 503
        stats = mosn.stats()
        assert stats["overload.shed_high_memory_connections.shed"] == 1
        assert stats["listener.bolt.downstream_cx_active"] == 3  # the smaller ones stay
        for sock in small:
            sock.close()
