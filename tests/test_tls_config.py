"""TLS config: MOSN's own TLS samples, what ``mosn validate`` refuses (with the path of
the field), and the pure pieces (the ClientHello reader, option names, SNI names)."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ROOT
from mosn.config import ConfigError, validate
from mosn.config.tls import TlsContextConfig
from mosn.testing.certs import CertificateAuthority
from mosn.testing.process import MosnProcess, free_port, serving
from mosn.tls import ServerTls, Verdict, inspect, name_matches
from mosn.tls.options import cipher_string, curve_name, tls_version

SAMPLES = Path(__file__).parent / "data" / "mosn_samples"
"""MOSN's examples/codes/http-sample TLS configs, unchanged (mosn/mosn 707d635b)."""
HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"


def mosn_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mosn", "validate", "-c", str(path)],
                          capture_output=True, text=True, check=False)


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    """MOSN's layout: http-sample/*.json beside certs/{ca,cert,key}.pem (made here; the
    client names the server 127.0.0.1 and presents the same certificate)."""
    ca = CertificateAuthority()
    issued = ca.issue(ips=["127.0.0.1"], dns=["localhost"])
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(issued.ca_pem)
    (certs / "cert.pem").write_bytes(issued.cert_pem)
    (certs / "key.pem").write_bytes(issued.key_pem)
    sample = tmp_path / "http-sample"
    sample.mkdir()
    for name in ("tls_server_config.json", "tls_client_config.json"):
        (sample / name).write_bytes((SAMPLES / "http-sample" / name).read_bytes())
    return sample


def test_mosn_http_sample_tls_configs_load_unchanged(sample_tree: Path) -> None:
    for name in ("tls_server_config.json", "tls_client_config.json"):
        done = mosn_validate(sample_tree / name)
        assert done.returncode == 0, done.stdout + done.stderr


def test_mosn_http_sample_client_and_server_work_together(sample_tree: Path,
                                                         tmp_path: Path) -> None:
    """The client side originates TLS (its certificate, server_name 127.0.0.1) to the
    server side, which requires and verifies it. Only the addresses change: the
    samples' fixed ports (2045, 2046, 8080, admin 34901/34902) may be taken on a
    shared machine, so each is swapped for a free one; every TLS field is as shipped."""
    with serving(lambda p: [sys.executable, str(HTTP_UPSTREAM), "--port", str(p),
                            "--name", "sample"]) as backend:
        ports = {"2045": free_port(), "2046": free_port(), "8080": backend}

        def moved(name: str) -> dict[str, Any]:
            text = (sample_tree / name).read_text()
            for old, new in ports.items():
                text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
            config = json.loads(text)
            config["admin"] = {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": free_port()}}}
            return config

        server = client = None
        try:
            # Written beside the samples, so their relative certificate paths resolve
            # as MOSN's do (against the config file's directory).
            server = MosnProcess(moved("tls_server_config.json"), sample_tree)
            client = MosnProcess(moved("tls_client_config.json"), sample_tree)
            answer = httpx.get(f"http://127.0.0.1:{ports['2045']}/echo", timeout=10).json()
            assert answer["server"] == "sample"
            assert client.stats()["cluster.clientCluster.ssl.handshake"] == 1
            assert server.stats()["listener.serverListener.ssl.handshake"] == 1
        finally:
            for process in (client, server):
                if process is not None:
                    process.stop()


# -- what validate refuses -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("tlsconf")
    ca = CertificateAuthority()
    one = ca.issue(dns=["localhost"]).write(d / "one")
    two = ca.issue(dns=["localhost"]).write(d / "two")
    return {"dir": d, "one": one, "two": two, "inline_cert": Path(one["cert"]).read_text(),
            "inline_key": Path(one["key"]).read_text()}


def chain_config(tls: dict[str, Any]) -> dict[str, Any]:
    return {"servers": [{"listeners": [{
        "name": "l", "address": "127.0.0.1:0",
        "filter_chains": [{"tls_context": tls, "filters": [
            {"type": "tcp_proxy", "config": {"cluster": "c"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]}}


PATH = "servers[0].listeners[0].filter_chains[0].tls_context"


@pytest.mark.parametrize("change, expected", [
    (lambda p: {"private_key": str(p["dir"] / "missing.key")},
     f"{PATH}.private_key: cannot read "),
    (lambda p: {"private_key": p["two"]["key"]},
     f"{PATH}.private_key: the private key does not match the certificate of cert_chain"),
    (lambda p: {"cert_chain": p["one"]["key"]}, f"{PATH}.cert_chain: no PEM certificate in "),
    (lambda p: {"cipher_suites": "ECDHE-RSA-AES128-GCM-SHA256:NOT-A-CIPHER"},
     f"{PATH}.cipher_suites: unknown cipher 'NOT-A-CIPHER'"),
    (lambda p: {"cipher_suites": "AES128-GCM-SHA256"},
     f"{PATH}.cipher_suites: AES128-GCM-SHA256 is a TLS 1.3 suite"),
    (lambda p: {"cipher_suites": "TLS_SM4_GCM_SM3"},
     f"{PATH}.cipher_suites: TLS_SM4_GCM_SM3 (ShangMi, RFC 8998) is not available"),
    (lambda p: {"ecdh_curves": "P256,X25519"}, f"{PATH}.ecdh_curves: several curves at once"),
    (lambda p: {"min_version": "TLSv1_4"}, f"{PATH}.min_version: unknown TLS version"),
    (lambda p: {"alpn": "h3"}, f"{PATH}.alpn: ALPN protocol 'h3' is not one MOSN knows"),
    (lambda p: {"verify_client": True}, f"{PATH}.ca_cert: verify_client needs ca_cert"),
    (lambda p: {"sds_source": {"name": "x"}}, f"{PATH}.sds_source: not supported: secrets"),
    (lambda p: {"extend_verify": {"k": "v"}}, f"{PATH}.extend_verify: not supported"),
])
def test_validate_refuses_with_the_field_path(pem, change, expected):
    tls = {"status": True, "cert_chain": pem["one"]["cert"], "private_key": pem["one"]["key"],
           **change(pem)}
    with pytest.raises(ConfigError) as exc:
        validate(chain_config(tls))
    assert any(e.startswith(expected) for e in exc.value.errors), exc.value.errors


def test_mosn_validate_cli_names_the_key_field(pem, tmp_path):
    config = chain_config({"status": True, "cert_chain": pem["one"]["cert"],
                           "private_key": pem["two"]["key"]})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    done = mosn_validate(path)
    assert done.returncode == 1
    assert f"{PATH}.private_key: the private key does not match" in done.stdout + done.stderr


def test_relative_paths_resolve_against_the_config_directory(pem, tmp_path):
    configs = tmp_path / "etc"
    configs.mkdir()
    (configs / "c.crt").write_bytes(Path(pem["one"]["cert"]).read_bytes())
    (configs / "c.key").write_bytes(Path(pem["one"]["key"]).read_bytes())
    path = configs / "mosn.json"
    path.write_text(json.dumps(chain_config(
        {"status": True, "cert_chain": "c.crt", "private_key": "./c.key"})))
    assert mosn_validate(path).returncode == 0  # run from the repository, not etc/


def test_inline_pem_and_disabled_contexts(pem):
    validate(chain_config({"status": True, "cert_chain": pem["inline_cert"],
                           "private_key": pem["inline_key"]}))
    validate(chain_config({"status": False, "private_key": "/nowhere"}))  # off: not read


def test_fall_back_turns_tls_off_with_a_warning(pem):
    loaded = validate(chain_config({"status": True, "cert_chain": "/nowhere.crt",
                                    "private_key": "/nowhere.key", "fall_back": True}))
    assert any("fall_back: TLS is off here" in w for w in loaded.warnings)
    assert not loaded.config.servers[0].listeners[0].filter_chains[0].enabled_tls()


def test_inspector_needs_a_tls_chain():
    config = chain_config({})
    config["servers"][0]["listeners"][0]["inspector"] = True
    with pytest.raises(ConfigError) as exc:
        validate(config)
    assert exc.value.errors == [
        "servers[0].listeners[0].inspector: needs a filter chain with TLS (status: true)"]


# -- pure pieces -------------------------------------------------------------------------------


def _client_hello(server_name: str | None = "api.example.com",
                  alpn: tuple[str, ...] = ("h2", "http/1.1")) -> bytes:
    ctx = ssl.create_default_context()
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    if server_name is None:
        ctx.check_hostname = False
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_client_hello_server_name_alpn_and_versions():
    hello = inspect(_client_hello())
    assert hello.verdict is Verdict.TLS and hello.complete
    assert hello.server_name == "api.example.com"
    assert hello.alpn == ("h2", "http/1.1")
    assert 0x0304 in hello.versions  # TLS 1.3 offered


def test_client_hello_at_every_split():
    data = _client_hello(None, ())
    for cut in range(1, len(data)):
        assert inspect(data[:cut]).verdict in (Verdict.NEED_MORE, Verdict.TLS)
    full = inspect(data)
    assert full.complete and full.server_name == "" and full.alpn == ()


@pytest.mark.parametrize("first", [b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0", b"\x01\x01",
                                   b"\xda\xbb", b"\x16\x09"])
def test_plaintext_is_not_tls(first):
    assert inspect(first).verdict is Verdict.NOT_TLS


def test_a_malformed_hello_is_still_tls():
    """Looks like a handshake record: TLS, whose handshake will refuse it."""
    result = inspect(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff")
    assert result.verdict is Verdict.TLS and not result.complete


def test_option_names():
    assert tls_version("TLSv1_2") is ssl.TLSVersion.TLSv1_2
    assert tls_version("tls_auto") is None and tls_version("") is None
    assert tls_version("TLSv1.3") is ssl.TLSVersion.TLSv1_3
    assert curve_name("P256") == "prime256v1"
    assert cipher_string("ECDHE-ECDSA-WITH-CHACHA20-POLY1305:RSA-AES128-CBC-SHA") == \
        "ECDHE-ECDSA-CHACHA20-POLY1305:AES128-SHA"


def test_wildcard_names():
    assert name_matches("*.example.com", "a.example.com")
    assert not name_matches("*.example.com", "a.b.example.com")
    assert not name_matches("*.example.com", "example.com")
    assert name_matches("example.com", "example.com")


def _served_certificate(server: Any, ca_pem: bytes) -> bytes:
    """One handshake between a client SSLObject and ``server`` (a ServerTls) over
    memory BIOs; the DER certificate the client got."""
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    served = server.wrap(s_in, s_out)
    for _ in range(10):
        for side in (client, served):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_secrets_pushed_through_update_serve_new_handshakes(pem):
    """The seam a control plane (SDS) uses: new TLS configs with inline PEM."""
    ca = CertificateAuthority()
    first, second = ca.issue(dns=["localhost"]), ca.issue(dns=["localhost"])

    def config(issued: Any) -> TlsContextConfig:
        return TlsContextConfig(status=True, cert_chain=issued.cert_pem.decode(),
                                private_key=issued.key_pem.decode())

    server = ServerTls([config(first)])
    assert _served_certificate(server, ca.cert_pem) == ssl.PEM_cert_to_DER_cert(
        first.cert_pem.decode())
    server.update([config(second)])
    assert _served_certificate(server, ca.cert_pem) == ssl.PEM_cert_to_DER_cert(
        second.cert_pem.decode())
    with pytest.raises(Exception):
        server.update([TlsContextConfig(status=True, cert_chain=first.cert_pem.decode(),
                                        private_key=second.key_pem.decode())])
    assert _served_certificate(server, ca.cert_pem) == ssl.PEM_cert_to_DER_cert(
        second.cert_pem.decode())  # a bad push keeps what was served
