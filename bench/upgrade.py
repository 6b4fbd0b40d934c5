"""Upgrades under load, outside CI: many in a row, and one with many open connections.

    .venv/bin/python -P bench/upgrade.py --upgrades 20
    .venv/bin/python -P bench/upgrade.py --connections 10000 --upgrades 1

mosn serves an HTTP/1.1 listener (a direct response: no upstream in the way) and a
tcp_proxy listener in front of the example echo upstream. Clients, from this process:
``--connections`` idle HTTP/1.1 keep-alive connections (each has had one answer before
the upgrade and must give another on the same socket after it); a probe sending
requests one after another on its own keep-alive connection, timing each; and a byte
stream through tcp_proxy, checksummed. Then ``--upgrades`` times: a second
``mosn start`` on the same config, waited for until the old process is gone.

Reported per upgrade: the hand-over time (the new process started -> the old one gone,
which includes the new one's start: imports, plugins, config), the largest latency the
probe saw while it ran, and the server's migrated/drained counts. Exit status 1 if any
request failed, a connection was lost, or the stream was cut or corrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request  # before bench/ is on the path (its http.py would shadow http)
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Processes, free_port, raise_fd_limit  # noqa: E402

START_TIMEOUT = 60.0
"""Seconds for a mosn to be ready (a loaded machine starts Python slowly)."""
HANDOVER_TIMEOUT = 300.0
"""Seconds for an upgrade with every connection migrated (10,000 take a while)."""
REQUEST = b"GET /ok HTTP/1.1\r\nHost: bench\r\n\r\n"
ANSWER_END = b"ok"
STREAM_CHUNK = 4096
CONNECT_BATCH = 500
"""Connections opened before their first answers are read (the listen backlog holds them)."""


def config(http: int, tcp: int, echo: int, admin: int) -> dict:
    return {
        "servers": [{
            "default_log_level": "WARN",
            "graceful_timeout": "20s",
            "routers": [{"router_config_name": "direct", "virtual_hosts": [{
                "name": "direct", "domains": ["*"], "routers": [{
                    "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "ok"}}]}]}],
            "listeners": [
                {"name": "http", "address": f"127.0.0.1:{http}", "bind_port": True,
                 "filter_chains": [{"filters": [{"type": "proxy", "config": {
                     "downstream_protocol": "Http1", "router_config_name": "direct"}}]}]},
                {"name": "tcp", "address": f"127.0.0.1:{tcp}", "bind_port": True,
                 "filter_chains": [{"filters": [{"type": "tcp_proxy",
                                                 "config": {"cluster": "echo"}}]}]},
            ],
        }],
        "cluster_manager": {"clusters": [{"name": "echo",
                                          "hosts": [{"address": f"127.0.0.1:{echo}"}]}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
    }


def wait_ready(admin: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosn exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("mosn not ready")


def read_answer(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(ANSWER_END):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def ask_all(socks: list[socket.socket]) -> int:
    """One request on each connection; returns how many answered 200 on it."""
    ok = 0
    for start in range(0, len(socks), CONNECT_BATCH):
        batch = socks[start:start + CONNECT_BATCH]
        for sock in batch:
            sock.sendall(REQUEST)
        for sock in batch:
            try:
                ok += read_answer(sock).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
    return ok


class Probe(threading.Thread):
    """Requests one after another on one keep-alive connection, each timed."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.latencies: list[tuple[float, float]] = []
        self.errors: list[str] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            start = time.monotonic()
            try:
                self.sock.sendall(REQUEST)
                if not read_answer(self.sock).startswith(b"HTTP/1.1 200"):
                    self.errors.append("not 200")
            except OSError as exc:
                self.errors.append(repr(exc))
                return
            self.latencies.append((start, time.monotonic() - start))

    def worst(self, since: float, until: float) -> float:
        return max((d for t, d in self.latencies if since <= t <= until), default=0.0)


class Stream(threading.Thread):
    """A checksummed byte stream through tcp_proxy to the echo upstream."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sent, self.received = hashlib.sha256(), hashlib.sha256()
        self.bytes = 0
        self.errors: list[str] = []
        self.running = True

    def run(self) -> None:
        n = 0
        while self.running:
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


def stats(admin: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json", timeout=10) as r:
        return json.loads(r.read())["stats"]


def run(args: argparse.Namespace, workdir: Path) -> dict:
    procs = Processes(workdir)
    http, tcp, echo, admin = free_port(), free_port(), free_port(), free_port()
    config_path = workdir / "mosn.yaml"
    config_path.write_text(yaml.safe_dump(config(http, tcp, echo, admin)))
    argv = [sys.executable, "-m", "mosn", "start", "-c", str(config_path)]
    result: dict = {"connections": args.connections, "upgrades": []}
    try:
        procs.start("echo", [sys.executable, str(ROOT / "examples" / "echo_upstream.py"),
                             "--address", f"127.0.0.1:{echo}"], cpu=1)
        mosn = procs.start("mosn-0", argv, cpu=0)
        wait_ready(admin, mosn)
        idle: list[socket.socket] = []
        for _ in range(args.connections):
            idle.append(socket.create_connection(("127.0.0.1", http)))
        result["idle_answered_before"] = ask_all(idle)
        probe, stream = Probe(http), Stream(tcp)
        probe.start()
        stream.start()
        time.sleep(0.5)
        for i in range(1, args.upgrades + 1):
            started = time.monotonic()
            new = procs.start(f"mosn-{i}", argv, cpu=0)
            mosn.wait(timeout=HANDOVER_TIMEOUT)
            gone = time.monotonic()
            procs.running.remove(mosn)
            if mosn.returncode != 0:
                raise RuntimeError(f"mosn-{i - 1} exited with status {mosn.returncode}")
            mosn = new
            wait_ready(admin, mosn)
            s = stats(admin)
            result["upgrades"].append({
                "handover_s": round(gone - started, 2),
                "worst_latency_ms": round(probe.worst(started, gone) * 1000, 1),
                "migrated_total": s["server.connections_migrated"],
                "drained_total": s["server.connections_drained"],
            })
            print(f"upgrade {i}: {result['upgrades'][-1]}", flush=True)
        time.sleep(0.5)
        probe.running = stream.running = False
        probe.join()
        stream.join()
        result["idle_answered_after"] = ask_all(idle)
        result["probe_requests"] = len(probe.latencies)
        result["probe_errors"] = probe.errors
        result["probe_same_socket"] = True  # one socket for its whole life; an error if lost
        result["stream_bytes"] = stream.bytes
        result["stream_errors"] = stream.errors
        result["stream_intact"] = stream.sent.digest() == stream.received.digest()
        for sock in idle:
            sock.close()
    finally:
        procs.stop_all()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrades", type=int, default=20)
    parser.add_argument("--connections", type=int, default=100,
                        help="idle keep-alive connections open across the upgrades")
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="mosn-upgrade-") as tmp:
        result = run(args, Path(tmp))
    handovers = [u["handover_s"] for u in result["upgrades"]]
    worst = [u["worst_latency_ms"] for u in result["upgrades"]]
    print(json.dumps({k: v for k, v in result.items() if k != "upgrades"}, indent=1))
    if handovers:
        print(f"hand-over (new started -> old gone): min {min(handovers)} s, "
              f"max {max(handovers)} s; worst probe latency during one: max {max(worst)} ms")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    bad = (result["probe_errors"] or result["stream_errors"] or not result["stream_intact"]
           or result["idle_answered_after"] != args.connections)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
