"""Dubbo over mutual TLS: a real consumer and provider (sofa-rpc-node with
dubbo-remoting, which has no TLS) with two mosn processes carrying the calls between
them over TLS, as sidecars do."""

from __future__ import annotations

from pathlib import Path

from mosn.testing import Peer
from mosn.testing.tls import rpc_tls_hop
from dubbo_fixtures import node_peers, provider  # noqa: F401 (fixtures)
from dubbo_peers import call


def test_call_over_tls(tmp_path: Path, provider: Peer) -> None:
    with rpc_tls_hop("dubbo", provider.port, tmp_path) as (port, server_side, client_side):
        assert call("sofa", port, "echo", "over tls") == {"ok": True, "result": "over tls"}
        assert client_side.stats()["cluster.backend.ssl.handshake"] >= 1
        assert server_side.stats()["listener.rpc.ssl.handshake"] >= 1
