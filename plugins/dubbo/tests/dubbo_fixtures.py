"""Fixtures: the real Dubbo peers (installed on first use), mosn processes, and a
ZooKeeper server (see dubbo_zk.py).

Test modules import the fixtures they use from here. This is not a conftest.py: the
core's tests import their own ``conftest`` by that name, and a second conftest.py
outside a package would take its place in ``sys.modules`` in a full-repo run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mosn.testing import Peer, ensure_node_modules, free_port, node_missing
from dubbo_peers import PEERS, ensure_python3_dubbo, start_provider
from dubbo_zk import ZooKeeper, zookeeper_missing

MOSN_START_TIMEOUT = 15.0  # seconds for mosn to report ready on a loaded CI machine


@pytest.fixture(scope="session")
def node_peers() -> None:
    """sofa-rpc-node, dubbo-remoting, apache-dubbo-js, dubbo2.js (``npm ci``)."""
    reason = node_missing()
    if reason:
        pytest.skip(f"Node.js peers: {reason}")
    ensure_node_modules(PEERS)


@pytest.fixture(scope="session")
def python3_dubbo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of the python3-dubbo venv, created on first use."""
    return ensure_python3_dubbo()


@pytest.fixture(scope="module")
def provider(node_peers: None) -> Iterator[Peer]:
    """A Dubbo provider (sofa-rpc-node + dubbo-remoting) named "a"."""
    peer = start_provider(free_port(), "a")
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def provider_b(node_peers: None) -> Iterator[Peer]:
    peer = start_provider(free_port(), "b")
    yield peer
    peer.stop()


class Mosn:
    """A mosn process on a config, ready once its admin API says so."""

    def __init__(self, config: dict[str, Any], tmp: Path, args: tuple[str, ...] = ()) -> None:
        self.admin_port = free_port()
        config.setdefault("admin", {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": self.admin_port}}})
        self.config_path = tmp / f"mosn-{self.admin_port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / f"mosn-{self.admin_port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (open while mosn runs)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosn", "start", "-c", str(self.config_path), *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + MOSN_START_TIMEOUT
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosn exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosn not ready:\n{self.output()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready",
                                        timeout=0.5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def admin(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
            return json.load(r)

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

    def start(config: dict[str, Any], *args: str) -> Mosn:
        m = Mosn(config, tmp, args)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeper]:
    """A real ZooKeeper on a free port (Debian's package, installed when missing)."""
    reason = zookeeper_missing()
    if reason:
        pytest.skip(f"ZooKeeper: {reason}")
    zk = ZooKeeper(tmp_path_factory.mktemp("zookeeper"), free_port())
    yield zk
    zk.stop()
