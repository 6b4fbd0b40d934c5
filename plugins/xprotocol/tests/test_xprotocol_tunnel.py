"""No-unpack forwarding between two mosn instances: the ACME protocol (which neither
mosn is told anything about) carried as opaque bytes, first through two chained
tcp_proxy listeners, then through a tunnel whose header names the far cluster, so
the far mosn routes and balances without decoding a frame."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from mosn.testing import free_port, serving
from mosn_xprotocol.tunnel import (
    TunnelHeaderError,
    decode_tunnel_header,
    encode_tunnel_header,
)
from xprotocol_examples import ACME_REQUEST, ACME_RESPONSE, acme_frame, acme_parse

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, int]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(serving(
            lambda port, name=name: [sys.executable, str(HERE / "acme_backend.py"),
                                     "--port", str(port), "--name", name]))
            for name in ("a", "b", "vip")}


def listener(name: str, port: int, filter_type: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "address": f"127.0.0.1:{port}",
            "filter_chains": [{"filters": [{"type": filter_type, "config": config}]}]}


def cluster(name: str, ports: list[int]) -> dict[str, Any]:
    return {"name": name, "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": f"127.0.0.1:{p}"} for p in ports]}


def mosn_config(listeners: list[dict[str, Any]], clusters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"servers": [{"graceful_timeout": "1s", "listeners": listeners}],
            "cluster_manager": {"clusters": clusters}}


async def acme_calls(port: int, count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` requests in flight on one connection; the replies in id order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(1, count + 1):
            writer.write(acme_frame(ACME_REQUEST, i, "com.acme.Orders", "get", b"%s-%d" % (
                tag.encode(), i)))
        replies, buffer = {}, bytearray()
        while len(replies) < count:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, "the tunnel closed"
            buffer += data
            while (parsed := acme_parse(buffer)) is not None:
                frame, size = parsed
                del buffer[:size]
                replies[frame["request_id"]] = frame
        return [replies[i] for i in sorted(replies)]
    finally:
        writer.close()


def backend_of(reply: dict[str, Any]) -> str:
    return reply["body"].split(b":", 1)[0].decode()


def test_tcp_proxy_chained_through_two_mosn(start_mosn, backends) -> None:
    near, far = free_port(), free_port()
    start_mosn(mosn_config([listener("far", far, "tcp_proxy", {"cluster": "orders"})],
                           [cluster("orders", [backends["a"], backends["b"]])]))
    start_mosn(mosn_config([listener("near", near, "tcp_proxy", {"cluster": "far"})],
                           [cluster("far", [far])]))

    async def go() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(acme_calls(near, 50, f"c{i}") for i in range(4)))

    connections = asyncio.run(go())
    for i, replies in enumerate(connections):
        assert all(r["kind"] == ACME_RESPONSE for r in replies)
        assert [r["body"].split(b":", 1)[1] for r in replies] == [
            b"c%d-%d" % (i, n) for n in range(1, 51)]
        assert len({backend_of(r) for r in replies}) == 1  # one upstream per connection
    assert {backend_of(c[0]) for c in connections} == {"a", "b"}  # round robin per connection


@pytest.fixture
def tunnel(start_mosn, backends) -> dict[str, int]:
    """mosn "near" with two tunnel_entry listeners (to orders, to vip) into a cluster
    of one far mosn, whose tunnel_exit allows orders and vip only."""
    ports = {name: free_port() for name in ("orders", "vip", "secret", "exit")}
    start_mosn(mosn_config(
        [listener("exit", ports["exit"], "tunnel_exit", {"clusters": ["orders", "vip"]})],
        [cluster("orders", [backends["a"], backends["b"]]), cluster("vip", [backends["vip"]]),
         cluster("secret", [backends["vip"]])]))
    start_mosn(mosn_config(
        [listener(name, ports[name], "tunnel_entry", {"cluster": "far", "destination": name})
         for name in ("orders", "vip", "secret")],
        [cluster("far", [ports["exit"]])]))
    return ports


def test_the_far_side_routes_by_the_tunnel_header(tunnel: dict[str, int]) -> None:
    async def go() -> tuple[list, list]:
        orders = asyncio.gather(*(acme_calls(tunnel["orders"], 30, f"o{i}") for i in range(4)))
        vip = acme_calls(tunnel["vip"], 30, "v")
        return await asyncio.gather(orders, vip)

    orders, vip = asyncio.run(go())
    assert {backend_of(c[0]) for c in orders} == {"a", "b"}
    assert all(len({backend_of(r) for r in c}) == 1 for c in orders)
    assert {backend_of(r) for r in vip} == {"vip"}
    assert [r["body"] for r in vip] == [b"vip:v-%d" % n for n in range(1, 31)]


def test_a_cluster_the_far_side_does_not_allow_is_refused(tunnel: dict[str, int]) -> None:
    with socket.create_connection(("127.0.0.1", tunnel["secret"]), timeout=5) as s:
        s.sendall(acme_frame(ACME_REQUEST, 1, "com.acme.Orders", "get", b"x"))
        assert s.recv(100) == b""  # closed without an answer


def test_bytes_that_are_not_a_tunnel_are_refused(tunnel: dict[str, int]) -> None:
    with socket.create_connection(("127.0.0.1", tunnel["exit"]), timeout=5) as s:
        s.sendall(acme_frame(ACME_REQUEST, 1, "com.acme.Orders", "get", b"x"))
        assert s.recv(100) == b""


def test_a_tunnel_header_may_arrive_in_pieces(tunnel: dict[str, int]) -> None:
    frame = encode_tunnel_header("vip") + acme_frame(ACME_REQUEST, 9, "s", "m", b"piecewise")
    with socket.create_connection(("127.0.0.1", tunnel["exit"]), timeout=5) as s:
        for i in range(len(frame)):
            s.sendall(frame[i:i + 1])
        received = bytearray()
        while (parsed := acme_parse(received)) is None:
            data = s.recv(1000)
            assert data, "closed before the reply"
            received += data
        reply, _ = parsed
    assert (reply["request_id"], reply["body"]) == (9, b"vip:piecewise")


def test_tunnel_header_round_trip() -> None:
    header = encode_tunnel_header("orders")
    assert header == b"XTNL\x01\x06orders"
    assert decode_tunnel_header(header + b"rest") == ("orders", len(header))
    for cut in range(len(header)):
        assert decode_tunnel_header(header[:cut]) is None
    with pytest.raises(TunnelHeaderError):
        decode_tunnel_header(b"GET / HTTP/1.1\r\n")
    with pytest.raises(TunnelHeaderError):
        encode_tunnel_header("x" * 256)
