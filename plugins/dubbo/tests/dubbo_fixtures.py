"""Fixtures: the real Dubbo peers (installed on first use) and a ZooKeeper server
(see dubbo_zk.py). mosn processes come from mosn's own ``start_mosn`` fixture and
``mosn.testing.MosnProcess``.

Test modules import the fixtures they use from here. This is not a conftest.py: the
core's tests import their own ``conftest`` by that name, and a second conftest.py
outside a package would take its place in ``sys.modules`` in a full-repo run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mosn.testing import Peer, ensure_node_modules, free_port
from dubbo_peers import PEERS, ensure_python3_dubbo, start_provider
from dubbo_zk import ZooKeeper, zookeeper_missing


@pytest.fixture(scope="session")
def node_peers() -> None:
    """sofa-rpc-node, dubbo-remoting, apache-dubbo-js, dubbo2.js (``npm ci``)."""
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


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeper]:
    """A real ZooKeeper on a free port (Debian's package, installed when missing)."""
    reason = zookeeper_missing()
    if reason:
        pytest.skip(f"ZooKeeper: {reason}")
    zk = ZooKeeper(tmp_path_factory.mktemp("zookeeper"), free_port())
    yield zk
    zk.stop()
