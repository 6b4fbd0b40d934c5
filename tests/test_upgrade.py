"""The process hand-over (docs/upgrade.md) against real processes: a second
``mosn start`` on the same config takes over from the running one under load from
real clients, and the failure cases.

Under load: sofa-rpc-node bolt and Dubbo clients on their one long-lived connection
each (bench/soak_clients/rpc.js, every answer checked against its request), an HTTP/1.1
client reusing one keep-alive connection (httpx), h2load over h2c, and a tcp_proxy
stream carrying a checksummed byte stream through an echo upstream. After the upgrade:
nothing failed or was answered twice, the RPC, keep-alive and stream clients' sockets
are the ones they had (their local ports, read from /proc), and the counters went on.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from conftest import ROOT, free_port, tcp_proxy_config, wait_for_port
from test_stats import http_config, http_upstream  # noqa: F401 (a fixture)
from mosn.testing import Peer, ensure_node_modules
from mosn.testing.process import MosnProcess

SOFARPC_PEERS = ROOT / "plugins" / "sofarpc" / "tests" / "peers"
DUBBO_PEERS = ROOT / "plugins" / "dubbo" / "tests" / "peers"
RPC_CLIENT = ROOT / "bench" / "soak_clients" / "rpc.js"
UPGRADE_TIMEOUT = 120.0
"""Seconds for a new process to start (imports and plugins take seconds, tens of them
on a loaded machine) and the old one to hand over and exit."""
POLL_INTERVAL = 0.05
STREAM_CHUNK = 4096
"""Bytes the stream client writes before it reads their echo."""
RPC_CONCURRENCY = 4
"""Calls each RPC client keeps in flight on its connection."""
CLIENT_TIMEOUT_MS = 10000
CI_UPGRADES = 3
"""Upgrades in a row under load in CI."""
LONG_UPGRADES = 20
"""Upgrades in a row under the same load outside CI (``-m long``)."""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = UPGRADE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(POLL_INTERVAL)


def listen_ports(*names: str) -> dict[str, int]:
    """A free port for each name, no two the same (a port freed by one ``free_port``
    can come back from the next)."""
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


def local_ports(pid: int, remote_port: int) -> set[int]:
    """The local ports of ``pid``'s established TCP connections to ``remote_port`` on
    127.0.0.1 (from /proc: the client's own view of its sockets)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


class RpcClient:
    """sofa-rpc-node calling echo(token) in a closed loop on one connection."""

    def __init__(self, kind: str, port: int) -> None:
        peers = SOFARPC_PEERS if kind == "bolt" else DUBBO_PEERS
        self.port = port
        self.proc = subprocess.Popen(
            ["node", str(RPC_CLIENT), kind, f"127.0.0.1:{port}", str(RPC_CONCURRENCY),
             str(CLIENT_TIMEOUT_MS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "NODE_PATH": str(peers / "node_modules")})
        self.sent = self.ok = 0
        self.failures: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, _, rest = line.strip().partition(" ")
            if kind == "S":
                sent, ok = rest.split()
                self.sent, self.ok = int(sent), int(ok)
            elif kind in ("F", "W"):
                self.failures.append(line.strip())

    def ports(self) -> set[int]:
        return local_ports(self.proc.pid, self.port)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.reader.join(timeout=10)


class KeepAliveClient:
    """httpx requests in a loop: on one keep-alive connection, or (``keep_alive``
    False) each on a new connection, so that each is accepted anew."""

    def __init__(self, url: str, keep_alive: bool = True) -> None:
        self.client = httpx.Client(limits=httpx.Limits(
            max_keepalive_connections=1 if keep_alive else 0, max_connections=1), timeout=10)
        self.url = url
        self.done = 0
        self.errors: list[str] = []
        self.ports: set[int] = set()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.client.stream("GET", self.url) as r:
                    self.ports.add(r.extensions["network_stream"].get_extra_info("client_addr")[1])
                    body = r.read()
                if r.status_code != 200 or body != b"status\n":
                    self.errors.append(f"{r.status_code} {body[:50]!r}")
                else:
                    self.done += 1
            except httpx.HTTPError as exc:
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()
        self.client.close()


class StreamClient:
    """A byte stream through tcp_proxy to an echo upstream, checksummed both ways."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.sent = hashlib.sha256()
        self.received = hashlib.sha256()
        self.bytes = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            chunk = hashlib.sha256(str(n).encode()).digest() * (STREAM_CHUNK // 32)
            n += 1
            try:
                self.sock.sendall(chunk)
                self.sent.update(chunk)
                left = len(chunk)
                while left:
                    data = self.sock.recv(left)
                    if not data:
                        self.errors.append("closed")
                        return
                    self.received.update(data)
                    left -= len(data)
                self.bytes += len(chunk)
            except OSError as exc:
                self.errors.append(repr(exc))
                return

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def mosn_processes() -> Iterator[Callable[..., MosnProcess]]:
    """Start mosn processes (``MosnProcess`` arguments); every one still running is
    stopped after the test (the ones an upgrade replaced have exited by then)."""
    started: list[MosnProcess] = []

    def start(config: dict[str, Any], workdir: Path, args: tuple[str, ...] = (),
              wait: bool = True) -> MosnProcess:
        process = MosnProcess(config, workdir, args, wait=False)
        started.append(process)  # stopped even if it never gets ready
        if wait:
            process.wait_ready(UPGRADE_TIMEOUT)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def rpc_providers() -> Iterator[dict[str, int]]:
    """sofa-rpc-node's bolt and Dubbo providers (com.example.EchoService)."""
    ensure_node_modules(SOFARPC_PEERS)
    ensure_node_modules(DUBBO_PEERS)
    ports = {"bolt": free_port(), "dubbo": free_port()}
    peers = [Peer(["node", "server.js", str(ports["bolt"])], ports["bolt"], SOFARPC_PEERS),
             Peer(["node", "server.js", str(ports["dubbo"]), "provider"], ports["dubbo"],
                  DUBBO_PEERS)]
    yield ports
    for peer in peers:
        peer.stop()


def stack_config(ports: dict[str, int], upstreams: dict[str, int]) -> dict[str, Any]:
    """Listeners ``http`` (Auto: HTTP/1.1 and h2c), ``bolt``, ``dubbo`` and ``tcp``
    (tcp_proxy to the echo upstream)."""
    config = http_config(ports["http"], upstreams["http"])
    server = config["servers"][0]
    server["graceful_timeout"] = "4s"
    server["listeners"][0]["filter_chains"][0]["filters"][0]["config"].update(
        downstream_protocol="Auto", upstream_protocol="Http1")
    clusters = config["cluster_manager"]["clusters"]
    for kind, service in (("bolt", "com.example.EchoService:1.0"),
                          ("dubbo", "com.example.EchoService")):
        server["routers"].append({"router_config_name": kind, "virtual_hosts": [{
            "name": kind, "domains": ["*"], "routers": [{
                "match": {"headers": [{"name": "service", "value": service}]},
                "route": {"cluster_name": kind, "timeout": "5s"}}]}]})
        server["listeners"].append({
            "name": kind, "address": f"127.0.0.1:{ports[kind]}", "bind_port": True,
            "filter_chains": [{"filters": [{"type": "proxy", "config": {
                "downstream_protocol": kind, "router_config_name": kind}}]}]})
        clusters.append({"name": kind, "hosts": [{"address": f"127.0.0.1:{upstreams[kind]}"}]})
    tcp = tcp_proxy_config(ports["tcp"], [f"127.0.0.1:{upstreams['echo']}"], cluster="echo")
    server["listeners"].append({**tcp["servers"][0]["listeners"][0], "name": "tcp"})
    clusters.append(tcp["cluster_manager"]["clusters"][0])
    return config


def upgrade(start: Callable[..., MosnProcess], config: dict[str, Any], old: MosnProcess,
            workdir: Path, *args: str) -> MosnProcess:
    """A second ``mosn start`` on the same config file; returns once the old process
    exited and the new one is ready."""
    new = start(config, workdir, args, wait=False)
    assert new.config_path == old.config_path
    try:
        old.proc.wait(timeout=UPGRADE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the old process did not exit:\n{new.output()}") from None
    new.wait_ready()
    return new


@pytest.mark.parametrize("upgrades", [
    CI_UPGRADES, pytest.param(LONG_UPGRADES, marks=pytest.mark.long)])
def test_upgrade_under_load_migrates_connections(mosn_processes, tmp_path, http_upstream,  # noqa: F811
                                                  echo_server, rpc_providers, upgrades):
    ports = listen_ports("http", "bolt", "dubbo", "tcp")
    config = stack_config(ports, {"http": http_upstream, "echo": echo_server, **rpc_providers})
    old = mosn_processes(config, tmp_path)
    new = None
    rpc = {kind: RpcClient(kind, ports[kind]) for kind in ("bolt", "dubbo")}
    keep_alive = KeepAliveClient(f"http://127.0.0.1:{ports['http']}/status/200")
    fresh = KeepAliveClient(f"http://127.0.0.1:{ports['http']}/status/200", keep_alive=False)
    stream = StreamClient(ports["tcp"])
    h2load = None
    try:
        wait_for(lambda: all(c.ok > 0 for c in rpc.values()) and keep_alive.done > 5
                 and stream.bytes > 0, "traffic through the first process")
        rpc_ports = {kind: c.ports() for kind, c in rpc.items()}
        assert all(len(p) == 1 for p in rpc_ports.values()), rpc_ports
        if shutil.which("h2load"):
            h2load = subprocess.Popen(
                ["h2load", "-D", "3", "-c", "2", "-m", "4",
                 f"http://127.0.0.1:{ports['http']}/status/200"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first, current = old, old
        for _ in range(upgrades):
            before = keep_alive.done
            current = new = upgrade(mosn_processes, config, current, tmp_path)
            wait_for(lambda: keep_alive.done > before + 20, "keep-alive traffic after an upgrade")
            sent = {kind: c.sent for kind, c in rpc.items()}
            wait_for(lambda: all(c.ok > sent[kind] + 10 for kind, c in rpc.items()),
                     "RPC traffic after an upgrade")
        assert {kind: c.ports() for kind, c in rpc.items()} == rpc_ports  # no reconnect
        h2 = h2load.communicate(timeout=30)[0] if h2load is not None else ""
    finally:
        for client in (*rpc.values(), keep_alive, fresh, stream):
            client.stop()
        if h2load is not None and h2load.poll() is None:
            h2load.kill()
    assert first.proc.returncode == 0, first.output()
    for kind, client in rpc.items():
        assert client.failures == [], (kind, client.failures[:5])
    assert keep_alive.errors == [], keep_alive.errors[:5]
    assert len(keep_alive.ports) == 1  # the keep-alive client kept its connection
    assert fresh.errors == [], fresh.errors[:5]  # no connection attempt was refused
    assert fresh.done > 0
    assert stream.errors == []
    assert stream.sent.digest() == stream.received.digest()
    if h2:
        assert " 0 failed, 0 errored" in h2, h2
    stats = new.stats()
    assert stats["server.upgrade_success"] == upgrades  # counted by each, carried on
    # bolt, dubbo, keep-alive and stream, each time
    assert stats["server.connections_migrated"] >= 4 * upgrades
    assert stats["server.connections_migration_failed"] == 0
    # Counters went on: every request a client had answered is counted once, by one
    # process or the other (an RPC request answered twice would count twice upstream).
    for kind, client in rpc.items():
        assert stats[f"cluster.{kind}.upstream_rq_total"] >= client.ok
        assert stats[f"cluster.{kind}.upstream_rq_total"] <= client.sent
    assert stats["listener.bolt.downstream_cx_total"] == 1
    assert stats["listener.tcp.downstream_cx_total"] == 1
    histograms = new.admin("/stats?format=json").json()["histograms"]
    assert histograms["listener.bolt.downstream_rq_time"]["count"] >= rpc["bolt"].ok
    new.stop()


H2LOAD_LONG_RUN = 15
"""Seconds of an h2load run outside CI: long enough to span an upgrade on a loaded
machine (another run follows if the upgrade is not over by then)."""
H2LOAD_CI_RUN = 2
"""Seconds of an h2load run in CI: runs follow one another until the old process is
gone."""
H2LOAD_SPAN = 8
"""Seconds of the h2load run started just before the new process: its connections are
open when the new process takes over, however long a loaded machine takes to start it
(a chained short run may have ended just then, leaving nothing to drain)."""


@pytest.mark.parametrize("run_seconds", [
    H2LOAD_CI_RUN, pytest.param(H2LOAD_LONG_RUN, marks=pytest.mark.long)])
@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) not installed")
def test_http2_clients_see_no_failure_through_an_upgrade(mosn_processes, tmp_path,
                                                         http_upstream, run_seconds):  # noqa: F811
    """h2load keeps 4 connections with 8 streams each in flight through an upgrade: the
    old process's HTTP/2 connections drain with the PING, the first GOAWAY and the
    final one (docs/upgrade.md), so h2load counts no failed request, and every stream
    mosn received was answered (none reset, none refused after a GOAWAY).

    h2load does not open a new connection after a GOAWAY (its clients stop): the run
    after the upgrade is what shows the new process serving HTTP/2."""
    port = free_port()
    config = http_config(port, http_upstream)
    config["servers"][0]["graceful_timeout"] = "10s"
    config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"].update(
        downstream_protocol="Http2", upstream_protocol="Http1")
    old = mosn_processes(config, tmp_path)
    url = f"http://127.0.0.1:{port}/status/200"

    def h2load(seconds: int = run_seconds) -> subprocess.Popen[str]:
        return subprocess.Popen(["h2load", "-D", str(seconds), "-c", "4", "-m", "8", url],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    runs = [h2load()]
    try:
        wait_for(lambda: old.stats()["listener.http.downstream_rq_total"] > 100,
                 "h2load's traffic through the first process")
        runs.append(h2load(max(run_seconds, H2LOAD_SPAN)))
        wait_for(lambda: old.stats()["listener.http.downstream_cx_active"] >= 4,
                 "the spanning run's connections open on the first process")
        new = mosn_processes(config, tmp_path, wait=False)
        while old.proc.poll() is None:
            if runs[-1].poll() is not None:
                runs.append(h2load())
            time.sleep(POLL_INTERVAL)
        new.wait_ready()
        outputs = [run.communicate(timeout=UPGRADE_TIMEOUT)[0] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    after = subprocess.run(["h2load", "-n", "100", "-c", "2", "-m", "4", url],
                           capture_output=True, text=True, timeout=UPGRADE_TIMEOUT).stdout
    for out in (*outputs, after):
        assert " 0 failed, 0 errored" in out, out
    assert "100 succeeded" in after, after  # the new process serves HTTP/2
    # The old process's connections all ended by themselves once their streams were
    # answered: none was cut at the end of the drain (h2load's summary leaves out the
    # streams in flight on a connection that closed under them: here they would show).
    assert "drained (0 closed at the end)" in old.output(), old.output()
    stats = new.stats()
    assert stats["server.upgrade_success"] == 1
    assert stats["server.connections_drained"] >= 4  # h2load's connections, with GOAWAY
    # Every stream mosn received was answered, but for those h2load itself cut when a
    # run's time was up (up to its 4 x 8 in flight, each run): none reset by mosn,
    # none refused after a GOAWAY.
    rq = {k.removeprefix("listener.http."): v for k, v in stats.items()
          if k.startswith("listener.http.downstream_rq_")}
    assert rq["downstream_rq_tx_reset"] == rq["downstream_rq_refused_after_goaway"] == 0
    assert rq["downstream_rq_total"] == rq["downstream_rq_2xx"] + rq["downstream_rq_rx_reset"]
    assert rq["downstream_rq_rx_reset"] <= 4 * 8 * len(runs), rq
    for out in (*outputs, after):  # shown with -s: the counts of each run
        print("h2load", *(line for line in out.splitlines() if line.startswith("requests:")))
    print("mosn", rq)
    new.stop()


IDLE_CONNECTIONS = 300
"""Idle keep-alive connections migrated at once: more than one message holds."""


def _ask(sock: socket.socket) -> bytes:
    """One request on ``sock``, its whole answer (a small body, its length given)."""
    sock.sendall(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"status\n"):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def test_idle_connections_migrate_in_batches(mosn_processes, tmp_path, http_upstream):  # noqa: F811
    """Hundreds of idle HTTP/1.1 keep-alive connections go over in a few messages
    (descriptors batched), each answered again on the same socket afterwards."""
    port = free_port()
    config = http_config(port, http_upstream)
    old = mosn_processes(config, tmp_path)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=UPGRADE_TIMEOUT)
             for _ in range(IDLE_CONNECTIONS)]
    try:
        for sock in socks:
            assert _ask(sock).startswith(b"HTTP/1.1 200")
        new = upgrade(mosn_processes, config, old, tmp_path)
        for sock in socks:
            assert _ask(sock).startswith(b"HTTP/1.1 200")  # the same socket, served anew
    finally:
        for sock in socks:
            sock.close()
    stats = new.stats()
    assert stats["server.connections_migrated"] == IDLE_CONNECTIONS
    wait_for(lambda: "handed everything over" in new.output(), "the new process's record")
    line = next(x for x in new.output().splitlines() if "handed everything over" in x)
    arrived, messages = (int(w) for w in line.split("(")[1].split()[::3][:2])
    assert arrived == IDLE_CONNECTIONS
    assert messages <= IDLE_CONNECTIONS // 10, line  # batches, not one message each
    new.stop()


def test_a_new_process_with_a_bad_config_leaves_the_old_one(mosn_processes, tmp_path,
                                                           http_upstream):  # noqa: F811
    port = free_port()
    config = http_config(port, http_upstream)
    old = mosn_processes(config, tmp_path)
    client = KeepAliveClient(f"http://127.0.0.1:{port}/status/200")
    try:
        wait_for(lambda: client.done > 5, "traffic")
        bad = dict(config, cluster_manager={"clusters": [{"name": "backend", "lb_type": "NOPE",
                                                          "hosts": []}]})
        new = mosn_processes(bad, tmp_path, wait=False)
        assert new.proc.wait(timeout=UPGRADE_TIMEOUT) == 1
        assert "lb_type" in new.output()
        served = client.done
        wait_for(lambda: client.done > served + 5, "the old process still serving")
    finally:
        client.stop()
    assert client.errors == [] and len(client.ports) == 1
    assert old.proc.poll() is None
    assert old.stats()["server.upgrade_failed"] == 0  # it never got that far
    old.stop()


def test_a_port_the_new_process_cannot_bind_leaves_the_old_one(mosn_processes, tmp_path,
                                                               http_upstream):  # noqa: F811
    port, taken = free_port(), free_port()
    config = http_config(port, http_upstream)
    old = mosn_processes(config, tmp_path)
    blocker = socket.create_server(("127.0.0.1", taken))
    try:
        second = dict(config["servers"][0]["listeners"][0], name="second",
                      address=f"127.0.0.1:{taken}")
        config["servers"][0]["listeners"].append(second)
        new = mosn_processes(config, tmp_path, wait=False)
        assert new.proc.wait(timeout=UPGRADE_TIMEOUT) == 1
        assert f"cannot listen on 127.0.0.1:{taken}" in new.output()
    finally:
        blocker.close()
    wait_for(lambda: old.stats()["server.upgrade_failed"] == 1, "the old process counts it")
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    assert old.proc.poll() is None
    # The old process serves the next upgrade as if nothing happened.
    config["servers"][0]["listeners"].pop()
    new = upgrade(mosn_processes, config, old, tmp_path)
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    assert new.stats()["server.upgrade_success"] == 1
    new.stop()


@pytest.mark.parametrize("key", ["disable_upgrade", "close_graceful"])
def test_disable_upgrade_starts_without_a_takeover(mosn_processes, tmp_path, http_upstream,  # noqa: F811
                                                   key):
    """MOSN's ``disable_upgrade`` (and its old name): the second process asks nothing
    of the first, so it cannot bind the first one's port and exits; the first one
    goes on, never told of an upgrade."""
    port = free_port()
    config = dict(http_config(port, http_upstream), **{key: True})
    old = mosn_processes(config, tmp_path)
    new = mosn_processes(config, tmp_path, wait=False)
    assert new.proc.wait(timeout=UPGRADE_TIMEOUT) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in new.output()
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    assert old.proc.poll() is None
    assert old.stats()["server.upgrade_failed"] == 0  # it was never asked
    old.stop()


def test_an_upgrade_while_one_is_under_way_is_refused(mosn_processes, tmp_path, http_upstream):  # noqa: F811
    port = free_port()
    config = http_config(port, http_upstream)
    config["servers"][0]["graceful_timeout"] = "60s"
    # A raw connection that does not reach a safe point keeps the first hand-over
    # going: an HTTP/1 request head that does not end (until the client closes it).
    old = mosn_processes(config, tmp_path)
    stuck = socket.create_connection(("127.0.0.1", port))
    stuck.sendall(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n")
    second = mosn_processes(config, tmp_path, wait=False)
    wait_for(lambda: "migrating connections" in old.output(), "the first upgrade under way")
    third = subprocess.run([sys.executable, "-m", "mosn", "start", "-c", str(old.config_path)],
                           capture_output=True, text=True, timeout=UPGRADE_TIMEOUT)
    assert third.returncode == 1
    assert "upgrade refused" in third.stderr and "already" in third.stderr
    stuck.close()
    old.proc.wait(timeout=UPGRADE_TIMEOUT)
    second.wait_ready()
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    stats = second.stats()
    assert stats["server.connections_drained"] == 1
    second.stop()


def test_two_configs_never_meet(mosn_processes, tmp_path, http_upstream):  # noqa: F811
    one = mosn_processes(http_config(free_port(), http_upstream), tmp_path / "one")
    two = mosn_processes(http_config(free_port(), http_upstream), tmp_path / "two")
    assert one.proc.poll() is None and two.proc.poll() is None
    assert two.stats()["server.upgrade_success"] == 0
    one.stop()
    two.stop()


def test_the_new_process_dying_mid_migration(mosn_processes, tmp_path, http_upstream,  # noqa: F811
                                             echo_server):
    """The new process is killed while the old one waits for a connection to reach a
    safe point: the old one takes its listeners back and serves on; the connections
    it had are served by it or closed, none left hanging."""
    port, tcp_port = free_port(), free_port()
    config = http_config(port, http_upstream)
    config["servers"][0]["graceful_timeout"] = "60s"
    tcp = tcp_proxy_config(tcp_port, [f"127.0.0.1:{echo_server}"], cluster="echo")
    config["servers"][0]["listeners"].append({**tcp["servers"][0]["listeners"][0], "name": "tcp"})
    config["cluster_manager"]["clusters"].append(tcp["cluster_manager"]["clusters"][0])
    old = mosn_processes(config, tmp_path)
    stuck = socket.create_connection(("127.0.0.1", port))
    stuck.sendall(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n")
    stream = StreamClient(tcp_port)
    wait_for(lambda: stream.bytes > 0, "the stream flowing")
    new = mosn_processes(config, tmp_path, wait=False)
    wait_for(lambda: "migrating connections" in old.output(), "the upgrade under way")
    new.proc.send_signal(signal.SIGKILL)
    new.proc.wait()
    wait_for(lambda: old.stats()["server.upgrade_failed"] == 1, "the old process noticed")
    stuck.sendall(b"\r\n")  # the request head ends: the old process answers it
    assert stuck.recv(4096).startswith(b"HTTP/1.1 200")
    stuck.close()
    stream.stop()
    stats = old.stats()
    handed = stats["server.connections_migrated"] + stats["server.connections_migration_failed"]
    if handed == 0:  # the stream stayed in the old process
        assert stream.errors == [] and stream.sent.digest() == stream.received.digest()
    else:  # it was sent to the new one, which died with it: the client saw it close
        assert stream.errors
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    with socket.create_connection(("127.0.0.1", tcp_port)) as again:
        again.sendall(b"ping")
        assert again.recv(4) == b"ping"
    old.stop()


def test_a_reload_with_workers_migrates_rpc_connections(mosn_processes, tmp_path,  # noqa: F811
                                                         http_upstream, echo_server,
                                                         rpc_providers):
    """With ``--workers 2`` a reload forks new workers; each old worker hands its
    connections to its successor instead of closing them under the clients."""
    ports = listen_ports("http", "bolt", "dubbo", "tcp")
    config = stack_config(ports, {"http": http_upstream, "echo": echo_server, **rpc_providers})
    mosn = mosn_processes(config, tmp_path, ("--workers", "2"))
    rpc = {kind: RpcClient(kind, ports[kind]) for kind in ("bolt", "dubbo")}
    stream = StreamClient(ports["tcp"])
    try:
        wait_for(lambda: all(c.ok > 0 for c in rpc.values()) and stream.bytes > 0,
                 "traffic through the first workers")
        rpc_ports = {kind: c.ports() for kind, c in rpc.items()}
        mosn.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "their counters and histograms kept" in mosn.output(),
                 "the old workers gone")
        sent = {kind: c.sent for kind, c in rpc.items()}
        wait_for(lambda: all(c.ok > sent[kind] + 10 for kind, c in rpc.items()),
                 "RPC traffic through the new workers")
        assert {kind: c.ports() for kind, c in rpc.items()} == rpc_ports  # no reconnect
    finally:
        for client in (*rpc.values(), stream):
            client.stop()
    for kind, client in rpc.items():
        assert client.failures == [], (kind, client.failures[:5])
    assert stream.errors == [] and stream.sent.digest() == stream.received.digest()
    stats = mosn.stats()
    assert stats["server.reload_success"] == 1
    assert stats["server.connections_migrated"] >= 3
    mosn.stop()


@pytest.mark.parametrize("old_workers,new_workers,migrates", [
    ("2", "2", True), ("2", "1", True), ("1", "2", False)])
def test_an_upgrade_with_workers(mosn_processes, tmp_path, http_upstream,  # noqa: F811
                                 old_workers, new_workers, migrates):
    """With workers: the new process takes the listening sockets (no connection
    attempt refused); an old worker's connections go to a new worker (or to the new
    single process), the client keeping its socket; a single process's connections
    drain when the new one has workers (they cannot take them); counters carry over."""
    port = free_port()
    config = http_config(port, http_upstream)
    old = mosn_processes(config, tmp_path, ("--workers", old_workers))
    idle = socket.create_connection(("127.0.0.1", port), timeout=UPGRADE_TIMEOUT)
    fresh = KeepAliveClient(f"http://127.0.0.1:{port}/status/200", keep_alive=False)
    try:
        assert _ask(idle).startswith(b"HTTP/1.1 200")
        wait_for(lambda: fresh.done > 20, "traffic through the first process")
        new = upgrade(mosn_processes, config, old, tmp_path, "--workers", new_workers)
        if migrates:
            assert _ask(idle).startswith(b"HTTP/1.1 200")  # the same socket, served anew
        else:
            assert idle.recv(4096) == b""  # drained (closed by the old process)
        done = fresh.done
        wait_for(lambda: fresh.done > done + 20, "traffic through the new process")
    finally:
        fresh.stop()
        idle.close()
    assert fresh.errors == [], fresh.errors[:5]  # no connection attempt was refused
    assert old.proc.returncode == 0
    stats = new.stats()
    assert stats["server.upgrade_success"] == 1
    if migrates:
        assert stats["server.connections_migrated"] >= 1
    else:
        assert stats["server.connections_migrated"] == 0
        assert stats["server.connections_drained"] >= 1
    # every request answered is counted once, by one process or the other
    assert stats["listener.http.downstream_rq_total"] >= fresh.done
    new.stop()


def test_the_new_process_dying_while_workers_hand_over(mosn_processes, tmp_path,
                                                       http_upstream):  # noqa: F811
    """Old and new with workers; the new one is killed while an old worker waits for a
    connection's safe point: that worker serves on (the connection too), the old
    parent serves its admin API and upgrades again."""
    port = free_port()
    config = http_config(port, http_upstream)
    config["servers"][0]["graceful_timeout"] = "60s"
    old = mosn_processes(config, tmp_path, ("--workers", "2"))
    stuck = socket.create_connection(("127.0.0.1", port), timeout=UPGRADE_TIMEOUT)
    stuck.sendall(b"GET /status/200 HTTP/1.1\r\nHost: x\r\n")  # a head that does not end
    new = mosn_processes(config, tmp_path, ("--workers", "2"), wait=False)
    wait_for(lambda: "each worker hands its connections over" in old.output(),
             "the upgrade under way")
    new.proc.send_signal(signal.SIGKILL)
    new.proc.wait()
    wait_for(lambda: old.stats()["server.upgrade_failed"] >= 1, "the old parent noticed")
    stuck.sendall(b"\r\n")  # the head ends: the old worker answers it
    assert stuck.recv(4096).startswith(b"HTTP/1.1 200")
    stuck.close()
    assert old.proc.poll() is None
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    again = upgrade(mosn_processes, config, old, tmp_path)  # the next upgrade works
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    again.stop()
