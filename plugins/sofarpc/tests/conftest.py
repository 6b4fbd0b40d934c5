"""Fixtures: the real peers (installed on first use). mosn processes come from mosn's
own ``start_mosn`` fixture and ``mosn.testing.MosnProcess``."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator

import pytest

from mosn.testing import Peer, ensure_node_modules, free_port
from .sofarpc_peers import PEERS, ensure_anthunder, start_anthunder_server, start_node_server


@pytest.fixture(scope="session")
def node_peers() -> None:
    """sofa-rpc-node and sofa-bolt-node installed (``npm ci``) under tests/peers/."""
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
