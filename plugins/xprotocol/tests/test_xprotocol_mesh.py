"""A private protocol declared in config alone carries real traffic through mosn:
hand-written ACME backends and clients (xprotocol_examples.py), mosn in between with
``downstream_protocol: xprotocol`` and the protocol described under
``extend_config.xprotocol.codec``: routing on a header field, round robin over a
cluster, request-id remapping, timeouts (the route's and the caller's), errors in the
protocol's own statuses, heartbeats answered by mosn."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from mosn.testing import free_port, serving
from xprotocol_examples import (
    ACME,
    ACME_HEARTBEAT,
    ACME_HEARTBEAT_REPLY,
    ACME_REQUEST,
    ACME_RESPONSE,
    acme_frame,
    acme_parse,
)

HERE = Path(__file__).parent
ROUTE_TIMEOUT = "500ms"


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    """Three ACME backends by name -> port."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serving(
            lambda port, name=name: [sys.executable, str(HERE / "acme_backend.py"),
                                     "--port", str(port), "--name", name]))
            for name in ("a", "b", "vip")}


def acme_mosn_config(port: int, backends: dict[str, int]) -> dict[str, Any]:
    return {
        "servers": [{
            "routers": [{"router_config_name": "acme", "virtual_hosts": [{
                "name": "acme", "domains": ["*"], "routers": [
                    {"match": {"headers": [{"name": "tenant", "value": "7"}]},
                     "route": {"cluster_name": "vip", "timeout": ROUTE_TIMEOUT}},
                    {"match": {"headers": [{"name": "service", "value": "^com[.]acme[.]",
                                            "regex": True}]},
                     "route": {"cluster_name": "orders", "timeout": ROUTE_TIMEOUT}},
                ]}]}],
            "listeners": [{
                "name": "acme", "address": f"127.0.0.1:{port}",
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "xprotocol",
                    "router_config_name": "acme",
                    "extend_config": {"xprotocol": {"codec": yaml.safe_load(ACME)}},
                }}]}],
            }],
        }],
        "cluster_manager": {"clusters": [
            {"name": "orders", "lb_type": "LB_ROUNDROBIN",
             "hosts": [{"address": f"127.0.0.1:{backends['a']}"},
                       {"address": f"127.0.0.1:{backends['b']}"}]},
            {"name": "vip", "hosts": [{"address": f"127.0.0.1:{backends['vip']}"}]},
        ]},
    }


@pytest.fixture
def acme_port(start_mosn, backends) -> int:
    port = free_port()
    start_mosn(acme_mosn_config(port, backends))
    return port


class AcmeClient:
    """Many requests in flight on one connection, matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.waiting: dict[int, asyncio.Future] = {}
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> "AcmeClient":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def _read(self) -> None:
        buffer = bytearray()
        while data := await self.reader.read(65536):
            buffer += data
            while (parsed := acme_parse(buffer)) is not None:
                frame, size = parsed
                del buffer[:size]
                future = self.waiting.pop(frame["request_id"], None)
                if future is not None:
                    future.set_result(frame)

    async def call(self, kind: int, request_id: int, service: str = "", method: str = "",
                   body: bytes = b"", **fields: Any) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        self.writer.write(acme_frame(kind, request_id, service, method, body, **fields))
        return await asyncio.wait_for(future, 10)

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_routing_on_a_header_field(acme_port: int) -> None:
    async def go() -> list[dict[str, Any]]:
        client = await AcmeClient.connect(acme_port)
        try:
            return [await client.call(ACME_REQUEST, i, "com.acme.Orders", "list", b"%d" % i,
                                      tenant=7 if i % 2 else 1) for i in range(1, 9)]
        finally:
            client.close()

    replies = run(go())
    assert all(r["kind"] == ACME_RESPONSE and r["status"] == 0 for r in replies)
    vip = [r["body"] for r in replies if r["tenant"] == 7]
    orders = [r["body"] for r in replies if r["tenant"] == 1]
    assert vip == [b"vip:1", b"vip:3", b"vip:5", b"vip:7"]
    assert {body.split(b":")[0] for body in orders} == {b"a", b"b"}  # round robin


def test_ids_are_remapped_across_connections(acme_port: int) -> None:
    """Two clients use the same ids at once; each gets its own answers back."""
    n, window = 300, 30  # a window of calls in flight per client: each well inside the
    # route's timeout even on a busy machine, while both clients use the same ids at once

    async def client_run(tag: bytes) -> list[dict[str, Any]]:
        client = await AcmeClient.connect(acme_port)
        replies: list[dict[str, Any]] = []
        try:
            for first in range(1, n + 1, window):
                replies += await asyncio.gather(*(
                    client.call(ACME_REQUEST, i, "com.acme.Orders", "get", tag + b"-%d" % i)
                    for i in range(first, min(first + window, n + 1))))
            return replies
        finally:
            client.close()

    async def go() -> tuple[list, list]:
        return await asyncio.gather(client_run(b"x"), client_run(b"y"))

    for tag, replies in zip((b"x", b"y"), run(go())):
        assert [r["request_id"] for r in replies] == list(range(1, n + 1))
        assert [r["body"].split(b":", 1)[1] for r in replies] == [
            tag + b"-%d" % i for i in range(1, n + 1)]


def test_failures_are_answered_in_the_protocols_statuses(acme_port: int) -> None:
    async def go() -> tuple[dict, dict, float, dict, float]:
        client = await AcmeClient.connect(acme_port)
        try:
            no_route = await client.call(ACME_REQUEST, 41, "org.other.Service", "get")
            started = time.monotonic()
            route_timeout = await client.call(ACME_REQUEST, 42, "com.acme.Orders", "slow")
            waited = time.monotonic() - started
            started = time.monotonic()
            caller_timeout = await client.call(ACME_REQUEST, 43, "com.acme.Orders", "slow",
                                               timeout_ms=100)
            return no_route, route_timeout, waited, caller_timeout, time.monotonic() - started
        finally:
            client.close()

    no_route, route_timeout, waited, caller_timeout, caller_waited = run(go())
    assert (no_route["kind"], no_route["request_id"], no_route["status"]) == (ACME_RESPONSE, 41, 404)
    assert (route_timeout["request_id"], route_timeout["status"]) == (42, 504)
    assert 0.4 < waited < 1.5
    assert (caller_timeout["request_id"], caller_timeout["status"]) == (43, 504)
    assert caller_waited < 0.4  # the caller's 100 ms, not the route's 500 ms


def test_heartbeats_are_answered_by_mosn(acme_port: int) -> None:
    async def go() -> dict[str, Any]:
        client = await AcmeClient.connect(acme_port)
        try:
            return await client.call(ACME_HEARTBEAT, 77)
        finally:
            client.close()

    reply = run(go())
    assert (reply["kind"], reply["request_id"], reply["status"]) == (ACME_HEARTBEAT_REPLY, 77, 0)


def test_mosn_mock_client_speaks_a_declared_protocol(acme_port: int, tmp_path: Path) -> None:
    """The codec description a proxy holds serves the tools too (--protocol-config)."""
    description = tmp_path / "acme.yaml"
    description.write_text(yaml.safe_dump({"codec": yaml.safe_load(ACME)}))
    done = subprocess.run(
        [sys.executable, "-m", "mosn", "mock", "client", "--protocol", "xprotocol",
         "--protocol-config", str(description), "--target", f"127.0.0.1:{acme_port}",
         "--service", "com.acme.Orders", "--count", "3"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 requests: 3 succeeded, 0 failed" in done.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "mosn", "mock", "client", "--protocol", "xprotocol",
         "--target", f"127.0.0.1:{acme_port}", "--service", "com.acme.Orders"],
        capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "needs a codec description" in refused.stderr
