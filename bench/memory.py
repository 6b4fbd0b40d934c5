"""mosn's resident memory under two attacks on a bolt listener, and after them.

    python bench/memory.py [--tree DIR]

DIR (default: this checkout) is a checkout with its own .venv (scripts/setup): its
mosn and `mosn mock server --protocol bolt` (the upstream, 1 KiB responses) run, and
their RSS is read from /proc every 50 ms.

1. One client writes 300 MiB of bolt requests (4 KiB each) and reads nothing: how
   much it could write before mosn stopped reading it (3 s without progress), mosn's
   peak RSS, and its RSS 3 s after the client left.
2. 40 clients each send 16 MiB less 200 bytes of a frame announcing 16 MiB less 64
   (just under bolt's max_frame_size) and hold it: mosn's peak RSS, and its RSS 3 s
   after they left. A client whose write makes no progress for 5 s (mosn not
   accepting, or its connection shed) goes on to the next.

Printed last: mosn's overload.* stats.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, free_port

MIB = 1024 * 1024
SAMPLE = 0.05  # seconds between RSS samples
STALL = 3.0  # seconds without progress after which attack 1's client counts as blocked
SEND_TIMEOUT = 5.0  # seconds a client of attack 2 may make no progress
SETTLE = 3.0  # seconds after the clients leave before RSS is read again
SERVICE = b"com.example.EchoService:1.0"


def admin_stats(port: int) -> dict[str, int]:
    """The stats from mosn's admin API (a plain socket: this directory's http.py hides
    the standard library's http package from the scripts run here)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /stats?format=json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])["stats"]


def rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return -1


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def request(request_id: int, content: bytes) -> bytes:
    """A bolt v1 request routed by its ``service`` header."""
    header_map = struct.pack(">I", 7) + b"service" + struct.pack(">I", len(SERVICE)) + SERVICE
    return struct.pack(">BBHBIBiHHI", 1, 1, 1, 1, request_id, 1, 3000, 0, len(header_map),
                       len(content)) + header_map + content


def partial_frame(announced: int, sent: int) -> bytes:
    head = struct.pack(">BBHBIBiHHI", 1, 1, 1, 1, 1, 1, 3000, 0, 0, announced)
    return head + b"\0" * (sent - len(head))


class Peak:
    """The highest RSS of a process since the last reset, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.value, self._stop = pid, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, rss_mib(self.pid))
            time.sleep(SAMPLE)

    def stop(self) -> None:
        self._stop.set()


def attack_unread(port: int, pid: int, peak: Peak) -> None:
    chunk = b"".join(request(i + 1, b"x" * 4096) for i in range(256))
    sent, started = 0, time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(STALL)
        try:
            while sent < 300 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
        except TimeoutError:
            pass
        print(f"1. the client wrote {sent // MIB} MiB in {time.monotonic() - started:.1f} s; "
              f"mosn's peak RSS {peak.value} MiB, {rss_mib(pid)} MiB now")
    time.sleep(SETTLE)
    print(f"1. mosn's RSS {SETTLE:g} s after the client left: {rss_mib(pid)} MiB")


def attack_partial(port: int, pid: int, peak: Peak) -> None:
    peak.value = 0
    clients = []
    for _ in range(40):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(SEND_TIMEOUT)
        try:
            sock.sendall(partial_frame(16 * MIB - 64, 16 * MIB - 200))
        except OSError:
            pass
        clients.append(sock)
    print(f"2. mosn's peak RSS {peak.value} MiB, {rss_mib(pid)} MiB now")
    for sock in clients:
        sock.close()
    time.sleep(SETTLE)
    print(f"2. mosn's RSS {SETTLE:g} s after the clients left: {rss_mib(pid)} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT)
    args = parser.parse_args()
    python = str(args.tree / ".venv" / "bin" / "python")
    work = Path(tempfile.mkdtemp(prefix="mosn-memory-"))
    upstream, port, admin = free_port(), free_port(), free_port()
    config = {
        "servers": [{
            "routers": [{"router_config_name": "r", "virtual_hosts": [{
                "name": "v", "domains": ["*"], "routers": [{
                    "match": {"headers": [{"name": "service", "value": ".*", "regex": True}]},
                    "route": {"cluster_name": "c", "timeout": "30s"}}]}]}],
            "listeners": [{"name": "bolt", "address": f"127.0.0.1:{port}", "filter_chains": [
                {"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "bolt", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": [
            {"address": f"127.0.0.1:{upstream}"}]}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
    }
    (work / "mosn.json").write_text(json.dumps(config))
    with open(work / "mosn.log", "w") as log:
        mock = subprocess.Popen([python, "-m", "mosn", "mock", "server", "--protocol", "bolt",
                                 "--listen", f"127.0.0.1:{upstream}", "--response-bytes", "1024"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
        # Run from the temporary directory: `-m mosn` from this checkout would import
        # this checkout's mosn, whatever --tree says.
        mosn = subprocess.Popen([python, "-m", "mosn", "start", "-c", str(work / "mosn.json")],
                                stdout=log, stderr=log, cwd=work)
        try:
            wait_port(upstream)
            wait_port(port)
            print(f"mosn's RSS idle: {rss_mib(mosn.pid)} MiB")
            peak = Peak(mosn.pid)
            attack_unread(port, mosn.pid, peak)
            attack_partial(port, mosn.pid, peak)
            peak.stop()
            print({k: v for k, v in admin_stats(admin).items() if k.startswith("overload.")})
        finally:
            for proc in (mosn, mock):
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
