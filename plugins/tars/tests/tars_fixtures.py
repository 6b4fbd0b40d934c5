"""Fixtures: the real Tars peers (installed on first use); test modules import them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mosn.testing import Peer, ensure_node_modules, free_port
from tars_peers import PEERS, start_server


@pytest.fixture(scope="session")
def node_peers() -> None:
    """@tars/rpc installed (``npm ci``) under tests/peers/."""
    ensure_node_modules(PEERS)


@pytest.fixture(scope="module")
def tars_server(node_peers: None) -> Iterator[Peer]:
    """@tars/rpc's server with Test.EchoServer.EchoObj on a free port."""
    peer = start_server(free_port())
    yield peer
    peer.stop()
