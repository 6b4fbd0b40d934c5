"""tcp_proxy end to end: real mosn processes, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import struct
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port, tcp_proxy_config
from mosn.config.models import MosnConfig
from mosn.config.types import Address
from mosn.filters.tcp_proxy import TcpProxy, TcpProxyConfig
from mosn.network import Listener, WriteFilter, bind
from mosn.network.filter_chain import FilterChain
from mosn.observability.stats import LISTENER_STATS, StatsStore
from mosn.plugins import PluginHost
from mosn.upstream.cluster import ClusterManager

DEADLINE = 10.0
"""Seconds an in-process test waits for a condition before failing."""


def echo_once(port: int, payload: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def recv_all(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_by_peer(s: socket.socket, timeout: float = 5) -> bool:
    """True once the peer closed (EOF or reset) within ``timeout``."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_echo_and_half_close(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    # The client half-closes; the echo still comes back through the proxy.
    assert echo_once(port, b"hello mosn\n") == b"hello mosn\n"
    stats = mosn.wait_stat("listener.proxy.downstream_cx_active", 0)
    assert stats["listener.proxy.downstream_cx_total"] == 1
    assert stats["listener.proxy.downstream_cx_rx_bytes_total"] == 11
    assert stats["cluster.backend.upstream_cx_tx_bytes_total"] == 11
    assert stats["cluster.backend.upstream_cx_rx_bytes_total"] == 11
    assert stats["listener.proxy.downstream_cx_tx_bytes_total"] == 11


def test_256_mib_with_checksum(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    total = 256 * 1024 * 1024
    block = os.urandom(1024 * 1024)

    async def run() -> tuple[str, str, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent_hash = hashlib.sha256()

        async def send() -> None:
            for i in range(total // len(block)):
                chunk = block[i % 7:] + block[:i % 7]  # vary the data per block
                sent_hash.update(chunk)
                writer.write(chunk)
                await writer.drain()
            writer.write_eof()

        async def receive() -> tuple[str, int]:
            got, n = hashlib.sha256(), 0
            while data := await reader.read(1 << 20):
                got.update(data)
                n += len(data)
            return got.hexdigest(), n

        sender = asyncio.create_task(send())
        got_hash, n = await asyncio.wait_for(receive(), 120)
        await sender
        writer.close()
        return sent_hash.hexdigest(), got_hash, n

    sent, got, n = asyncio.run(run())
    assert n == total
    assert got == sent
    stats = mosn.wait_stat("listener.proxy.downstream_cx_active", 0)
    assert stats["cluster.backend.upstream_cx_tx_bytes_total"] == total
    assert stats["listener.proxy.downstream_cx_tx_bytes_total"] == total


def test_1000_concurrent_connections(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    n = 1000

    async def one(i: int, opened: asyncio.Barrier) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = f"connection {i}\n".encode() * 10
        await opened.wait()  # every connection is open at once
        writer.write(payload)
        got = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
        return got == payload

    async def run() -> list[bool]:
        opened = asyncio.Barrier(n)
        return await asyncio.wait_for(asyncio.gather(*(one(i, opened) for i in range(n))), 60)

    assert all(asyncio.run(run()))
    stats = mosn.wait_stat("listener.proxy.downstream_cx_active", 0)
    assert stats["listener.proxy.downstream_cx_total"] == n
    assert stats["cluster.backend.upstream_cx_total"] == n


def test_upstream_refusing_closes_downstream_and_is_counted(start_mosn, echo_server):
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    config = tcp_proxy_config(port, [f"127.0.0.1:{dead}"])
    good_port = free_port()
    config["servers"][0]["listeners"].append(
        tcp_proxy_config(good_port, [f"127.0.0.1:{echo_server}"], cluster="good")
        ["servers"][0]["listeners"][0] | {"name": "good"})
    config["cluster_manager"]["clusters"].append(
        {"name": "good", "hosts": [{"address": f"127.0.0.1:{echo_server}"}]})
    mosn = start_mosn(config)
    with socket.create_connection(("127.0.0.1", port)) as s:
        assert closed_by_peer(s)
    stats = mosn.wait_stat("cluster.backend.upstream_cx_connect_fail", 1)
    assert stats["cluster.backend.upstream_cx_connect_fail"] == 1
    assert stats[f"cluster.backend.host.127.0.0.1:{dead}.cx_connect_fail"] == 1
    # The proxy keeps serving.
    assert echo_once(good_port, b"still here") == b"still here"


def test_failed_connect_moves_on_to_the_next_host(start_mosn, echo_server):
    port, dead = free_port(), free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{dead}", f"127.0.0.1:{echo_server}"]))
    for _ in range(4):  # round robin starts at each host in turn
        assert echo_once(port, b"ping") == b"ping"
    stats = mosn.wait_stat("listener.proxy.downstream_cx_active", 0)
    assert stats["cluster.backend.upstream_cx_connect_fail"] >= 1
    assert stats[f"cluster.backend.host.127.0.0.1:{echo_server}.cx_total"] == 4


def _resetting_server(port: int, after: int, ready: threading.Event) -> None:
    """Accept one connection, read ``after`` bytes, then reset it (RST, not FIN)."""
    with closing(socket.socket()) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen()
        ready.set()
        conn, _ = srv.accept()
        got = 0
        while got < after:
            got += len(conn.recv(65536))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def test_upstream_reset_mid_stream(start_mosn, echo_server):
    port, upstream = free_port(), free_port()
    ready = threading.Event()
    t = threading.Thread(target=_resetting_server, args=(upstream, 1000, ready), daemon=True)
    t.start()
    ready.wait(5)
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{upstream}"]))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"x" * 1000)
        assert closed_by_peer(s)
    stats = mosn.wait_stat("cluster.backend.upstream_cx_destroy_with_error", 1)
    assert stats["cluster.backend.upstream_cx_destroy_with_error"] == 1
    assert stats["cluster.backend.upstream_cx_destroy_remote"] == 1
    stats = mosn.wait_stat("listener.proxy.downstream_cx_active", 0)
    assert stats["listener.proxy.downstream_cx_active"] == 0
    t.join(5)


def test_downstream_reset_closes_upstream(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"abc")
    assert s.recv(3) == b"abc"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    stats = mosn.wait_stat("cluster.backend.upstream_cx_active", 0)
    assert stats["cluster.backend.upstream_cx_active"] == 0
    assert stats["listener.proxy.downstream_cx_active"] == 0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_slow_reader_keeps_memory_bounded(start_mosn, echo_server):
    """A client that sends but never reads: the proxy stops reading it instead of
    buffering, so what the client manages to send stays small and the proxy's memory
    does not grow with it."""
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    before = _rss_kib(mosn.proc.pid)
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    sent, block, idle_since = 0, b"z" * 65536, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            sent += s.send(block)
            idle_since = None
        except BlockingIOError:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.0:
                break  # back-pressured all the way to this socket
            time.sleep(0.01)
    grown = _rss_kib(mosn.proc.pid) - before
    s.close()
    # The data can sit in the kernel's buffers of four one-way flows (client -> proxy
    # -> echo -> proxy -> client), each up to the largest autotuned send and receive
    # buffer, plus the proxy's two 1 MiB write limits and the echo's own.
    bound = 4 * _largest_tcp_buffers() + 4 * 1024 * 1024
    assert sent < bound, f"the proxy kept reading: {sent} bytes sent (bound {bound})"
    assert grown < 16 * 1024, f"proxy RSS grew {grown} KiB"


def _largest_tcp_buffers() -> int:
    """The largest receive plus send buffer the kernel may give one TCP socket."""
    rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return rmem + wmem


def test_idle_timeout_closes_the_pair(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"],
                                       filter_config={"idle_timeout": "400ms"}))
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        started = time.monotonic()
        assert closed_by_peer(s, timeout=3)
        assert 0.35 < time.monotonic() - started < 1.5
    stats = mosn.wait_stat("cluster.backend.upstream_cx_active", 0)
    assert stats["cluster.backend.upstream_cx_active"] == 0


def test_listener_connection_limit(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"],
                                       listener={"max_connections": 2}))
    kept = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    for s in kept:
        s.sendall(b"ok")
        assert s.recv(2) == b"ok"
    with socket.create_connection(("127.0.0.1", port)) as extra:
        assert closed_by_peer(extra)
    assert mosn.wait_stat("listener.proxy.downstream_cx_overflow", 1)[
        "listener.proxy.downstream_cx_overflow"] == 1
    assert "listener proxy: at max_connections (2)" in mosn.output()
    for s in kept:  # the admitted ones are undisturbed
        s.sendall(b"still")
        assert s.recv(5) == b"still"
        s.close()


def test_connect_timeout(start_mosn):
    """A host whose accept queue is full never completes the handshake."""
    port = free_port()
    with closing(socket.socket()) as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        target = full.getsockname()[1]
        fillers = []
        for _ in range(8):  # fill the queue so later SYNs are dropped
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", target))
            fillers.append(f)
        time.sleep(0.2)
        mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{target}"],
                                           cluster_extra={"connect_timeout": "300ms"}))
        with socket.create_connection(("127.0.0.1", port)) as s:
            assert closed_by_peer(s, timeout=5)
        stats = mosn.wait_stat("cluster.backend.upstream_cx_connect_timeout", 1)
        for f in fillers:
            f.close()
    assert stats["cluster.backend.upstream_cx_connect_timeout"] == 1


def test_unix_socket_listener_and_upstream(start_mosn, tmp_path):
    import subprocess
    import sys

    from conftest import ECHO, stop

    upstream = tmp_path / "echo.sock"
    proc = subprocess.Popen([sys.executable, str(ECHO), "--unix", str(upstream)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().startswith(b"listening")
        listen = tmp_path / "mosn.sock"
        config = tcp_proxy_config(0, [f"unix:{upstream}"])
        config["servers"][0]["listeners"][0]["address"] = f"unix:{listen}"
        start_mosn(config)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(listen))
            s.sendall(b"over unix")
            s.shutdown(socket.SHUT_WR)
            assert recv_all(s) == b"over unix"
    finally:
        stop(proc)


def test_weighted_clusters(start_mosn, echo_server):
    port = free_port()
    config = tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"], cluster="a")
    config["cluster_manager"]["clusters"].append(
        {"name": "b", "hosts": [{"address": f"127.0.0.1:{echo_server}"}]})
    config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"] = {
        "weighted_clusters": {"clusters": [{"name": "a", "weight": 3}, {"name": "b", "weight": 1}]}}
    mosn = start_mosn(config)
    n = 400
    for _ in range(n):
        assert echo_once(port, b".") == b"."
    stats = mosn.wait_stat("listener.proxy.downstream_cx_active", 0)
    a, b = stats["cluster.a.upstream_cx_total"], stats["cluster.b.upstream_cx_total"]
    assert a + b == n
    assert 0.65 < a / n < 0.85  # 0.75 expected; the bound is > 4 standard deviations


def test_workers_share_the_listener_and_sum_stats(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]), "--workers", "2")
    children = _children(mosn.proc.pid)
    assert len(children) == 2
    n = 200
    for i in range(n):
        assert echo_once(port, b"%d" % i) == b"%d" % i
    stats = mosn.wait_stat("listener.proxy.downstream_cx_total", n)
    assert stats["listener.proxy.downstream_cx_total"] == n
    assert stats["cluster.backend.upstream_cx_total"] == n
    assert mosn.stop() == 0
    assert not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in children)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_graceful_shutdown_drains_open_connections(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"a")
    assert s.recv(1) == b"a"
    mosn.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert mosn.admin("/ready").status_code == 503  # draining
    s.sendall(b"b")  # the open connection still works while draining
    assert s.recv(1) == b"b"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    s.close()
    assert mosn.proc.wait(5) == 0


def test_port_in_use_is_refused_before_anything_listens(tmp_path, echo_server):
    import subprocess
    import sys

    import yaml

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    first = free_port()
    config = tcp_proxy_config(first, [f"127.0.0.1:{echo_server}"])
    second = dict(config["servers"][0]["listeners"][0], name="second",
                  address=f"127.0.0.1:{busy.getsockname()[1]}")
    config["servers"][0]["listeners"].append(second)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([sys.executable, "-m", "mosn", "start", "-c", str(path)],
                         capture_output=True, text=True, timeout=30)
    busy.close()
    assert out.returncode == 1
    assert "servers[0].listeners[1].address: cannot listen on" in out.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", first), timeout=1).close()


def test_admin_endpoints(start_mosn, echo_server):
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    assert mosn.admin("/ready").text == "LIVE\n"
    dump = mosn.admin("/config_dump").json()
    assert dump["cluster_manager"]["clusters"][0]["name"] == "backend"
    clusters = mosn.admin("/clusters").json()["clusters"]
    assert clusters[0]["hosts"][0]["address"] == f"127.0.0.1:{echo_server}"
    listeners = mosn.admin("/listeners").json()["listeners"]
    assert listeners == [{"name": "proxy", "address": f"127.0.0.1:{port}",
                          "filters": ["tcp_proxy"]}]
    plugins = {p["name"]: p for p in mosn.admin("/plugins").json()["plugins"]}
    assert plugins["tcp_proxy"]["registers"] == {"network_filter": ["tcp_proxy"]}
    assert "listener.proxy.downstream_cx_total: 0" in mosn.admin("/stats").text
    assert mosn.admin("/nope").status_code == 404


def test_routes_pick_the_cluster_by_destination_port(start_mosn, echo_server):
    routed, other = free_port(), free_port()
    config = tcp_proxy_config(routed, [f"127.0.0.1:{echo_server}"], cluster="fallback")
    config["cluster_manager"]["clusters"].append(
        {"name": "routed", "hosts": [{"address": f"127.0.0.1:{echo_server}"}]})
    first = config["servers"][0]["listeners"][0]
    first["filter_chains"][0]["filters"][0]["config"]["routes"] = [
        {"cluster": "routed", "destination_port": str(routed),
         "source_addrs": [{"address": "127.0.0.0", "length": 8}]}]
    config["servers"][0]["listeners"].append(dict(first, name="other",
                                                  address=f"127.0.0.1:{other}"))
    mosn = start_mosn(config)
    assert echo_once(routed, b"1") == b"1"
    assert echo_once(other, b"2") == b"2"
    stats = mosn.wait_stat("listener.other.downstream_cx_active", 0)
    assert stats["cluster.routed.upstream_cx_total"] == 1
    assert stats["cluster.fallback.upstream_cx_total"] == 1


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class _Tap(WriteFilter):
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def on_write(self, data: bytes) -> bytes:
        self.seen.append(data)
        return data


async def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not after {DEADLINE}s: {what}")
        await asyncio.sleep(0.01)


def test_a_connected_pair_is_spliced_and_a_new_filter_ends_the_splice():
    """Once the upstream is connected the pair forwards from the read callback itself
    (spliced), counting every byte (stats read while it is spliced are exact); a write
    filter added later ends the splice both ways, and the filter sees the next bytes."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        echo = await loop.create_server(_Echo, "127.0.0.1", 0)
        echo_port = echo.sockets[0].getsockname()[1]
        store = StatsStore()
        clusters = ClusterManager(MosnConfig.model_validate({"cluster_manager": {"clusters": [
            {"name": "backend", "hosts": [{"address": f"127.0.0.1:{echo_port}"}]}]}}),
            PluginHost(autoload=False).load(), store)
        scope = store.scope("listener.t", LISTENER_STATS)
        store.allocate(1)
        proxy = TcpProxy(TcpProxyConfig(cluster="backend"), clusters)
        listener = Listener("t", bind(Address("127.0.0.1", 0)), store, scope,
                            [FilterChain("0", proxy.install)])
        await listener.start()
        reader, writer = await asyncio.open_connection(*listener.sock.getsockname())
        writer.write(b"one")
        assert await reader.readexactly(3) == b"one"
        (downstream,) = listener.connections
        upstream = downstream.spliced
        assert upstream is not None and upstream.spliced is downstream
        assert upstream.remote_address[1] == echo_port
        assert not downstream.splice(upstream, *downstream.read_filters, *upstream.read_filters)
        stats = store.snapshot()  # a spliced pair's counts, exact when read
        assert stats["listener.t.downstream_cx_rx_bytes_total"] == 3
        assert stats["listener.t.downstream_cx_tx_bytes_total"] == 3
        assert stats["cluster.backend.upstream_cx_tx_bytes_total"] == 3
        assert stats["cluster.backend.upstream_cx_rx_bytes_total"] == 3

        tap = _Tap()
        downstream.add_write_filter(tap)
        assert downstream.spliced is None and upstream.spliced is None
        writer.write(b"two")
        assert await reader.readexactly(3) == b"two"
        assert tap.seen == [b"two"]
        stats = store.snapshot()
        assert stats["listener.t.downstream_cx_rx_bytes_total"] == 6
        assert stats["listener.t.downstream_cx_tx_bytes_total"] == 6
        assert stats["cluster.backend.upstream_cx_tx_bytes_total"] == 6
        assert stats["cluster.backend.upstream_cx_rx_bytes_total"] == 6

        writer.close()
        await _until(lambda: upstream.closed and not listener.connections, "the pair closed")
        listener.stop_accepting()
        echo.close()

    asyncio.run(main())


def test_an_open_pairs_bytes_are_in_the_stats_as_they_pass(start_mosn, echo_server):
    """The byte stats of a (spliced) pair are live: read while the pair is open, they
    count what it has forwarded so far."""
    port = free_port()
    mosn = start_mosn(tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for n in range(1, 4):
            s.sendall(b"x" * 1000)
            got = b""
            while len(got) < 1000:
                got += s.recv(1000 - len(got))
            stats = mosn.wait_stat("listener.proxy.downstream_cx_tx_bytes_total", 1000 * n)
            assert stats["listener.proxy.downstream_cx_active"] == 1
            assert stats["listener.proxy.downstream_cx_rx_bytes_total"] == 1000 * n
            assert stats["listener.proxy.downstream_cx_tx_bytes_total"] == 1000 * n
            assert stats["cluster.backend.upstream_cx_tx_bytes_total"] == 1000 * n
            assert stats["cluster.backend.upstream_cx_rx_bytes_total"] == 1000 * n
