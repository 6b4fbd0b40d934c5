"""UDP listeners and MOSN's ``udp_proxy``: DNS through mosn to a real DNS server
(dnsmasq) asked by a real client library (dnspython), sessions ended by their idle
timeout under a flood of clients, datagrams over the size limit dropped and counted,
and MOSN's udpproxy-sample config serving unchanged."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import dns.message
import dns.query
import pytest

from mosn.testing.process import START_TIMEOUT, stop_process
from netns import REQUIRE_ENV, pair, wait_for

SAMPLE = Path(__file__).parent / "data" / "mosn_samples" / "udpproxy-sample" / "config.json"
"""MOSN's examples/codes/udpproxy-sample config, unchanged (mosn/mosn 707d635b)."""
ANSWER = "10.1.2.3"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dnsmasq_command(port: int) -> list[str]:
    return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={port}",
            f"--host-record=svc.test,{ANSWER}", "--user=root", "--pid-file",
            "--log-facility=-"]


@contextlib.contextmanager
def dnsmasq(port: int = 0, prefix: tuple[str, ...] = ()) -> Iterator[int]:
    """dnsmasq answering ``svc.test`` on 127.0.0.1:``port`` (0: a free one, tried
    again should another process take it first); yields the port once it answers."""
    if shutil.which("dnsmasq") is None:
        reason = "dnsmasq is not installed (scripts/test installs it: dnsmasq-base)"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set: {reason}")
        pytest.skip(reason)
    while True:
        chosen = port or free_udp_port()
        proc = subprocess.Popen([*prefix, *dnsmasq_command(chosen)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            if prefix:
                yield chosen  # in a namespace: the test waits for it there
                return
            wait_for(lambda: proc.poll() is not None or answers(chosen), "dnsmasq answers")
            if proc.poll() is None:
                yield chosen
                return
            assert not port, proc.stderr.read()  # type: ignore[union-attr]
        finally:
            stop_process(proc)


def ask(port: int, sock: socket.socket | None = None, timeout: float = 5.0) -> list[str]:
    query = dns.message.make_query("svc.test", "A")
    answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout, sock=sock)
    return [item.address for rrset in answer.answer for item in rrset]


def udp_config(port: int, upstream: int, **listener: Any) -> dict[str, Any]:
    return {
        "servers": [{"graceful_timeout": "1s", "listeners": [{
            "name": "dns", "address": f"127.0.0.1:{port}", "network": "udp",
            "filter_chains": [{"filters": [{"type": "udp_proxy", "config": {
                "cluster": "dns", "idle_timeout": "1s"}}]}], **listener}]}],
        "cluster_manager": {"clusters": [{"name": "dns", "lb_type": "LB_RANDOM",
                                          "hosts": [{"address": f"127.0.0.1:{upstream}"}]}]},
    }


def test_dns_through_udp_proxy(start_mosn) -> None:
    port = free_udp_port()
    with dnsmasq() as upstream:
        mosn = start_mosn(udp_config(port, upstream))
        assert ask(port) == [ANSWER]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            assert ask(port, client) == [ANSWER]
            assert ask(port, client) == [ANSWER]  # the same session
        stats = mosn.stats()
        assert stats["listener.dns.downstream_cx_total"] == 2
        assert stats["cluster.dns.upstream_cx_total"] == 2
        assert mosn.stop() == 0  # sessions still open: drained, then closed


def test_a_flood_of_sessions_ends_with_their_idle_timeout(start_mosn) -> None:
    """Each client address is a session with a socket of its own to the DNS server;
    300 clients make 300 sessions, and a second after their last datagram (the idle
    timeout) all of them and their sockets are gone."""
    port = free_udp_port()
    clients = 300
    with dnsmasq() as upstream:
        mosn = start_mosn(udp_config(port, upstream))
        with contextlib.ExitStack() as held:  # each its own port until all have asked
            for _ in range(clients):
                client = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                client.bind(("127.0.0.1", 0))
                assert ask(port, client) == [ANSWER]
        stats = mosn.stats()
        assert stats["listener.dns.downstream_cx_total"] == clients
        assert stats["cluster.dns.upstream_cx_total"] == clients
        stats = wait_for(lambda: (s := mosn.stats())["listener.dns.downstream_cx_active"] == 0
                         and s, "every session ended")
        assert stats["listener.dns.downstream_cx_idle_timeout"] == clients
        assert stats["cluster.dns.upstream_cx_active"] == 0
        assert ask(port) == [ANSWER]  # and new sessions come as before


def test_a_datagram_over_the_size_limit_is_dropped_and_counted(start_mosn) -> None:
    port = free_udp_port()
    with dnsmasq() as upstream:
        mosn = start_mosn(udp_config(port, upstream, max_datagram_size=512))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            assert ask(port, client) == [ANSWER]
            for _ in range(2):
                client.sendto(b"\x00" * 600, ("127.0.0.1", port))
            wait_for(lambda: mosn.stats()["listener.dns.downstream_rx_datagram_dropped"] == 2,
                     "two datagrams dropped")
            assert ask(port, client) == [ANSWER]  # the session is not disturbed
        assert mosn.output().count("larger than max_datagram_size") == 1


def test_mosn_udpproxy_sample_serves_unchanged() -> None:
    """examples/codes/udpproxy-sample: 127.0.0.1:5301 to a UDP server on 127.0.0.1:5300
    (here dnsmasq), with the admin API on its default port; run in a network namespace
    of its own so the fixed ports are free."""
    with pair() as net:
        with dnsmasq(5300, ("ip", "netns", "exec", net.pod.name)):
            with net.pod.entered():
                proc = subprocess.Popen([sys.executable, "-m", "mosn", "start", "-c",
                                         str(SAMPLE)], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
            try:
                def ready() -> bool:
                    with net.pod.entered():
                        try:
                            with urllib.request.urlopen("http://127.0.0.1:34901/ready",
                                                        timeout=1) as r:
                                return r.status == 200
                        except OSError:
                            assert proc.poll() is None, proc.communicate()[0]
                            return False
                wait_for(ready, "mosn ready in the namespace", START_TIMEOUT)
                with net.pod.entered():
                    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                with client:
                    assert wait_for(lambda: answers(5301, client), "an answer") == [ANSWER]
            finally:
                stop_process(proc)


def answers(port: int, sock: socket.socket | None = None) -> list[str] | None:
    """The answer, or None while the server is not up yet."""
    try:
        return ask(port, sock, timeout=0.5)
    except (dns.exception.Timeout, OSError):
        return None
