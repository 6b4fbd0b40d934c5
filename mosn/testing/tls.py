"""Mutual TLS between two mosn processes, for peers that speak no TLS themselves."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from mosn.testing.certs import CertificateAuthority
from mosn.testing.process import MosnProcess, free_port, rpc_proxy_config


@contextlib.contextmanager
def rpc_tls_hop(protocol: str, upstream_port: int, workdir: Path,
                service: str = ".*") -> Iterator[tuple[int, Any, Any]]:
    """Two mosn processes for an RPC protocol with mutual TLS between them, the way
    a mesh carries a peer that speaks no TLS itself:
    client -> mosn (plaintext in, TLS out) -> mosn (TLS in, plaintext out) -> server.
    Yields the client side's port, the server side and the client side processes;
    stops them on leaving."""
    ca = CertificateAuthority()
    server = ca.issue(dns=["localhost"], ips=["127.0.0.1"]).write(workdir / "rpc-server")
    client = ca.issue(uris=["spiffe://cluster.local/ns/default/sa/rpc-client"]).write(
        workdir / "rpc-client")
    inner, outer = free_port(), free_port()
    server_side = rpc_proxy_config(inner, protocol, [f"127.0.0.1:{upstream_port}"],
                                   service=service)
    server_side["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = {
        "status": True, "cert_chain": server["cert"], "private_key": server["key"],
        "ca_cert": server["ca"], "verify_client": True, "require_client_cert": True}
    client_side = rpc_proxy_config(outer, protocol, [f"127.0.0.1:{inner}"], service=service,
                                   cluster={"tls_context": {
                                       "status": True, "ca_cert": client["ca"],
                                       "cert_chain": client["cert"],
                                       "private_key": client["key"],
                                       "server_name": "localhost"}})
    started = [MosnProcess(server_side, workdir / "server-side")]
    try:
        started.append(MosnProcess(client_side, workdir / "client-side"))
        yield outer, started[0], started[1]
    finally:
        for process in started:
            process.stop()
