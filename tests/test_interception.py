"""A transparent sidecar, for real: network namespaces with a veth pair, iptables
REDIRECT and TPROXY rules, mosn in the "pod" namespace and services or clients in the
"peer" one (tests/netns.py). Applications connect to a service address; the kernel
sends the connection to mosn, which recovers the original destination, hands the
connection to the listener of that address (or keeps it on the catch-all's chain)
and proxies it to the real upstream."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from mosn.testing.process import START_TIMEOUT, MosnProcess, free_port, serving, stop_process
from netns import (
    PEER_IP,
    PEER_IP6,
    POD_IP,
    Pair,
    RecordingServer,
    exchange,
    pair,
    wait_for,
)

SAMPLES = Path(__file__).parent / "data" / "mosn_samples" / "tproxy"
"""MOSN's examples/codes/tproxy configs, unchanged (mosn/mosn 707d635b)."""
MARK = 1337
"""The mark of mosn's own upstream connections (Istio's proxy uid, as a mark)."""


@pytest.fixture
def net() -> Iterator[Pair]:
    with pair() as made:
        yield made


def mosn_in(ns: Any, config: dict[str, Any], workdir: Path) -> MosnProcess:
    with ns.entered():
        return MosnProcess(config, workdir)


def stats_in(ns: Any, mosn: MosnProcess) -> dict[str, int]:
    with ns.entered():
        return mosn.stats()


def wait_stat(ns: Any, mosn: MosnProcess, name: str, value: int) -> dict[str, int]:
    return wait_for(lambda: (s := stats_in(ns, mosn)).get(name) == value and s,
                    f"{name} == {value}")


def curl(ns: Any, url: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns.name, "curl", "-sS", "--max-time", "10",
                           url], capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- TPROXY: MOSN's own sample, with the rules of its setup.sh ----------------------------


def test_mosn_tproxy_egress_sample_serves_unchanged_with_its_rules(net: Pair) -> None:
    """examples/codes/tproxy/tproxy_egress: connections the pod makes to ports 80 and
    12345 are marked, routed to the loopback and TPROXYed to mosn's 16000 listener.
    Port 80 has a virtual listener (bind_port: false), which takes the connection
    (TPROXY kept its destination); port 12345 has none, so the TPROXY listener's own
    chain answers (MOSN's README: "this is general_server", "this is tproxy_server")."""
    pod = net.pod
    pod.sh("ip", "rule", "add", "fwmark", "1", "table", "100")
    pod.sh("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
    pod.iptables("-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "mark", "--mark", "1",
                 "-j", "TPROXY", "--on-port", "16000", "--tproxy-mark", "1")
    pod.iptables("-t", "mangle", "-I", "OUTPUT", "-p", "tcp", "-o", "lo", "-j", "ACCEPT")
    pod.iptables("-t", "mangle", "-A", "OUTPUT", "-p", "tcp", "-m", "mark", "!", "--mark", "0",
                 "-j", "ACCEPT")
    for port in ("80", "12345"):
        pod.iptables("-t", "mangle", "-A", "OUTPUT", "-p", "tcp", "--dport", port,
                     "-j", "MARK", "--set-mark", "1")
    with pod.entered():
        proc = subprocess.Popen([sys.executable, "-m", "mosn", "start", "-c",
                                 str(SAMPLES / "tproxy_egress" / "config.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def ready() -> bool:
            with pod.entered():
                try:
                    with urllib.request.urlopen("http://127.0.0.1:34901/ready", timeout=1) as r:
                        return r.status == 200
                except OSError:
                    assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
                    return False
        wait_for(ready, "mosn ready in the pod", START_TIMEOUT)
        assert curl(pod, f"http://{PEER_IP}:80/") == "this is general_server"
        assert curl(pod, f"http://{PEER_IP}:12345/") == "this is tproxy_server"
        with pod.entered():
            with urllib.request.urlopen("http://127.0.0.1:34901/stats?format=json") as r:
                stats = json.load(r)["stats"]
        assert stats["listener.tproxy_listener.downstream_cx_handed_off"] == 1
        assert stats["listener.general_listener.downstream_cx_total"] == 1
    finally:
        stop_process(proc)


# -- REDIRECT: the original destination read back, hand-over, ORIGINAL_DST --------------


def redirect_rules(ns: Any, *, mark: bool = True) -> None:
    """An egress sidecar's nat rules (Istio's shape): every TCP connection the pod
    makes goes to mosn's 15001, except to the loopback and, with ``mark``, mosn's own
    (marked) ones."""
    for v6, loopback in ((False, "127.0.0.0/8"), (True, "::1/128")):
        if mark:
            ns.iptables("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "mark", "--mark",
                        str(MARK), "-j", "RETURN", v6=v6)
        ns.iptables("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", loopback, "-j", "RETURN",
                    v6=v6)
        ns.iptables("-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT",
                    "--to-ports", "15001", v6=v6)


def egress_config(*, mark: bool = True, max_connections: int | None = None) -> dict[str, Any]:
    passthrough: dict[str, Any] = {"name": "passthrough", "type": "ORIGINAL_DST",
                                   "lb_type": "LB_ORIGINAL_DST"}
    if mark:
        passthrough["mark"] = MARK
    outbound: dict[str, Any] = {
        "name": "outbound", "address": "[::]:15001", "use_original_dst": "redirect",
        "filter_chains": [{"filters": [{"type": "tcp_proxy",
                                        "config": {"cluster": "passthrough"}}]}]}
    if max_connections:
        outbound["max_connections"] = max_connections
    return {
        "servers": [{"graceful_timeout": "1s", "listeners": [outbound, {
            "name": "service_8080", "address": "[::]:8080", "bind_port": False,
            "filter_chains": [{"filters": [{"type": "tcp_proxy",
                                            "config": {"cluster": "service_8080"}}]}]}]}],
        "cluster_manager": {"clusters": [passthrough, {
            "name": "service_8080", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST",
            "mark": MARK}]},
    }


@pytest.mark.parametrize("service", [PEER_IP, PEER_IP6], ids=["ipv4", "ipv6"])
def test_redirected_connections_reach_the_service_through_the_listener_of_their_port(
        net: Pair, tmp_path: Path, service: str) -> None:
    """The application connects to the service; iptables REDIRECTs it to mosn, which
    reads the original destination (SO_ORIGINAL_DST, IPv4 or IPv6), hands the
    connection to the virtual listener of port 8080, whose ORIGINAL_DST cluster
    connects to the service itself: the service sees the application's bytes. Port
    9090 has no listener: the catch-all's own chain passes it through."""
    services = [RecordingServer(net.peer, "::", port, f"{port}:".encode())
                for port in (8080, 9090)]
    redirect_rules(net.pod)
    mosn = mosn_in(net.pod, egress_config(), tmp_path)
    try:
        assert exchange(net.pod, service, 8080, b"hello service") == b"8080:hello service"
        (peer, data), = services[0].received
        assert data == b"hello service"
        stats = wait_stat(net.pod, mosn, "listener.outbound.downstream_cx_handed_off", 1)
        assert stats["listener.service_8080.downstream_cx_total"] == 1
        assert stats["cluster.service_8080.upstream_cx_total"] == 1

        assert exchange(net.pod, service, 9090, b"no listener") == b"9090:no listener"
        assert services[1].received[0][1] == b"no listener"
        stats = stats_in(net.pod, mosn)
        assert stats["listener.service_8080.downstream_cx_total"] == 1
        assert stats["listener.outbound.downstream_cx_handed_off"] == 1
        assert stats["cluster.passthrough.upstream_cx_total"] == 1
    finally:
        with net.pod.entered():
            mosn.stop()
        for s in services:
            s.close()


def test_a_connection_made_to_the_catch_all_itself_has_no_original_destination(
        net: Pair, tmp_path: Path) -> None:
    """A client that reaches the use_original_dst listener's own port was not
    intercepted: it stays on the listener's chain, whose ORIGINAL_DST cluster has no
    host for it (closed, counted), instead of mosn connecting to itself."""
    redirect_rules(net.pod)
    mosn = mosn_in(net.pod, egress_config(), tmp_path)
    try:
        assert exchange(net.pod, "127.0.0.1", 15001, b"direct") == b""
        stats = wait_stat(net.pod, mosn, "cluster.passthrough.upstream_cx_none_healthy", 1)
        assert stats["listener.outbound.downstream_cx_handed_off"] == 0
        assert stats["cluster.passthrough.upstream_cx_total"] == 0
    finally:
        with net.pod.entered():
            mosn.stop()


def test_without_the_mark_mosns_own_connections_are_intercepted_again(
        net: Pair, tmp_path: Path) -> None:
    """The loop the mark prevents: with the same rules, a cluster without ``mark``
    has its upstream connection REDIRECTed back to mosn, which proxies it again, and
    again, until the catch-all's max_connections (here 8) stops the chain. The
    service never sees the bytes."""
    service = RecordingServer(net.peer, "::", 9090, b"9090:")
    redirect_rules(net.pod, mark=False)
    mosn = mosn_in(net.pod, egress_config(mark=False, max_connections=8), tmp_path)
    try:
        assert exchange(net.pod, PEER_IP, 9090, b"loop") == b""
        stats = wait_for(lambda: (s := stats_in(net.pod, mosn))
                         ["listener.outbound.downstream_cx_overflow"] >= 1 and s,
                         "the loop reached max_connections")
        assert stats["listener.outbound.downstream_cx_total"] == 8
        assert service.received == []
    finally:
        with net.pod.entered():
            mosn.stop()
        service.close()


# -- TPROXY inbound: the original destination address is kept -----------------------


def test_tproxy_keeps_the_destination_address_so_the_listener_of_that_ip_takes_it(
        net: Pair, tmp_path: Path) -> None:
    """Clients in the peer call 10.99.0.0/24 addresses routed through the pod, where
    TPROXY gives the connections to mosn's transparent 15006 listener without
    rewriting them. The listener of 10.99.0.5:7000 (an exact address) takes calls to
    that address, its ORIGINAL_DST cluster (replace_local) reaches the application on
    127.0.0.1:7000; another address of port 7000 goes to the 0.0.0.0:7000 listener,
    and a port with no listener stays on 15006's own chain."""
    pod, peer = net.pod, net.peer
    pod.sh("ip", "rule", "add", "fwmark", "1", "lookup", "100")
    pod.sh("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100")
    pod.iptables("-t", "mangle", "-A", "PREROUTING", "-i", "vpod", "-p", "tcp",
                 "-d", "10.99.0.0/24", "-j", "TPROXY", "--on-port", "15006",
                 "--tproxy-mark", "1")
    peer.sh("ip", "route", "add", "10.99.0.0/24", "via", POD_IP)
    app = RecordingServer(pod, "127.0.0.1", 7000, b"app:")
    wildcard = RecordingServer(pod, "127.0.0.1", 7200, b"wildcard:")
    catch_all = RecordingServer(pod, "127.0.0.1", 7100, b"catch-all:")

    def tcp_proxy(cluster: str) -> list[dict[str, Any]]:
        return [{"filters": [{"type": "tcp_proxy", "config": {"cluster": cluster}}]}]

    config = {
        "servers": [{"graceful_timeout": "1s", "listeners": [
            {"name": "inbound", "address": "0.0.0.0:15006", "use_original_dst": "tproxy",
             "filter_chains": tcp_proxy("catch_all")},
            {"name": "exact", "address": "10.99.0.5:7000", "bind_port": False,
             "filter_chains": tcp_proxy("inbound_local")},
            {"name": "any_ip", "address": "0.0.0.0:7000", "bind_port": False,
             "filter_chains": tcp_proxy("wildcard")},
        ]}],
        "cluster_manager": {"clusters": [
            {"name": "inbound_local", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST",
             "original_dst_lb_config": {"replace_local": True}},
            {"name": "wildcard", "hosts": [{"address": "127.0.0.1:7200"}]},
            {"name": "catch_all", "hosts": [{"address": "127.0.0.1:7100"}]},
        ]},
    }
    mosn = mosn_in(pod, config, tmp_path)
    try:
        assert exchange(peer, "10.99.0.5", 7000, b"to .5") == b"app:to .5"
        assert exchange(peer, "10.99.0.6", 7000, b"to .6") == b"wildcard:to .6"
        assert exchange(peer, "10.99.0.5", 7001, b"to 7001") == b"catch-all:to 7001"
        assert [d for _, d in app.received] == [b"to .5"]
        stats = stats_in(pod, mosn)
        assert stats["listener.exact.downstream_cx_total"] == 1
        assert stats["listener.any_ip.downstream_cx_total"] == 1
        assert stats["listener.inbound.downstream_cx_handed_off"] == 2
    finally:
        with pod.entered():
            mosn.stop()
        for s in (app, wildcard, catch_all):
            s.close()


# -- ORIGINAL_DST for HTTP: the destination from a header; idle hosts forgotten ----------

HTTP_UPSTREAM = Path(__file__).resolve().parent.parent / "examples" / "http_upstream.py"


def test_original_dst_cluster_takes_a_header_address_and_forgets_idle_hosts(start_mosn) -> None:
    """``original_dst_lb_config: {use_header: true, header_name: x-dst}``: each request
    goes to the address in its header (one upstream, then another); a request without
    one and without an original destination gets 503. A destination nobody used for a
    whole cleanup_interval is forgotten: its pooled keep-alive connection is closed."""
    with contextlib.ExitStack() as stack:
        blue, green = (stack.enter_context(serving(
            lambda port, name=name: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port),
                                     "--name", name])) for name in ("blue", "green"))
        port = free_port()
        mosn = start_mosn({
            "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "dst"}}]}]}],
                "listeners": [{"name": "http", "address": f"127.0.0.1:{port}",
                               "filter_chains": [{"filters": [{"type": "proxy", "config": {
                                   "downstream_protocol": "Http1",
                                   "router_config_name": "r"}}]}]}]}],
            "cluster_manager": {"clusters": [{
                "name": "dst", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST",
                "cleanup_interval": "0.5s",
                "original_dst_lb_config": {"use_header": True, "header_name": "x-dst"}}]}})
        url = f"http://127.0.0.1:{port}/echo"
        with httpx.Client(timeout=10) as client:
            for name, upstream in (("blue", blue), ("green", green)):
                r = client.get(url, headers={"x-dst": f"127.0.0.1:{upstream}"})
                assert r.status_code == 200 and r.json()["server"] == name
            assert client.get(url).status_code == 503
            assert client.get(url, headers={"x-dst": "upstream.example:80"}).status_code == 503
        stats = mosn.stats()
        assert stats["cluster.dst.upstream_cx_total"] == 2
        assert stats["cluster.dst.original_dst_hosts.rq_total"] == 2
        stats = wait_for(lambda: (s := mosn.stats())["cluster.dst.upstream_cx_active"] == 0
                         and s, "the idle destinations forgotten, their connections closed")
        assert stats["cluster.dst.upstream_cx_destroy_local"] == 2
