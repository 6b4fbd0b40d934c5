"""Fixtures that start real servers on 127.0.0.1: the example echo upstream and mosn."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from mosn.server import raise_fd_limit

ROOT = Path(__file__).resolve().parent.parent
ECHO = ROOT / "examples" / "echo_upstream.py"
START_TIMEOUT = 15.0  # seconds for a server to come up on a loaded CI machine

raise_fd_limit()  # the tests open a thousand connections at once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Mosn:
    """A mosn process started on a config; ``admin(path)`` queries its admin API."""

    def __init__(self, config: dict[str, Any], tmp: Path, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.admin_port = free_port()
        config.setdefault("admin", {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": self.admin_port}}})
        self.admin_port = config["admin"]["address"]["socket_address"]["port_value"]
        self.config_path = tmp / f"mosn-{self.admin_port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / f"mosn-{self.admin_port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosn", "start", "-c", str(self.config_path), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosn exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url("/ready"), timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"mosn not ready:\n{self.output()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def admin(self, path: str) -> httpx.Response:
        return httpx.get(self.url(path), timeout=5)

    def stats(self) -> dict[str, int]:
        return self.admin("/stats?format=json").json()["stats"]

    def wait_stat(self, name: str, value: int, timeout: float = 5.0) -> dict[str, int]:
        """Stats once ``name`` reached ``value`` (counters are updated asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats.get(name) == value or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        code = stop(self.proc, sig)
        self.log.close()
        return code


@pytest.fixture
def start_mosn(tmp_path: Path) -> Iterator[Any]:
    started: list[Mosn] = []

    def start(config: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> Mosn:
        m = Mosn(config, tmp_path, args, env)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def echo_server() -> Iterator[int]:
    """The example echo upstream on a free port; yields the port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ECHO), "--address", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        stop(proc)


def tcp_proxy_config(listen_port: int, hosts: list[str], *, cluster: str = "backend",
                     filter_config: dict[str, Any] | None = None,
                     listener: dict[str, Any] | None = None,
                     cluster_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-listener tcp_proxy config in MOSN's shape."""
    return {
        "servers": [{
            "graceful_timeout": "2s",
            "listeners": [{
                "name": "proxy",
                "address": f"127.0.0.1:{listen_port}",
                "bind_port": True,
                "filter_chains": [{"filters": [{
                    "type": "tcp_proxy",
                    "config": {"cluster": cluster, **(filter_config or {})},
                }]}],
                **(listener or {}),
            }],
        }],
        "cluster_manager": {"clusters": [{
            "name": cluster,
            "type": "SIMPLE",
            "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": h} for h in hosts],
            **(cluster_extra or {}),
        }]},
    }


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2)
