"""SOFARPC over mutual TLS: sofa-rpc-node's client and server speak plain bolt (the
Node peers have no TLS of their own), two mosn processes carry the calls between
them over TLS, as sidecars do."""

from __future__ import annotations

from pathlib import Path

from mosn.testing import Peer
from mosn.testing.tls import rpc_tls_hop
from .sofarpc_peers import hessian_string, rpc_call


def test_hessian2_and_protobuf_calls_over_tls(tmp_path: Path, node_server: Peer) -> None:
    with rpc_tls_hop("bolt", node_server.port, tmp_path) as (port, server_side, client_side):
        assert rpc_call(port, "hessian2", "echo", [hessian_string("over tls")]) == {
            "ok": True, "result": "over tls"}
        result = rpc_call(port, "protobuf", "echoObj", [{"name": "mosn", "group": "B"}])
        assert result == {"ok": True, "result": {"code": 200,
                                                 "message": "hello mosn, you are in B"}}
        assert client_side.stats()["cluster.backend.ssl.handshake"] >= 1
        assert server_side.stats()["listener.rpc.ssl.handshake"] >= 1
