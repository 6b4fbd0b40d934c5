"""gRPC over TLS through mosn: grpcio clients with TLS and mutual-TLS credentials,
mosn choosing HTTP/2 by ALPN, and a grpcio server behind it that itself speaks TLS
(so mosn's upstream connection offers ALPN ``h2`` and presents its certificate)."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from mosn.testing.certs import CertificateAuthority
from mosn.testing.process import free_port

SERVICE = "test.Echo"
CALL_TIMEOUT = 10.0  # seconds a call may take on a loaded CI machine
CLIENT_ID = "spiffe://cluster.local/ns/default/sa/grpc-client"
MOSN_ID = "spiffe://cluster.local/ns/default/sa/mosn"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("grpc-pki")
    ca = CertificateAuthority()
    return {name: issued.write(d / name) for name, issued in {
        "mosn": ca.issue(dns=["localhost"], ips=["127.0.0.1"], uris=[MOSN_ID]),
        "backend": ca.issue(dns=["localhost"], ips=["127.0.0.1"]),
        "client": ca.issue(uris=[CLIENT_ID]),
    }.items()}


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


@pytest.fixture(scope="module")
def tls_backend(pki: dict[str, Any]) -> Iterator[int]:
    """A grpcio server on TLS that requires a client certificate (mosn's)."""
    def unary(request: bytes, context: Any) -> bytes:
        return b"tls:" + request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {"Unary": grpc.unary_unary_rpc_method_handler(unary)}),))
    credentials = grpc.ssl_server_credentials(
        [(_read(pki["backend"]["key"]), _read(pki["backend"]["cert"]))],
        root_certificates=_read(pki["backend"]["ca"]), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port
    server.stop(0)


def _config(port: int, backend: int, pki: dict[str, Any], **listener_tls: Any) -> dict[str, Any]:
    return {"servers": [{
        "routers": [{"router_config_name": "r", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "grpc"}}]}]}],
        "listeners": [{"name": "grpc", "address": f"127.0.0.1:{port}", "filter_chains": [{
            "tls_context": {"status": True, "cert_chain": pki["mosn"]["cert"],
                            "private_key": pki["mosn"]["key"], "alpn": "h2", **listener_tls},
            "filters": [{"type": "proxy", "config": {"downstream_protocol": "Auto",
                                                     "upstream_protocol": "Http2",
                                                     "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [{
            "name": "grpc", "hosts": [{"address": f"127.0.0.1:{backend}"}],
            "tls_context": {"status": True, "ca_cert": pki["mosn"]["ca"],
                            "cert_chain": pki["mosn"]["cert"], "private_key": pki["mosn"]["key"],
                            "server_name": "localhost"}}]}}


def _call(port: int, credentials: grpc.ChannelCredentials) -> bytes:
    options = [("grpc.enable_http_proxy", 0), ("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        return channel.unary_unary(f"/{SERVICE}/Unary")(b"hi", timeout=CALL_TIMEOUT)


def test_grpc_over_tls(start_mosn, pki, tls_backend):
    port = free_port()
    mosn = start_mosn(_config(port, tls_backend, pki))
    assert _call(port, grpc.ssl_channel_credentials(_read(pki["mosn"]["ca"]))) == b"tls:hi"
    stats = mosn.stats()
    assert stats["listener.grpc.ssl.handshake"] == 1
    assert stats["cluster.grpc.ssl.handshake"] == 1


def test_grpc_with_mutual_tls(start_mosn, pki, tls_backend):
    port = free_port()
    mosn = start_mosn(_config(
        port, tls_backend, pki, ca_cert=pki["mosn"]["ca"], verify_client=True,
        require_client_cert=True,
        match_typed_subject_alt_names=[{"san_type": "URI", "matcher": {"exact": CLIENT_ID}}]))
    with_cert = grpc.ssl_channel_credentials(
        _read(pki["mosn"]["ca"]), _read(pki["client"]["key"]), _read(pki["client"]["cert"]))
    assert _call(port, with_cert) == b"tls:hi"
    with pytest.raises(grpc.RpcError) as refused:
        _call(port, grpc.ssl_channel_credentials(_read(pki["mosn"]["ca"])))
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert mosn.stats()["listener.grpc.ssl.fail_verify_no_cert"] >= 1
