"""How long a large admin answer holds up proxied traffic in the same process.

One mosn process (no workers: the admin API shares the event loop with the data
path) proxies TCP to an echo upstream; its one host carries metadata of about
``--metadata-kb`` KiB. A client sends 64-byte round trips through the proxy, one
after another, the whole time; every ``--interval`` seconds the harness asks the
admin API for ``/config_dump`` and ``/clusters``. Reported: the round trips' p50,
p99 and longest time while no admin request is in flight and while one is, and the
admin answers' sizes and times.

    .venv/bin/python bench/admin_stall.py --metadata-kb 4096 --duration 20

Run it against another tree by putting that tree first on PYTHONPATH (the mosn
process inherits it). Wall-clock figures on a shared machine are noisy; the longest
round trip during a dump is what this harness is for.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = b"x" * 64
START_TIMEOUT = 30.0
"""Seconds mosn may take to load a config of several megabytes and start."""
ADMIN_TIMEOUT = 60.0
"""Seconds an admin answer may take."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = ADMIN_TIMEOUT) -> tuple[int, int]:
    """The status and body size of ``GET path`` on the admin port. (Plain sockets:
    this folder's http.py would shadow the standard library's http package.)"""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  "Connection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(1 << 20):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(None, 2)[1]), len(body)


def wait_ready(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mosn exited {proc.returncode}")
        try:
            if get(port, "/ready", 1)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("mosn did not start")


def config(listen: int, upstream: int, admin: int, metadata_kb: int) -> dict:
    metadata = {f"label{i:06d}": "v" * 100 for i in range(metadata_kb * 1024 // 120)}
    return {
        "servers": [{"listeners": [{"name": "proxy", "address": f"127.0.0.1:{listen}",
                                    "filter_chains": [{"filters": [{
                                        "type": "tcp_proxy", "config": {"cluster": "echo"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "echo", "hosts": [
            {"address": f"127.0.0.1:{upstream}", "metadata": metadata}]}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
    }


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata-kb", type=int, default=4096)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    upstream, listen, admin = free_port(), free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="mosn-admin-stall-"))
    path = work / "mosn.json"
    path.write_text(json.dumps(config(listen, upstream, admin, args.metadata_kb)))
    echo = subprocess.Popen([sys.executable, str(ROOT / "examples" / "echo_upstream.py"),
                             "--address", f"127.0.0.1:{upstream}"], stdout=subprocess.DEVNULL)
    mosn = subprocess.Popen([sys.executable, "-m", "mosn", "start", "-c", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "MOSN_EVENT_LOOP": os.environ.get(
                                "MOSN_EVENT_LOOP", "uvloop")})
    try:
        wait_ready(admin, mosn)
        trips: list[tuple[float, float]] = []  # (start, seconds)
        dumps: list[tuple[float, float, str, int, int]] = []  # (start, end, path, status, bytes)
        stopping = threading.Event()

        def ping() -> None:
            with socket.create_connection(("127.0.0.1", listen)) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while not stopping.is_set():
                    t0 = time.perf_counter()
                    s.sendall(MESSAGE)
                    got = 0
                    while got < len(MESSAGE):
                        got += len(s.recv(65536))
                    trips.append((t0, time.perf_counter() - t0))

        pinger = threading.Thread(target=ping, daemon=True)
        pinger.start()
        end = time.monotonic() + args.duration
        while time.monotonic() < end:
            time.sleep(args.interval / 2)
            for target in ("/config_dump", "/clusters"):
                t0 = time.perf_counter()
                status, size = get(admin, target)
                dumps.append((t0, time.perf_counter(), target, status, size))
            time.sleep(args.interval / 2)
        stopping.set()
        pinger.join(5)
    finally:
        stop(mosn)
        stop(echo)

    def during(start: float, seconds: float) -> bool:
        return any(a <= start + seconds and start <= b for a, b, *_ in dumps)

    def figures(values: list[float]) -> dict:
        if not values:
            return {}
        values = sorted(values)
        return {"round_trips": len(values), "p50_ms": round(values[len(values) // 2] * 1e3, 3),
                "p99_ms": round(values[int(len(values) * 0.99)] * 1e3, 3),
                "max_ms": round(values[-1] * 1e3, 3)}

    result = {
        "metadata_kb": args.metadata_kb,
        "quiet": figures([s for t, s in trips if not during(t, s)]),
        "during_admin": figures([s for t, s in trips if during(t, s)]),
        "admin": {p: {"status": sorted({d[3] for d in dumps if d[2] == p}),
                      "bytes": max(d[4] for d in dumps if d[2] == p),
                      "median_ms": round(statistics.median(
                          (d[1] - d[0]) * 1e3 for d in dumps if d[2] == p), 1)}
                  for p in ("/config_dump", "/clusters")},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
