"""RBAC (Envoy's policies, HTTP and TCP) and MOSN's ``ip_access`` in a real mosn: curl
(with client certificates for SPIFFE principals), grpcio, the kit's RPC clients and
a TCP echo upstream."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from grpc_echo import SERVICE, grpc_echo
from http_scripted import proxy_config
from mosn.config import ConfigError, validate
from mosn.rpc.tools import codec_named
from mosn.testing import (
    FilterCase,
    HttpBackend,
    MockServer,
    StreamFilterConformance,
    free_port,
    rpc_request,
)
from mosn.testing.certs import CertificateAuthority
from mosn.testing.process import rpc_proxy_config
from conftest import tcp_proxy_config

SAMPLES = Path(__file__).parent / "data" / "mosn_samples"
FRONTEND = "spiffe://cluster.local/ns/default/sa/frontend"
OTHER = "spiffe://cluster.local/ns/default/sa/other"
CURL_TIMEOUT = "10"
GRPC_TIMEOUT = 10.0
IO_TIMEOUT = 10.0


def rbac(rules: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    config = dict(extra)
    if rules is not None:
        config["rules"] = rules
    return {"stream_filters": [{"type": "rbac", "config": config}]}


def policy(permissions: list[dict[str, Any]], principals: list[dict[str, Any]]) -> dict[str, Any]:
    return {"permissions": permissions, "principals": principals}


ANY = [{"any": True}]


def curl(port: int, path: str = "/", *args: str, scheme: str = "http",
         host: str = "127.0.0.1") -> tuple[int, str]:
    done = subprocess.run(["curl", "-sS", "-m", CURL_TIMEOUT, "-o", "-", "-w", "\n%{http_code}",
                           *args, f"{scheme}://{host}:{port}{path}"],
                          capture_output=True, text=True, check=True)
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    server = HttpBackend()
    yield int(server.address.rpartition(":")[2])
    server.stop()


def test_allow_by_path_and_method(start_mosn, backend) -> None:
    port = free_port()
    start_mosn(proxy_config(port, backend, listener=rbac({"action": "ALLOW", "policies": {
        "read-public": policy([{"and_rules": {"rules": [
            {"url_path": {"path": {"prefix": "/public/"}}},
            {"header": {"name": ":method", "exact_match": "GET"}}]}}], ANY)}})))
    assert curl(port, "/public/a")[0] == 200
    assert curl(port, "/public/a?x=/private")[0] == 200
    assert curl(port, "/private") == (403, "RBAC: access denied")
    assert curl(port, "/public/a", "-X", "DELETE")[0] == 403


def test_deny_by_header_names_the_policy(start_mosn, backend) -> None:
    port = free_port()
    mosn = start_mosn(proxy_config(port, backend, listener=rbac({"action": "DENY", "policies": {
        "no-bots": policy(ANY, [{"header": {"name": "user-agent",
                                            "string_match": {"prefix": "bot"}}}])}},
        stat_prefix="edge")))
    assert curl(port, "/", "-A", "bot/1.0") == (403, "RBAC: access denied (policy no-bots)")
    assert curl(port, "/", "-A", "person")[0] == 200
    stats = mosn.wait_stat("edge.rbac.denied", 1)
    assert stats["edge.rbac.allowed"] == 1


def test_source_ip_principal(start_mosn, backend) -> None:
    port = free_port()
    start_mosn(proxy_config(port, backend, listener=rbac({"action": "ALLOW", "policies": {
        "inside": policy(ANY, [{"source_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}])}})))
    assert curl(port)[0] == 403
    port2 = free_port()
    start_mosn(proxy_config(port2, backend, listener=rbac({"action": "ALLOW", "policies": {
        "loopback": policy(ANY, [{"direct_remote_ip": {"address_prefix": "127.0.0.0",
                                                       "prefix_len": 8}}])}})))
    assert curl(port2)[0] == 200


def test_shadow_rules_count_and_never_refuse(start_mosn, backend) -> None:
    port = free_port()
    mosn = start_mosn(proxy_config(port, backend, listener=rbac(
        shadow_rules={"action": "DENY", "policies": {"all": policy(ANY, ANY)}})))
    assert [curl(port)[0] for _ in range(2)] == [200, 200]
    stats = mosn.wait_stat("rbac.shadow_denied", 2)
    assert stats["rbac.shadow_denied"] == 2


def test_a_route_overrides_or_turns_off_the_rules(start_mosn, backend) -> None:
    port = free_port()
    deny_all = {"action": "DENY", "policies": {"all": policy(ANY, ANY)}}
    routes = [
        {"match": {"prefix": "/health"}, "route": {"cluster_name": "up"},
         "per_filter_config": {"rbac": {}}},
        {"match": {"prefix": "/admin"}, "route": {"cluster_name": "up"},
         "per_filter_config": {"rbac": {"rbac": {"rules": {"action": "ALLOW", "policies": {
             "ops": policy(ANY, [{"header": {"name": "x-team", "exact_match": "ops"}}])}}}}}},
    ]
    start_mosn(proxy_config(port, backend, routes=routes, listener=rbac(deny_all)))
    assert curl(port, "/health")[0] == 200
    assert curl(port, "/admin", "-H", "x-team: ops")[0] == 200
    assert curl(port, "/admin", "-H", "x-team: dev")[0] == 403
    assert curl(port, "/other")[0] == 403


# -- SPIFFE principals over mTLS ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority()
    return {"server": ca.issue(dns=["localhost"], ips=["127.0.0.1"]).write(d / "server"),
            "frontend": ca.issue(uris=[FRONTEND]).write(d / "frontend"),
            "other": ca.issue(uris=[OTHER]).write(d / "other")}


def test_authenticated_spiffe_principal(start_mosn, backend, pki) -> None:
    port = free_port()
    config = proxy_config(port, backend, listener=rbac({"action": "ALLOW", "policies": {
        "frontend": policy(ANY, [{"authenticated": {"principal_name": {"exact": FRONTEND}}}])}}))
    config["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = {
        "status": True, "cert_chain": pki["server"]["cert"], "private_key": pki["server"]["key"],
        "ca_cert": pki["server"]["ca"], "verify_client": True, "require_client_cert": True}
    start_mosn(config)

    def call(who: str) -> int:
        return curl(port, "/", "--cacert", pki["server"]["ca"], "--cert", pki[who]["cert"],
                    "--key", pki[who]["key"], scheme="https", host="localhost")[0]

    assert call("frontend") == 200
    assert call("other") == 403


# -- gRPC ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_backend() -> Iterator[int]:
    with grpc_echo("Read", "Write") as port:
        yield port


def test_grpc_method_denied_is_permission_denied(start_mosn, grpc_backend) -> None:
    port = free_port()
    start_mosn(proxy_config(port, grpc_backend, downstream="Http2", upstream="Http2",
                            listener=rbac({"action": "DENY", "policies": {"no-writes": policy(
                                [{"rpc_method": {"exact": "Write"}}], ANY)}})))
    with grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        assert channel.unary_unary(f"/{SERVICE}/Read")(b"r", timeout=GRPC_TIMEOUT) == b"r"
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(f"/{SERVICE}/Write")(b"w", timeout=GRPC_TIMEOUT)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "RBAC: access denied" in refused.value.details()


# -- RPC -------------------------------------------------------------------------------------------


class TestRbacConformance(StreamFilterConformance):
    """Calls of the method ``secret`` are refused, by the RPC method (the RPC
    protocols) or by the ``method`` header (HTTP)."""

    filter_type = "rbac"
    filter_config = {"rules": {"action": "DENY", "policies": {"secret": {
        "permissions": [{"rpc_method": {"exact": "secret"}},
                        {"header": {"name": "method", "exact_match": "secret"}}],
        "principals": [{"any": True}]}}}}
    cases = (FilterCase("a call goes through"),
             FilterCase("a call of a denied method is refused", method="secret", status=403))


def test_a_refused_dubbo_call_says_why(start_mosn) -> None:
    """Dubbo has no "forbidden" status: a refused call gets SERVER_ERROR with the
    reason as its message."""
    from mosn_dubbo.frames import HEADER_SIZE
    from mosn_dubbo.hessian2 import Reader

    codec = codec_named("dubbo")
    upstream = MockServer(codec).start()
    try:
        port = free_port()
        config = rpc_proxy_config(port, "dubbo", [upstream.address])
        config["servers"][0]["listeners"][0].update(rbac({"action": "DENY", "policies": {
            "secret": policy([{"rpc_method": {"exact": "secret"}}], ANY)}}))
        start_mosn(config)
        ok = rpc_request(codec, port, "com.example.EchoService", "echo")
        refused = rpc_request(codec, port, "com.example.EchoService", "secret")
    finally:
        upstream.stop()
    assert ok.http_status == 200
    assert refused.status == codec.error_status(403, ())
    text = Reader(refused.frame.data, HEADER_SIZE).read_string()
    assert text.startswith("mosn: 403 RBAC: access denied (policy secret)"), text


# -- TCP -------------------------------------------------------------------------------------------


def echo_once(port: int) -> bytes:
    """What the echo upstream sent back through mosn; b"" when mosn closed the
    connection (with a reset, or before this side finished sending)."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        data = b""
        try:
            sock.sendall(b"ping")
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(4096):
                data += chunk
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                raise
        return data


def network_rbac(port: int, upstream: int, rules: dict[str, Any]) -> dict[str, Any]:
    config = tcp_proxy_config(port, [f"127.0.0.1:{upstream}"])
    chain = config["servers"][0]["listeners"][0]["filter_chains"][0]
    chain["filters"].insert(0, {"type": "rbac", "config": {"stat_prefix": "tcp.",
                                                           "rules": rules}})
    return config


def test_network_rbac_closes_a_refused_connection(start_mosn, echo_server) -> None:
    denied, allowed = free_port(), free_port()
    mosn = start_mosn(network_rbac(denied, echo_server, {"action": "DENY", "policies": {
        "loopback": policy([{"destination_port": denied}],
                           [{"source_ip": {"address_prefix": "127.0.0.1"}}])}}))
    start_mosn(network_rbac(allowed, echo_server, {"action": "DENY", "policies": {
        "elsewhere": policy(ANY, [{"source_ip": {"address_prefix": "10.0.0.0",
                                                 "prefix_len": 8}}])}}))
    assert echo_once(denied) == b""
    assert echo_once(allowed) == b"ping"
    assert mosn.wait_stat("tcp.rbac.denied", 1)["tcp.rbac.denied"] == 1


# -- MOSN's ip_access ------------------------------------------------------------------------------


def test_mosns_ipaccess_sample_blocks_loopback(start_mosn, backend) -> None:
    """MOSN's ``filter/ipaccess`` sample denies 127.0.0.1."""
    config = json.loads((SAMPLES / "filter" / "ipaccess" / "config.json").read_text())
    port = free_port()
    config["servers"][0]["listeners"][0]["address"] = f"127.0.0.1:{port}"
    config["cluster_manager"]["clusters"][0]["hosts"] = [{"address": f"127.0.0.1:{backend}"}]
    config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1",
                                                    "port_value": free_port()}
    start_mosn(config)
    assert curl(port)[0] == 403


def test_ip_access_allow_list_and_header(start_mosn, backend) -> None:
    port = free_port()
    start_mosn(proxy_config(port, backend, listener={"stream_filters": [{
        "type": "ip_access", "config": {"header": "x-real-ip", "default_action": "deny",
                                        "ips": [{"action": "allow",
                                                 "addrs": ["192.168.1.0/24", "127.0.0.1"]}]}}]}))
    assert curl(port)[0] == 200
    assert curl(port, "/", "-H", "x-real-ip: 192.168.1.7")[0] == 200
    assert curl(port, "/", "-H", "x-real-ip: 10.1.1.1")[0] == 403


# -- bad configs -----------------------------------------------------------------------------------


def test_bad_rules_are_refused_with_their_path() -> None:
    config = proxy_config(1, 2, listener=rbac({"action": "ALLOW", "policies": {"p": policy(
        [{"any": True, "destination_port": 80}],
        [{"source_ip": {"address_prefix": "not-an-ip"}}])}}))
    with pytest.raises(ConfigError) as exc:
        validate(config)
    base = "servers[0].listeners[0].stream_filters[0].config.rules.policies.p"
    errors = exc.value.errors
    assert any(e.startswith(f"{base}.permissions[0]") and "exactly one" in e
               for e in errors), errors
    assert any(e.startswith(f"{base}.principals[0].source_ip") for e in errors), errors
