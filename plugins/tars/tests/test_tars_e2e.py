"""@tars/rpc's client calling @tars/rpc's server through a mosn process, over 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mosn.testing import MosnProcess, Peer, free_port
from mosn.testing.process import rpc_proxy_config
from mosn_tars import Ret
from tars_fixtures import node_peers, tars_server  # noqa: F401 (pytest fixtures)
from tars_peers import SERVANT, call

OTHER_SERVANT = "Test.OtherServer.OtherObj"
"""No route matches it."""


def config(port: int, upstream: int, protocol: str = "tars") -> dict:
    return rpc_proxy_config(port, protocol, [f"127.0.0.1:{upstream}"],
                            service=r"^Test\.EchoServer\.")


@pytest.fixture(scope="module")
def via_mosn(tmp_path_factory: pytest.TempPathFactory, tars_server: Peer) -> Iterator[int]:
    port = free_port()
    mosn = MosnProcess(config(port, tars_server.port), tmp_path_factory.mktemp("mosn"))
    yield port
    mosn.stop()


def test_calls_through_mosn(via_mosn: int) -> None:
    results = call(via_mosn, count=40, concurrency=8)
    assert sorted(r["i"] for r in results) == list(range(40))
    for r in results:
        assert (r["ret"], r["out"]) == (len(f"hello {r['i']}"), f"hello {r['i']}")


def test_server_error_comes_back(via_mosn: int) -> None:
    [result] = call(via_mosn, function="fail")
    assert result["code"] == Ret.NO_FUNCTION


def test_no_route_is_no_servant(via_mosn: int) -> None:
    [result] = call(via_mosn, servant=OTHER_SERVANT)
    assert result["code"] == Ret.NO_SERVANT


def test_auto_detects_tars(tmp_path: Path, tars_server: Peer) -> None:
    port = free_port()
    mosn = MosnProcess(config(port, tars_server.port, "Auto"), tmp_path)
    try:
        results = call(port, count=4, concurrency=2)
        assert all(r.get("out") == f"hello {r['i']}" for r in results), results
    finally:
        mosn.stop()


def test_dead_upstream_is_adapter_null(tmp_path: Path, node_peers: None) -> None:
    port = free_port()
    mosn = MosnProcess(config(port, free_port()), tmp_path)
    try:
        [result] = call(port)
        assert result["code"] == Ret.ADAPTER_NULL
    finally:
        mosn.stop()
