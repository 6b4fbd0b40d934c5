"""Fixtures: the real peers (installed on first use) and mosn."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import pytest
import yaml

from mosn.testing import Peer, ensure_node_modules, free_port, node_missing
from .sofarpc_peers import PEERS, ensure_anthunder, start_anthunder_server, start_node_server

MOSN_START_TIMEOUT = 15.0  # seconds for mosn to report ready on a loaded CI machine


@pytest.fixture(scope="session")
def node_peers() -> None:
    """sofa-rpc-node and sofa-bolt-node installed (``npm ci``) under tests/peers/."""
    reason = node_missing()
    if reason:
        pytest.skip(f"Node.js peers: {reason}")
    ensure_node_modules(PEERS)


@pytest.fixture(scope="session")
def anthunder_python() -> Path:
    """The interpreter of the anthunder venv, created on first use."""
    return ensure_anthunder()


@pytest.fixture(scope="module")
def node_server(node_peers: None) -> Iterator[Peer]:
    """sofa-rpc-node's RpcServer with com.example.EchoService:1.0 on a free port."""
    peer = start_node_server(free_port())
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def anthunder_server(anthunder_python: Path) -> Iterator[Peer]:
    """anthunder's AioListener with com.example.EchoService:1.0 on a free port."""
    peer = start_anthunder_server(anthunder_python, free_port())
    yield peer
    peer.stop()


class Mosn:
    """A mosn process started on a config (the core tests' helper, cut down)."""

    def __init__(self, config: dict[str, Any], tmp: Path) -> None:
        self.admin_port = free_port()
        config.setdefault("admin", {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": self.admin_port}}})
        self.config_path = tmp / f"mosn-{self.admin_port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / f"mosn-{self.admin_port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (open while mosn runs)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosn", "start", "-c", str(self.config_path)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + MOSN_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosn exited {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.admin_port}/ready", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"mosn not ready:\n{self.output()}")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}/stats?format=json", timeout=5) as r:
            return json.load(r)["stats"]

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def start_mosn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Mosn]]:
    """Starts mosn on a config; every mosn started is stopped after the module."""
    started: list[Mosn] = []
    tmp = tmp_path_factory.mktemp("mosn")

    def start(config: dict[str, Any]) -> Mosn:
        m = Mosn(config, tmp)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()
