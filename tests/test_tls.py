"""TLS end to end: real clients (curl, openssl s_client, httpx, h2load) and real
servers through mosn processes on 127.0.0.1, certificates made by the test."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from cryptography import x509

from conftest import ROOT, tcp_proxy_config
from mosn.testing.certs import CertificateAuthority
from mosn.testing.process import free_port, serving

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
DEADLINE = 10.0
"""Seconds a test waits for a condition (a stat, a log line) on a loaded machine."""
SPIFFE_FRONTEND = "spiffe://cluster.local/ns/default/sa/frontend"
SPIFFE_OTHER = "spiffe://cluster.local/ns/default/sa/other"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA, a server certificate (localhost, 127.0.0.1), a client certificate with a
    SPIFFE id, one with another id, and a client certificate from another CA."""
    d = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority()
    other_ca = CertificateAuthority("another CA")
    return {
        "dir": d,
        "ca": ca,
        "server": ca.issue(dns=["localhost"], ips=["127.0.0.1"]).write(d / "server"),
        "client": ca.issue(uris=[SPIFFE_FRONTEND]).write(d / "client"),
        "other_client": ca.issue(uris=[SPIFFE_OTHER]).write(d / "other"),
        "stranger": other_ca.issue(uris=[SPIFFE_FRONTEND]).write(d / "stranger"),
    }


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    with serving(lambda port: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port),
                               "--name", "blue"]) as port:
        yield port


def server_tls(pki: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"status": True, "cert_chain": pki["server"]["cert"],
            "private_key": pki["server"]["key"], **extra}


def http_config(port: int, backend: int, tls: dict[str, Any] | None = None, *,
                routes: list[dict[str, Any]] | None = None, listener: dict[str, Any] | None = None,
                downstream: str = "Http1", clusters: list[dict[str, Any]] | None = None,
                tls_set: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    chain: dict[str, Any] = {"filters": [{"type": "proxy", "config": {
        "downstream_protocol": downstream, "upstream_protocol": "Http1",
        "router_config_name": "main"}}]}
    if tls is not None:
        chain["tls_context"] = tls
    if tls_set is not None:
        chain["tls_context_set"] = tls_set
    return {
        "servers": [{
            "graceful_timeout": "1s",
            "routers": [{"router_config_name": "main", "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routers": routes or [{"match": {"prefix": "/"},
                                       "route": {"cluster_name": "blue"}}]}]}],
            "listeners": [{"name": "https", "address": f"127.0.0.1:{port}",
                           "filter_chains": [chain], **(listener or {})}],
        }],
        "cluster_manager": {"clusters": clusters or [
            {"name": "blue", "hosts": [{"address": f"127.0.0.1:{backend}"}]}]},
    }


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args],
                          capture_output=True, text=True, check=False)


def s_client(port: int, *args: str, data: bytes = b"") -> str:
    done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
                          input=data, capture_output=True, timeout=20, check=False)
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def wait_stat(mosn: Any, name: str, at_least: int = 1) -> dict[str, int]:
    deadline = time.monotonic() + DEADLINE
    while True:
        stats = mosn.stats()
        if stats.get(name, 0) >= at_least or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def wait_log(mosn: Any, pattern: str) -> str:
    deadline = time.monotonic() + DEADLINE
    while True:
        out = mosn.output()
        if re.search(pattern, out) or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def info_level(config: dict[str, Any]) -> dict[str, Any]:
    config["servers"][0]["default_log_level"] = "INFO"
    return config


# -- HTTPS, ALPN, clients --------------------------------------------------------------------


def test_https_with_curl_and_httpx(start_mosn, pki, backend):
    port = free_port()
    mosn = start_mosn(http_config(port, backend, server_tls(pki)))
    done = curl("--cacert", pki["server"]["ca"], f"https://localhost:{port}/echo")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["server"] == "blue"
    with httpx.Client(verify=ssl.create_default_context(cafile=pki["server"]["ca"])) as client:
        assert client.get(f"https://127.0.0.1:{port}/echo").json()["server"] == "blue"
    stats = wait_stat(mosn, "listener.https.ssl.handshake", 2)
    assert stats["listener.https.ssl.handshake"] == 2
    assert stats["listener.https.ssl.versions.TLSv1.3"] == 2


def test_alpn_chooses_http2_or_http1_under_auto(start_mosn, pki, backend):
    port = free_port()
    start_mosn(http_config(port, backend, server_tls(pki, alpn="h2,http/1.1"), downstream="Auto"))
    url = f"https://localhost:{port}/echo"
    h2 = curl("-v", "--http2", "--cacert", pki["server"]["ca"], url)
    assert "ALPN: server accepted h2" in h2.stderr and "< HTTP/2 200" in h2.stderr, h2.stderr
    h1 = curl("-v", "--http1.1", "--cacert", pki["server"]["ca"], url)
    assert "ALPN: server accepted http/1.1" in h1.stderr and "< HTTP/1.1 200" in h1.stderr
    ctx = ssl.create_default_context(cafile=pki["server"]["ca"])
    with httpx.Client(http2=True, verify=ctx) as c:
        response = c.get(url)
        assert response.http_version == "HTTP/2" and response.json()["server"] == "blue"


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed")
def test_h2load_over_tls(start_mosn, pki, backend):
    port = free_port()
    mosn = start_mosn(http_config(port, backend, server_tls(pki, alpn="h2"), downstream="Auto"))
    done = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "10",
                           f"https://127.0.0.1:{port}/echo"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "200 succeeded" in done.stdout and "Application protocol: h2" in done.stdout, done.stdout
    assert mosn.stats()["listener.https.downstream_rq_2xx"] == 200


def test_versions_ciphers_curves_and_alpn_with_s_client(start_mosn, pki, backend):
    port = free_port()
    start_mosn(http_config(port, backend, server_tls(
        pki, max_version="TLSv1_2", alpn="http/1.1", ecdh_curves="P384",
        cipher_suites="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-WITH-CHACHA20-POLY1305")))
    out = s_client(port, "-servername", "localhost", "-alpn", "http/1.1",
                   "-CAfile", pki["server"]["ca"], "-verify_return_error")
    assert "Protocol  : TLSv1.2" in out and "ALPN protocol: http/1.1" in out, out
    assert "Verify return code: 0 (ok)" in out
    assert "Cipher    : ECDHE-ECDSA-AES128-GCM-SHA256" in out
    assert re.search(r"Server Temp Key: ECDH, (secp384r1|P-384)", out), out
    other = s_client(port, "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", "-tls1_2")
    assert "Cipher    : 0000" in other or "handshake failure" in other, other
    refused = s_client(port, "-tls1_3")
    assert "Protocol  : TLSv1.3" not in refused and "alert" in refused.lower()


def test_sni_chooses_among_certificates(start_mosn, pki, backend):
    ca: CertificateAuthority = pki["ca"]
    d: Path = pki["dir"]
    default = ca.issue(dns=["default.example"], common_name="default").write(d / "sni-default")
    exact = ca.issue(dns=["api.example.com"], common_name="exact").write(d / "sni-exact")
    wildcard = ca.issue(dns=["*.apps.example.com"], common_name="wild").write(d / "sni-wild")
    port = free_port()
    start_mosn(http_config(port, backend, tls_set=[
        {"status": True, "cert_chain": c["cert"], "private_key": c["key"]}
        for c in (default, exact, wildcard)]))

    def served(name: str) -> str:
        out = s_client(port, "-servername", name)
        return re.search(r"subject=CN ?= ?(\S+)", out).group(1)  # type: ignore[union-attr]

    assert served("api.example.com") == "exact"
    assert served("shop.apps.example.com") == "wild"
    assert served("deep.shop.apps.example.com") == "default"  # a wildcard is one label
    assert served("unknown.example.org") == "default"


# -- mTLS and identity ----------------------------------------------------------------------


def mtls(pki: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return server_tls(pki, ca_cert=pki["server"]["ca"], verify_client=True,
                      require_client_cert=True, **extra)


def test_client_certificate_required(start_mosn, pki, backend):
    port = free_port()
    mosn = start_mosn(info_level(http_config(port, backend, mtls(pki))))
    url = f"https://localhost:{port}/echo"
    ca = pki["server"]["ca"]
    ok = curl("--cacert", ca, "--cert", pki["client"]["cert"], "--key", pki["client"]["key"], url)
    assert ok.returncode == 0 and json.loads(ok.stdout)["server"] == "blue", ok.stderr
    assert curl("--cacert", ca, url).returncode != 0
    stranger = curl("--cacert", ca, "--cert", pki["stranger"]["cert"], "--key",
                    pki["stranger"]["key"], url)
    assert stranger.returncode != 0
    expired = pki["ca"].issue(uris=[SPIFFE_FRONTEND], not_before_days=-10,
                              not_after_days=-1).write(pki["dir"] / "expired-client")
    assert curl("--cacert", ca, "--cert", expired["cert"], "--key", expired["key"],
                url).returncode != 0
    # a client that trusts another CA refuses mosn's certificate: mosn reads its alert
    assert curl("--cacert", pki["stranger"]["ca"], url).returncode != 0
    stats = wait_stat(mosn, "listener.https.ssl.fail_verify_error", 2)
    assert stats["listener.https.ssl.fail_verify_no_cert"] == 1
    assert stats["listener.https.ssl.fail_verify_error"] == 2
    assert wait_stat(mosn, "listener.https.ssl.connection_error")[
        "listener.https.ssl.connection_error"] == 1
    out = wait_log(mosn, "UNKNOWN_CA")
    assert "TLS handshake failed: no client certificate" in out
    assert "peer certificate not verified: certificate has expired" in out
    assert "TLS handshake failed: TLSV1_ALERT_UNKNOWN_CA" in out
    assert re.search(r"peer certificate not verified: .*unknown ca|unable to get local issuer",
                     out, re.IGNORECASE), out


def test_optional_client_certificate(start_mosn, pki, backend):
    port = free_port()
    tls = server_tls(pki, ca_cert=pki["server"]["ca"], verify_client=True)
    start_mosn(http_config(port, backend, tls))
    url = f"https://localhost:{port}/echo"
    assert curl("--cacert", pki["server"]["ca"], url).returncode == 0
    assert curl("--cacert", pki["server"]["ca"], "--cert", pki["client"]["cert"], "--key",
                pki["client"]["key"], url).returncode == 0


def test_spiffe_id_matched_routed_and_logged(start_mosn, pki, backend, tmp_path):
    """A SAN matcher admits the frontend and the other workload; a route sends the
    frontend (by its SPIFFE id) to one cluster and the other to another; the access
    log shows the id."""
    with serving(lambda p: [sys.executable, str(HTTP_UPSTREAM), "--port", str(p),
                            "--name", "green"]) as green:
        port = free_port()
        log_path = tmp_path / "access.log"
        tls = mtls(pki, match_typed_subject_alt_names=[
            {"san_type": "URI", "matcher": {"prefix": "spiffe://cluster.local/ns/default/"}}])
        config = http_config(
            port, backend, tls,
            routes=[{"match": {"prefix": "/", "headers": [
                        {"name": "%downstream_peer_uri_san%", "value": SPIFFE_FRONTEND}]},
                     "route": {"cluster_name": "blue"}},
                    {"match": {"prefix": "/"}, "route": {"cluster_name": "green"}}],
            listener={"access_logs": [{"log_path": str(log_path), "log_format":
                      "%downstream_peer_uri_san% %downstream_tls_version% "
                      "%requested_server_name% %upstream_cluster%"}]},
            clusters=[{"name": "blue", "hosts": [{"address": f"127.0.0.1:{backend}"}]},
                      {"name": "green", "hosts": [{"address": f"127.0.0.1:{green}"}]}])
        start_mosn(config)
        url = f"https://localhost:{port}/echo"

        def call(who: str) -> str:
            done = curl("--cacert", pki["server"]["ca"], "--cert", pki[who]["cert"],
                        "--key", pki[who]["key"], url)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)["server"]

        assert call("client") == "blue"
        assert call("other_client") == "green"
        deadline = time.monotonic() + DEADLINE
        while log_path.read_text().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log_path.read_text().splitlines() == [
            f"{SPIFFE_FRONTEND} TLSv1.3 localhost blue", f"{SPIFFE_OTHER} TLSv1.3 localhost green"]


def test_san_mismatch_is_refused_and_counted(start_mosn, pki, backend):
    port = free_port()
    tls = mtls(pki, match_typed_subject_alt_names=[
        {"san_type": "URI", "matcher": {"exact": SPIFFE_FRONTEND}}])
    mosn = start_mosn(info_level(http_config(port, backend, tls)))
    url = f"https://localhost:{port}/echo"
    ca = pki["server"]["ca"]
    assert curl("--cacert", ca, "--cert", pki["client"]["cert"], "--key", pki["client"]["key"],
                url).returncode == 0
    assert curl("--cacert", ca, "--cert", pki["other_client"]["cert"], "--key",
                pki["other_client"]["key"], url).returncode != 0
    assert wait_stat(mosn, "listener.https.ssl.fail_verify_san")[
        "listener.https.ssl.fail_verify_san"] == 1
    assert f"no subject alt name matches (has URI:{SPIFFE_OTHER})" in wait_log(mosn, "alt name")


# -- the inspector and bad input -----------------------------------------------------------


def test_inspector_serves_tls_and_plaintext_on_one_port(start_mosn, pki, backend):
    port = free_port()
    start_mosn(http_config(port, backend, server_tls(pki), listener={"inspector": True}))
    tls = curl("--cacert", pki["server"]["ca"], f"https://localhost:{port}/echo")
    plain = curl(f"http://127.0.0.1:{port}/echo")
    assert json.loads(tls.stdout)["server"] == json.loads(plain.stdout)["server"] == "blue"


def test_bad_clients_are_closed_counted_and_logged_others_untouched(start_mosn, pki, backend):
    port = free_port()
    tls = server_tls(pki, handshake_timeout="1s")
    mosn = start_mosn(info_level(http_config(port, backend, tls)))
    ctx = ssl.create_default_context(cafile=pki["server"]["ca"])
    # A good client holds its keep-alive connection through all of it.
    with httpx.Client(verify=ctx) as good:
        url = f"https://localhost:{port}/echo"
        assert good.get(url).status_code == 200
        # plaintext HTTP on a TLS-only port
        assert curl(f"http://127.0.0.1:{port}/echo").returncode != 0
        # garbage that starts like a handshake record
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            s.settimeout(DEADLINE)
            assert s.recv(100).startswith(b"\x15")  # an alert, then the close
        # a truncated ClientHello, then the client goes away
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(_client_hello()[:40])
            s.shutdown(socket.SHUT_WR)
            s.settimeout(DEADLINE)
            assert s.recv(100) == b""
        # a client that stops mid-handshake
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(_client_hello()[:40])
            s.settimeout(DEADLINE)
            assert s.recv(100) == b""  # closed by the handshake timeout
        assert good.get(url).status_code == 200
    stats = wait_stat(mosn, "listener.https.ssl.handshake_timeout")
    assert stats["listener.https.ssl.handshake_timeout"] == 1
    assert stats["listener.https.ssl.connection_error"] == 3
    assert stats["listener.https.ssl.handshake"] == 1
    out = mosn.output()
    assert "TLS handshake timed out" in out
    assert "the peer closed the connection during it" in out
    assert re.search(r"TLS handshake failed: (HTTP_REQUEST|WRONG_VERSION_NUMBER)", out), out


def _client_hello() -> bytes:
    """A real ClientHello, from Python's ssl over memory BIOs."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


# -- upstream TLS ------------------------------------------------------------------------------


def test_tcp_proxy_over_tls_both_ways(start_mosn, pki, echo_server):
    """client -TLS-> mosn A (tcp_proxy) -TLS-> mosn B (tcp_proxy) -> echo; session
    resumption upstream on the second connection."""
    b_port, a_port = free_port(), free_port()
    b = tcp_proxy_config(b_port, [f"127.0.0.1:{echo_server}"])
    b["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = mtls(pki)
    b["servers"][0]["listeners"][0]["name"] = "b"
    a = tcp_proxy_config(a_port, [f"127.0.0.1:{b_port}"], cluster_extra={"tls_context": {
        "status": True, "ca_cert": pki["server"]["ca"], "cert_chain": pki["client"]["cert"],
        "private_key": pki["client"]["key"], "server_name": "localhost"}})
    mosn_b = start_mosn(b)
    mosn_a = start_mosn(a)
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", a_port)) as s:
            s.sendall(b"ping over tls\n")
            s.settimeout(DEADLINE)
            got = b""
            while len(got) < 14:
                got += s.recv(100)
            assert got == b"ping over tls\n"
    stats = wait_stat(mosn_a, "cluster.backend.ssl.handshake", 2)
    assert stats["cluster.backend.ssl.handshake"] == 2
    assert wait_stat(mosn_b, "listener.b.ssl.session_reused")["listener.b.ssl.session_reused"] == 1
    assert mosn_a.stats()["cluster.backend.ssl.session_reused"] == 1


def test_upstream_certificate_problems_fail_the_connect(start_mosn, pki, backend):
    """An upstream presenting an expired, a not-yet-valid, or a wrongly named
    certificate: the connect fails (503, as Envoy answers a connect failure), counted and
    logged."""
    ca: CertificateAuthority = pki["ca"]
    d: Path = pki["dir"]
    cases = {
        "expired": ca.issue(dns=["localhost"], not_before_days=-30, not_after_days=-1),
        "future": ca.issue(dns=["localhost"], not_before_days=10, not_after_days=20),
        "wrong_name": ca.issue(dns=["elsewhere.example"]),
    }
    for name, issued in cases.items():
        paths = issued.write(d / f"upstream-{name}")
        up_port, port = free_port(), free_port()
        start_mosn(http_config(up_port, backend, {"status": True, "cert_chain": paths["cert"],
                                                  "private_key": paths["key"]}))
        front = start_mosn(info_level(http_config(port, backend, clusters=[{
            "name": "blue", "hosts": [{"address": f"127.0.0.1:{up_port}"}],
            "tls_context": {"status": True, "ca_cert": pki["server"]["ca"],
                            "server_name": "localhost"}}])))
        done = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/echo")
        assert done.stdout == "503", (name, done.stdout)
        stats = wait_stat(front, "cluster.blue.ssl.fail_verify_error")
        assert stats["cluster.blue.ssl.fail_verify_error"] == 1, name
        assert stats["cluster.blue.upstream_cx_connect_fail"] >= 1
        expected = {"expired": "certificate has expired", "future": "certificate is not yet valid",
                    "wrong_name": "Hostname mismatch"}[name]
        assert expected in wait_log(front, expected), name


def test_tls_health_check(start_mosn, pki, backend):
    """A TLS cluster's health check probes over TLS: healthy against a TLS upstream
    it trusts, unhealthy when its CA is another."""
    up_port = free_port()
    start_mosn(http_config(up_port, backend, server_tls(pki)))
    other_ca = pki["stranger"]["ca"]
    hc = {"protocol": "http", "interval": "0.2s", "timeout": "2s", "initial_delay_seconds": "0.1s",
          "check_config": {"http_check_config": {"path": "/status/200"}}}
    port = free_port()
    mosn = start_mosn(http_config(port, backend, clusters=[
        {"name": "blue", "hosts": [{"address": f"127.0.0.1:{up_port}"}], "health_check": hc,
         "tls_context": {"status": True, "ca_cert": pki["server"]["ca"],
                         "server_name": "localhost"}},
        {"name": "distrust", "hosts": [{"address": f"127.0.0.1:{up_port}"}], "health_check": hc,
         "tls_context": {"status": True, "ca_cert": other_ca, "server_name": "localhost"}}]))
    stats = wait_stat(mosn, "cluster.distrust.health_check.network_failure")
    stats = wait_stat(mosn, "cluster.blue.health_check.success", 2)
    assert stats["cluster.blue.health_check.success"] >= 2
    assert stats["cluster.blue.health_check.healthy"] == 1
    assert stats["cluster.distrust.health_check.network_failure"] >= 1
    assert stats["cluster.distrust.health_check.success"] == 0


def test_strict_dns_cluster_over_tls_verifies_the_host_name(start_mosn, pki, backend):
    """A discovered host is connected to with its cluster's TLS, and its DNS name is
    the name its certificate must carry."""
    up_port, port = free_port(), free_port()
    start_mosn(http_config(up_port, backend, server_tls(pki)))
    mosn = start_mosn(http_config(port, backend, clusters=[{
        "name": "blue", "type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY",
        "hosts": [{"address": f"localhost:{up_port}"}],
        "tls_context": {"status": True, "ca_cert": pki["server"]["ca"]}}]))
    done = curl(f"http://127.0.0.1:{port}/echo")
    assert json.loads(done.stdout)["server"] == "blue", done.stdout + done.stderr
    assert mosn.stats()["cluster.blue.ssl.handshake"] == 1


def test_tls_disable_per_host(start_mosn, pki, backend):
    """A host with tls_disable gets plaintext though its cluster has TLS."""
    port = free_port()
    start_mosn(http_config(port, backend, clusters=[{
        "name": "blue", "hosts": [{"address": f"127.0.0.1:{backend}", "tls_disable": True}],
        "tls_context": {"status": True, "ca_cert": pki["server"]["ca"]}}]))
    done = curl(f"http://127.0.0.1:{port}/echo")
    assert json.loads(done.stdout)["server"] == "blue"


# -- rotation, workers, resumption, /certs -------------------------------------------------------


def _served_serial(port: int, ca: str) -> int:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def test_rotation_under_load_with_workers(start_mosn, pki, backend, tmp_path):
    """Swap the certificate files while requests run: every request succeeds; new
    handshakes present the new certificate on every worker; /certs shows it."""
    ca: CertificateAuthority = pki["ca"]
    first = ca.issue(dns=["localhost"]).write(tmp_path / "live")
    port = free_port()
    mosn = start_mosn(http_config(port, backend, {
        "status": True, "cert_chain": first["cert"], "private_key": first["key"]}),
        "--workers", "2")
    old_serial = _served_serial(port, first["ca"])
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def load() -> None:
        ctx = ssl.create_default_context(cafile=first["ca"])
        while not done.is_set():
            try:  # a new connection (and handshake) each time
                with httpx.Client(verify=ctx) as c:
                    if c.get(f"https://localhost:{port}/echo").status_code != 200:
                        failures.append("status")
                count[0] += 1
            except Exception as exc:  # noqa: BLE001 (any failure counts)
                failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)  # let requests run before the swap
        second = ca.issue(dns=["localhost"])
        tmp_key = Path(first["key"] + ".new")
        tmp_cert = Path(first["cert"] + ".new")
        tmp_key.write_bytes(second.key_pem)
        tmp_cert.write_bytes(second.cert_pem)
        tmp_cert.replace(first["cert"])
        tmp_key.replace(first["key"])
        new_serial = x509.load_pem_x509_certificate(second.cert_pem).serial_number
        deadline = time.monotonic() + DEADLINE
        seen: set[int] = set()
        while time.monotonic() < deadline:
            seen = {_served_serial(port, first["ca"]) for _ in range(12)}
            if seen == {new_serial}:
                break
            time.sleep(0.1)
        assert seen == {new_serial}, (old_serial, new_serial, seen)
        before = count[0]
        while count[0] < before + 20 and time.monotonic() < deadline + DEADLINE:
            time.sleep(0.05)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    assert count[0] > 20
    certs = mosn.admin("/certs").json()["certificates"]
    assert certs[0]["cert_chain"][0]["serial_number"] == format(new_serial, "x")
    assert certs[0]["cert_chain"][0]["subject_alt_names"] == [{"dns": "localhost"}]
    assert int(certs[0]["cert_chain"][0]["days_until_expiration"]) >= 363
    assert "certificates reloaded" in mosn.output()


def test_session_resumption_across_workers(start_mosn, pki, backend, tmp_path):
    """Tickets issued by one worker resume on whichever worker accepts the next
    connection: the workers share the ticket keys."""
    port = free_port()
    mosn = start_mosn(http_config(port, backend, server_tls(pki, max_version="TLSv1_2")),
                      "--workers", "2")
    session = tmp_path / "session.pem"
    first = s_client(port, "-sess_out", str(session), data=b"")
    assert "New, TLSv1.2" in first, first
    reused = sum("Reused, TLSv1.2" in s_client(port, "-sess_in", str(session), data=b"")
                 for _ in range(8))
    assert reused == 8
    assert wait_stat(mosn, "listener.https.ssl.session_reused", 8)[
        "listener.https.ssl.session_reused"] == 8


def test_listener_filters_timeout_closes_a_silent_client(start_mosn, pki, backend):
    """The inspector waits for a first byte; a client that sends none is closed after
    listener_filters_timeout and counted."""
    port = free_port()
    mosn = start_mosn(http_config(port, backend, server_tls(pki), listener={
        "listener_filters": [{"type": "tls_inspector"}], "listener_filters_timeout": "0.5s"}))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(DEADLINE)
        assert s.recv(100) == b""
    assert mosn.stats()["listener.https.downstream_pre_cx_timeout"] == 1
    ok = curl("--cacert", pki["server"]["ca"], f"https://localhost:{port}/echo")
    assert json.loads(ok.stdout)["server"] == "blue"  # listener_filters, no inspector: TLS
    assert curl(f"http://127.0.0.1:{port}/echo").returncode != 0
