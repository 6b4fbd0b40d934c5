"""Several filter chains per listener, chosen by Envoy's ``filter_chain_match``: the
precedence rules as pure logic, then through mosn with real clients (TLS by SNI with
Python's ssl, HTTP/1.1 and HTTP/2 by the HTTP inspector with curl, source addresses
from a PROXY protocol header), and the PROXY protocol parser over bytes."""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from mosn.config import ConfigError, parse_address, validate
from mosn.config.models import FilterChainMatch
from mosn.filters.http_inspector import detect
from mosn.filters.proxy_protocol import ABSENT, NEED_MORE, ProxyHeader, ProxyProtocolError, parse
from mosn.network.filter_chain import ChainMatch, FilterChain, FilterChainSelector
from mosn.network.listener import ListenerIndex
from mosn.testing.certs import CertificateAuthority
from mosn.testing.process import free_port
from netns import RecordingServer, wait_for


def conn(destination: Any = ("10.0.0.1", 80), source: Any = ("192.168.1.9", 50000),
         direct: Any = None, sni: str = "", transport: str = "", alpn: tuple[str, ...] = ()
         ) -> SimpleNamespace:
    return SimpleNamespace(destination_address=destination, remote_address=source,
                           direct_remote_address=direct or source, requested_server_name=sni,
                           detected_transport=transport, requested_alpn=alpn)


def select(chains: dict[str, dict[str, Any] | None], c: SimpleNamespace) -> str | None:
    selector = FilterChainSelector([
        FilterChain(name, lambda _: None, ChainMatch(FilterChainMatch(**m)) if m is not None
                    else None) for name, m in chains.items()])
    chosen = selector.select(c)
    return chosen.name if chosen is not None else None


def cidr(prefix: str) -> dict[str, Any]:
    address, _, length = prefix.partition("/")
    return {"address_prefix": address, "prefix_len": int(length)}


# -- precedence (Envoy's order and "most specific wins") --------------------------------


def test_one_chain_without_a_match_takes_everything() -> None:
    assert select({"only": None}, conn(destination="unix-socket", source="")) == "only"


def test_destination_port_comes_first_and_prunes_for_good() -> None:
    """A chain naming the port wins over one that does not, even when it then fails a
    later step: Envoy prunes, it does not go back to the wildcard chain."""
    chains = {"port": {"destination_port": 80, "server_names": ["a.example"]}, "any": {}}
    assert select(chains, conn(sni="a.example")) == "port"
    assert select(chains, conn(sni="b.example")) is None
    assert select(chains, conn(destination=("10.0.0.1", 81), sni="b.example")) == "any"


def test_the_longest_destination_prefix_wins() -> None:
    chains = {"wide": {"prefix_ranges": [cidr("10.0.0.0/8")]},
              "narrow": {"prefix_ranges": [cidr("10.0.0.0/24"), cidr("172.16.0.0/12")]},
              "v6": {"prefix_ranges": [cidr("fd00::/8")]}}
    assert select(chains, conn(destination=("10.0.0.7", 80))) == "narrow"
    assert select(chains, conn(destination=("::ffff:10.0.0.7", 80, 0, 0))) == "narrow"
    assert select(chains, conn(destination=("10.9.0.7", 80))) == "wide"
    assert select(chains, conn(destination=("fd00::1", 80, 0, 0))) == "v6"
    assert select(chains, conn(destination=("192.0.2.1", 80))) is None


def test_server_names_exact_then_longest_wildcard_then_none() -> None:
    chains = {"exact": {"server_names": ["api.example.com"]},
              "wild": {"server_names": ["*.example.com"]},
              "deeper": {"server_names": ["*.eu.example.com"]},
              "default": {}}
    assert select(chains, conn(sni="api.example.com")) == "exact"
    assert select(chains, conn(sni="www.example.com")) == "wild"
    assert select(chains, conn(sni="a.eu.example.com")) == "deeper"
    assert select(chains, conn(sni="example.com")) == "default"
    assert select(chains, conn(sni="")) == "default"
    assert select(chains, conn(sni="API.Example.COM")) == "exact"


def test_transport_then_application_protocols() -> None:
    chains = {"tls_h2": {"transport_protocol": "tls", "application_protocols": ["h2"]},
              "tls": {"transport_protocol": "tls"},
              "h2c": {"application_protocols": ["h2c"]},
              "raw": {"transport_protocol": "raw_buffer"}}
    assert select(chains, conn(transport="tls", alpn=("h2", "http/1.1"))) == "tls_h2"
    assert select(chains, conn(transport="tls", alpn=("http/1.1",))) == "tls"
    # no listener filter set the transport: it is raw_buffer (Envoy's default)
    assert select(chains, conn(alpn=("h2c",))) == "raw"
    assert select({"h2c": {"application_protocols": ["h2c"]}, "other": {}},
                  conn(alpn=("h2c",))) == "h2c"


def test_source_steps_come_last() -> None:
    chains = {"lb": {"direct_source_prefix_ranges": [cidr("10.1.0.0/16")]},
              "local": {"source_type": "SAME_IP_OR_LOOPBACK"},
              "external": {"source_type": "EXTERNAL",
                           "source_prefix_ranges": [cidr("192.168.0.0/16")]},
              "port": {"source_type": "EXTERNAL", "source_prefix_ranges": [cidr("192.168.0.0/16")],
                       "source_ports": [50000]}}
    assert select(chains, conn(direct=("10.1.2.3", 1))) == "lb"
    assert select(chains, conn(source=("127.0.0.1", 5))) == "local"
    assert select(chains, conn(source=("10.0.0.1", 5))) == "local"  # the destination's own IP
    assert select(chains, conn(source=("192.168.1.9", 50000))) == "port"
    assert select(chains, conn(source=("192.168.1.9", 50001))) == "external"
    assert select(chains, conn(source=("203.0.113.1", 50001))) is None


# -- config ------------------------------------------------------------------------------


def listener_config(**fields: Any) -> dict[str, Any]:
    return {"servers": [{"listeners": [{"name": "l", "address": "127.0.0.1:1", **fields}]}],
            "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:2"}]}]}}


def tcp_chain(cluster: str = "c", **fields: Any) -> dict[str, Any]:
    return {"filters": [{"type": "tcp_proxy", "config": {"cluster": cluster}}], **fields}


@pytest.mark.parametrize("fields, expected", [
    ({"filter_chains": [tcp_chain(filter_chain_match={"destination_port": 80}),
                        tcp_chain(filter_chain_match={"destination_port": 80})]},
     "servers[0].listeners[0]: filter_chains[1]: the same filter_chain_match as filter_chains[0]"),
    ({"filter_chains": [tcp_chain(filter_chain_match={"server_name": ["a"]})]},
     "servers[0].listeners[0].filter_chains[0].filter_chain_match.server_name: "
     "Extra inputs are not permitted"),
    ({"filter_chains": [tcp_chain(filter_chain_match={"prefix_ranges": [cidr("10.0.0.0/33")]})]},
     "servers[0].listeners[0].filter_chains[0].filter_chain_match.prefix_ranges[0]: 10.0.0.0/33"),
    ({"filter_chains": [tcp_chain(filter_chain_match={"transport_protocol": "quic"})]},
     "servers[0].listeners[0].filter_chains[0].filter_chain_match: transport_protocol 'quic'"),
    ({"filter_chains": [tcp_chain(filter_chain_match={"server_names": ["a.*.com"]})]},
     "servers[0].listeners[0].filter_chains[0].filter_chain_match: server_names: 'a.*.com'"),
    ({"filter_chains": [tcp_chain()], "use_original_dst": "nat"},
     "servers[0].listeners[0]: use_original_dst 'nat': use redirect or tproxy"),
    ({"filter_chains": [tcp_chain()], "use_original_dst": "redirect", "bind_port": False},
     "servers[0].listeners[0]: use_original_dst on a listener with bind_port: false"),
    ({"filter_chains": [tcp_chain()], "listener_filters": [
        {"type": "proxy_protocol", "config": {"allow_without": True}}]},
     "servers[0].listeners[0].listener_filters[0].config.allow_without: Extra inputs"),
    ({"filter_chains": [tcp_chain()], "listener_filters": [
        {"type": "original_dst", "config": {"type": "nat"}}]},
     "servers[0].listeners[0].listener_filters[0].config.type: type 'nat': use redirect or tproxy"),
])
def test_bad_interception_config_is_refused_with_its_path(fields: dict[str, Any],
                                                          expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        validate(listener_config(**fields))
    assert any(e.startswith(expected) for e in refused.value.errors), refused.value.errors


@pytest.mark.parametrize("cluster, expected", [
    ({"type": "ORIGINAL_DST", "lb_type": "LB_ROUNDROBIN"},
     "type ORIGINAL_DST goes with lb_type LB_ORIGINAL_DST"),
    ({"type": "SIMPLE", "lb_type": "LB_ORIGINAL_DST"},
     "type ORIGINAL_DST goes with lb_type LB_ORIGINAL_DST"),
    ({"type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST", "hosts": [{"address": "1.2.3.4:5"}]},
     "an ORIGINAL_DST cluster lists no hosts"),
    ({"type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST", "health_check": {"protocol": "tcp"}},
     "an ORIGINAL_DST cluster has no health_check"),
    ({"type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST", "mark": -1},
     "cluster_manager.clusters[1].mark: Input should be greater than or equal to 0"),
])
def test_bad_original_dst_cluster_is_refused(cluster: dict[str, Any], expected: str) -> None:
    raw = listener_config(filter_chains=[tcp_chain()])
    raw["cluster_manager"]["clusters"].append({"name": "o", **cluster})
    with pytest.raises(ConfigError) as refused:
        validate(raw)
    assert any(expected in e for e in refused.value.errors), refused.value.errors


# -- PROXY protocol and HTTP inspector: the parsers, over bytes -----------------------


V4_ADDRESSES = (socket.inet_aton("198.51.100.1") + socket.inet_aton("10.0.0.1")
                + struct.pack("!HH", 7, 80))
"""A v2 header's IPv4 addresses: 198.51.100.1:7 to 10.0.0.1:80."""


def v2(command: int, family: int, body: bytes) -> bytes:
    return b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x20 | command, family, len(body)) + body


def test_proxy_protocol_v1_and_v2_headers() -> None:
    line = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nGET /"
    assert parse(line) == ProxyHeader(len(line) - 5, ("192.0.2.7", 56324), ("10.0.0.1", 443))
    assert parse(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n").source == ("2001:db8::1", 1)
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(15)
    header = v2(1, 0x11, V4_ADDRESSES + b"\x04\x00\x01x")  # a TLV (NOOP) after the addresses
    assert parse(header + b"data") == ProxyHeader(len(header), ("198.51.100.1", 7),
                                                  ("10.0.0.1", 80))
    assert parse(v2(0, 0x00, b"")) == ProxyHeader(16)  # LOCAL: a health check
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::2") + bytes(16) + struct.pack("!HH", 9, 443)
    assert parse(v2(1, 0x21, six)).source == ("2001:db8::2", 9)  # type: ignore[union-attr]


def test_proxy_protocol_needs_more_until_it_can_tell() -> None:
    whole = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"
    for cut in range(len(whole)):
        assert parse(whole[:cut]) == NEED_MORE
    header = v2(1, 0x11, bytes(12))
    for cut in range(len(header)):
        assert parse(header[:cut]) == NEED_MORE
    assert parse(b"GET / HTTP/1.1\r\n") == ABSENT
    assert parse(b"\x16\x03\x01") == ABSENT


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n",
    b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 192.0.2.7 10.0.0.1 1 65536\r\n",
    b"PROXY TCP4 192.0.2.7 10.0.0.1 01 2\r\n",
    b"PROXY SCTP 1.2.3.4 1.2.3.4 1 2\r\n",
    b"PROXY " + b"x" * 200,
    v2(1, 0x11, bytes(4)),
    v2(2, 0x11, bytes(12)),
    v2(1, 0x51, bytes(12)),
    b"\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x00",
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",
])
def test_malformed_or_too_long_proxy_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_http_inspector_detection() -> None:
    assert detect(b"GET /x HTTP/1.1\r\nhost: a\r\n") == "http/1.1"
    assert detect(b"POST / HTTP/1.0\r\n") == "http/1.0"
    assert detect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == "h2c"
    assert detect(b"PRI * HTTP/2") is None
    assert detect(b"GET /very") is None
    assert detect(b"\x16\x03\x01\x02") == ""
    assert detect(b"SSH-2.0-OpenSSH_9.2\r\n") == ""
    assert detect(b"hello\n") == ""
    assert detect(b"GET " + b"a" * 9000) == ""


# -- through mosn ---------------------------------------------------------------------------

@pytest.fixture
def servers() -> Iterator[dict[str, RecordingServer]]:
    made: dict[str, RecordingServer] = {}
    yield made
    for server in made.values():
        server.close()


def recording(servers: dict[str, RecordingServer], name: str) -> str:
    port = free_port()
    servers[name] = RecordingServer(None, "127.0.0.1", port, f"{name}:".encode())
    return f"127.0.0.1:{port}"


def clusters(**hosts: str) -> list[dict[str, Any]]:
    return [{"name": name, "hosts": [{"address": address}]} for name, address in hosts.items()]


def talk(sock: socket.socket, data: bytes) -> bytes:
    with sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def test_tls_chains_by_server_name_and_a_plaintext_chain(start_mosn, servers,
                                                         tmp_path: Path) -> None:
    """Two TLS chains with their own certificates, chosen by SNI (the TLS inspector is
    added for them), and a plaintext chain for raw_buffer, on one port."""
    ca = CertificateAuthority()
    paths = {name: ca.issue(dns=[name]).write(tmp_path / name)
             for name in ("api.example", "www.example")}
    port = free_port()
    hosts = {name: recording(servers, name) for name in ("api", "www", "plain")}

    def tls_chain(name: str, cluster: str) -> dict[str, Any]:
        return tcp_chain(cluster, filter_chain_match={"server_names": [name]}, tls_context={
            "status": True, "cert_chain": paths[name]["cert"], "private_key": paths[name]["key"]})

    mosn = start_mosn({
        "servers": [{"listeners": [{"name": "edge", "address": f"127.0.0.1:{port}",
                                    "filter_chains": [
                                        tls_chain("api.example", "api"),
                                        tls_chain("www.example", "www"),
                                        tcp_chain("plain", filter_chain_match={
                                            "transport_protocol": "raw_buffer"})]}]}],
        "cluster_manager": {"clusters": clusters(**hosts)}})
    context = ssl.create_default_context(cafile=paths["api.example"]["ca"])
    for name in ("api", "www"):
        raw = socket.create_connection(("127.0.0.1", port))
        tls = context.wrap_socket(raw, server_hostname=f"{name}.example")
        assert tls.getpeercert()["subjectAltName"] == (("DNS", f"{name}.example"),)
        with tls:
            tls.sendall(b"secret")
            expected, answer = f"{name}:secret".encode(), b""
            while len(answer) < len(expected) and (chunk := tls.recv(100)):
                answer += chunk
            assert answer == expected
    assert talk(socket.create_connection(("127.0.0.1", port)), b"clear") == b"plain:clear"
    # TLS for a name no chain has: no chain survives the server name step
    raw = socket.create_connection(("127.0.0.1", port))
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        context.wrap_socket(raw, server_hostname="other.example")
    stats = wait_for(lambda: (s := mosn.stats())["listener.edge.no_filter_chain_match"] == 1
                     and s, "the unmatched connection counted")
    assert stats["listener.edge.ssl.handshake"] == 2


def test_http_inspector_chooses_the_http1_and_h2c_chains(start_mosn, servers) -> None:
    """On one plaintext port: curl's HTTP/1.1 goes to the chain matching http/1.1, its
    HTTP/2 with prior knowledge to the h2c chain, anything else to the default chain."""
    port = free_port()
    other = recording(servers, "other")

    def proxy_chain(protocol: str, router: str, alpn: str) -> dict[str, Any]:
        return {"filter_chain_match": {"application_protocols": [alpn]}, "filters": [{
            "type": "proxy", "config": {"downstream_protocol": protocol,
                                        "router_config_name": router}}]}

    def direct(router: str, body: str) -> dict[str, Any]:
        return {"router_config_name": router, "virtual_hosts": [{
            "name": router, "domains": ["*"],
            "routers": [{"direct_response": {"status": 200, "body": body}}]}]}

    start_mosn({
        "servers": [{"routers": [direct("h1", "the http/1.1 chain"), direct("h2", "the h2c chain")],
                     "listeners": [{
                         "name": "any", "address": f"127.0.0.1:{port}",
                         "listener_filters": [{"type": "http_inspector"}],
                         "filter_chains": [proxy_chain("Http1", "h1", "http/1.1"),
                                           proxy_chain("Http2", "h2", "h2c"),
                                           tcp_chain("other")]}]}],
        "cluster_manager": {"clusters": clusters(other=other)}})
    url = f"http://127.0.0.1:{port}/"
    for flag, body in (("--http1.1", "the http/1.1 chain"),
                       ("--http2-prior-knowledge", "the h2c chain")):
        done = subprocess.run(["curl", "-sS", "--max-time", "10", flag, url],
                              capture_output=True, text=True, check=False)
        assert done.stdout == body, done.stderr
    assert talk(socket.create_connection(("127.0.0.1", port)), b"\x00binary") == b"other:\x00binary"


def test_proxy_protocol_source_chooses_the_chain_and_bad_headers_are_closed(
        start_mosn, servers) -> None:
    """Behind a load balancer: the PROXY header's source picks the chain (and is what
    the upstream's peer would be told); the header never reaches the upstream. A
    malformed or too long header closes that connection, is counted and logged once
    per interval; a connection open meanwhile is not disturbed."""
    port = free_port()
    hosts = {"partner": recording(servers, "partner"), "public": recording(servers, "public")}
    mosn = start_mosn({
        "servers": [{"listeners": [{
            "name": "lb", "address": f"127.0.0.1:{port}",
            "listener_filters": [{"type": "proxy_protocol"}],
            "filter_chains": [
                tcp_chain("partner", filter_chain_match={
                    "source_prefix_ranges": [cidr("192.0.2.0/24")]}),
                tcp_chain("public")]}]}],
        "cluster_manager": {"clusters": clusters(**hosts)}})
    header = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n"
    assert talk(socket.create_connection(("127.0.0.1", port)), header + b"hi") == b"partner:hi"
    assert servers["partner"].received[0][1] == b"hi"
    assert talk(socket.create_connection(("127.0.0.1", port)), v2(1, 0x11, V4_ADDRESSES) + b"yo") \
        == b"public:yo"

    waiting = socket.create_connection(("127.0.0.1", port))
    waiting.sendall(header)  # its bytes come later
    for bad in (b"PROXY TCP4 192.0.2.7\r\nhi", b"PROXY " + b"9" * 300, b"GET / HTTP/1.1\r\n\r\n"):
        assert talk(socket.create_connection(("127.0.0.1", port)), bad) == b""
    wait_for(lambda: mosn.stats()["listener.lb.downstream_cx_proxy_proto_error"] == 3,
             "three bad headers counted")
    assert talk(waiting, b"still here") == b"partner:still here"
    assert mosn.output().count("bad PROXY protocol header") == 1


def test_listener_filters_timeout_can_continue_to_a_chain(start_mosn) -> None:
    """A client that waits for the server to speak first gives the HTTP inspector
    nothing to read: with continue_on_listener_filters_timeout the default chain takes
    it when the timeout passes (and the server's greeting reaches it); without, it is
    closed and counted."""
    greeter = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: [c.sendall(b"220 hello\r\n") for c in iter(
        lambda: greeter.accept()[0], None)], daemon=True).start()
    ports = {flag: free_port() for flag in (True, False)}
    mosn = start_mosn({
        "servers": [{"graceful_timeout": "1s", "listeners": [{  # the greeter never closes
            "name": f"wait_{flag}".lower(), "address": f"127.0.0.1:{port}",
            "listener_filters": [{"type": "http_inspector"}],
            "listener_filters_timeout": "300ms",
            "continue_on_listener_filters_timeout": flag,
            "filter_chains": [tcp_chain("greeter")]} for flag, port in ports.items()]}],
        "cluster_manager": {"clusters": clusters(greeter=f"127.0.0.1:{greeter.getsockname()[1]}")}})
    try:
        with socket.create_connection(("127.0.0.1", ports[True]), timeout=10) as client:
            assert client.recv(100) == b"220 hello\r\n"
        with socket.create_connection(("127.0.0.1", ports[False]), timeout=10) as client:
            assert client.recv(100) == b""
        assert mosn.stats()["listener.wait_false.downstream_pre_cx_timeout"] == 1
    finally:
        greeter.close()


def test_hand_over_finds_the_exact_address_then_the_fallback_then_the_wildcard() -> None:
    def listener(address: str) -> SimpleNamespace:
        return SimpleNamespace(address=parse_address(address), name=address)

    listeners = [listener(a) for a in ("10.0.0.5:80", "0.0.0.0:80", "127.0.0.1:81",
                                       "[::]:82", "[fd00::5]:80", "unix:/tmp/x.sock")]
    index = ListenerIndex(listeners)  # type: ignore[arg-type]

    def find(ip: str, port: int, fallback: str = "") -> str | None:
        found = index.find((ip, port), fallback)
        return found.name if found is not None else None

    assert find("10.0.0.5", 80) == "10.0.0.5:80"
    assert find("::ffff:10.0.0.5", 80) == "10.0.0.5:80"
    assert find("10.0.0.6", 80) == "0.0.0.0:80"
    assert find("fd00::5", 80) == "[fd00::5]:80"
    assert find("fd00::6", 80) is None  # an IPv4 wildcard takes no IPv6 destination
    assert find("10.0.0.6", 82) == "[::]:82"  # a dual-stack wildcard takes both
    assert find("10.0.0.6", 81) is None
    assert find("10.0.0.6", 81, "127.0.0.1") == "127.0.0.1:81"  # fallback_to_local
    assert find("10.0.0.6", 80, "127.0.0.1") is None
