"""The real Tars peers (@tars/rpc on Node.js, ``peers/``), run as processes with the
kit's :mod:`mosn.testing.peers`, installed with ``npm ci`` from the lock file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mosn.testing.peers import Peer, json_lines

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
DATA = HERE / "data"
SERVANT = "Test.EchoServer.EchoObj"
"""The servant of ``peers/echo.js``."""
NODE = ["node", "--no-warnings"]
"""@tars/rpc warns of its own circular require on every start."""


def start_server(port: int) -> Peer:
    """@tars/rpc's server with Test.EchoServer.EchoObj (echo, and fail: iRet -3)."""
    return Peer([*NODE, "server.js", str(port)], port, PEERS)


def call(port: int, count: int = 1, concurrency: int = 1, function: str = "echo",
         servant: str = SERVANT) -> list[dict[str, Any]]:
    """``count`` calls by @tars/rpc's ServantProxy: ``{"i", "ret", "out"}`` each, or
    ``{"i", "code", "message"}`` for a failed one; in the order they ended."""
    return json_lines([*NODE, "client.js", "127.0.0.1", str(port), str(count),
                       str(concurrency), function, servant], PEERS)
