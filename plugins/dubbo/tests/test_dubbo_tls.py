"""Dubbo over mutual TLS: a real consumer and provider (sofa-rpc-node with
dubbo-remoting, which has no TLS) with two mosn processes carrying the calls between
them over TLS, as sidecars do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mosn.testing import Peer
from mosn.testing.certs import rpc_tls_hop
from dubbo_fixtures import node_peers, provider  # noqa: F401 (fixtures)
from dubbo_peers import call


@pytest.fixture(scope="module")
def through_tls(tmp_path_factory: pytest.TempPathFactory, provider: Peer) -> Iterator[tuple]:
    port, processes = rpc_tls_hop("dubbo", provider.port, tmp_path_factory.mktemp("tls"))
    yield port, processes
    for process in processes:
        process.stop()


def test_call_over_tls(through_tls: tuple) -> None:
    port, (server_side, client_side) = through_tls
    assert call("sofa", port, "echo", "over tls") == {"ok": True, "result": "over tls"}
    assert client_side.stats()["cluster.backend.ssl.handshake"] >= 1
    assert server_side.stats()["listener.rpc.ssl.handshake"] >= 1
