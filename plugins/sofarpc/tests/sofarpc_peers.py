"""Real SOFARPC peers for the tests and the golden-frame capture, run as processes
(with the kit's :mod:`mosn.testing.peers`):

- sofa-rpc-node / sofa-bolt-node (Node.js): ``peers/server.js`` (an RpcServer),
  ``peers/rpc_client.js`` (an RpcClient call), ``peers/bolt_client.js`` (raw frames:
  heartbeats, oneway, bolt v2 with CRC); installed with ``npm ci`` from the lock file;
- anthunder (Python, sofa-bolt-python): ``peers/anthunder_peer.py``, in a venv of its own
  (``peers/.venv-anthunder``) since it pins old packages and sets a process-wide
  asyncio policy on import.

Also a frame splitter written apart from the codec under test.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from mosn.testing.peers import Peer, ensure_venv, json_lines

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
DATA = HERE / "data"
ANTHUNDER_VENV = PEERS / ".venv-anthunder"
ECHO_SERVICE = "com.example.EchoService:1.0"
UNKNOWN_SERVICE = "com.example.UnknownService:1.0"
"""In the peers' proto file, offered by no server and named by no route."""


def ensure_anthunder() -> Path:
    """The interpreter of peers/.venv-anthunder, created and installed if needed."""
    return ensure_venv(ANTHUNDER_VENV, PEERS / "requirements-anthunder.txt")


# -- servers and clients --------------------------------------------------------------


def start_node_server(port: int) -> Peer:
    """sofa-rpc-node's RpcServer with com.example.EchoService:1.0 (echo, echoObj, fail)."""
    return Peer(["node", "server.js", str(port)], port, PEERS)


def start_anthunder_server(python: Path, port: int) -> Peer:
    """anthunder's AioListener with com.example.EchoService:1.0 (echoObj, fail)."""
    return Peer([str(python), "anthunder_peer.py", "server", str(port)], port, PEERS)


def hessian_string(text: str) -> dict[str, str]:
    """A hessian2 argument in sofa-rpc-node's js-to-java form."""
    return {"$class": "java.lang.String", "$": text}


def rpc_call(port: int, codec: str, method: str, args: list[Any],
             service: str = ECHO_SERVICE) -> dict[str, Any]:
    """One call with sofa-rpc-node's RpcClient: ``{"ok": True, "result": ...}`` or
    ``{"ok": False, "error": ...}``."""
    return json_lines(["node", "rpc_client.js", f"127.0.0.1:{port}", codec, method,
                       json.dumps(args), service], PEERS)[0]


def bolt_steps(port: int, steps: list[dict[str, Any]], *, protocol: str = "bolt",
               bolt_version: int = 1, crc: bool = False) -> list[dict[str, Any]]:
    """Steps on one connection with sofa-bolt-node's encoder and decoder (see
    peers/bolt_client.js); one result per step."""
    args = ["node", "bolt_client.js", f"127.0.0.1:{port}", json.dumps(steps),
            "--protocol", protocol, "--bolt-version", str(bolt_version)]
    return json_lines(args + (["--crc"] if crc else []), PEERS)


def anthunder(python: Path, *args: str) -> dict[str, Any]:
    """One run of peers/anthunder_peer.py (``call`` or ``heartbeat``)."""
    return json_lines([str(python), "anthunder_peer.py", *args], PEERS)[0]


# -- splitting a byte stream into frames (apart from the codec under test) ------------


def split_frames(stream: bytes) -> list[bytes]:
    """Bolt frames end to end in ``stream``, by the fixed headers' length fields
    (sofa-bolt's RpcCommandDecoder/V2). Raises ValueError on a partial frame."""
    frames = []
    pos = 0
    while pos < len(stream):
        proto = stream[pos]
        if proto == 1:
            is_response = stream[pos + 1] == 0
            lengths_at, header = (12, 20) if is_response else (14, 22)
            crc = 0
        elif proto == 2:
            is_response = stream[pos + 2] == 0
            lengths_at, header = (14, 22) if is_response else (16, 24)
            crc = 4 if stream[pos + 1] == 2 and stream[pos + 11] & 1 else 0
        else:
            raise ValueError(f"not a bolt frame at {pos}: {stream[pos:pos + 8].hex()}")
        class_len, header_len, content_len = struct.unpack_from(">HHI", stream, pos + lengths_at)
        end = pos + header + class_len + header_len + content_len + crc
        if end > len(stream):
            raise ValueError(f"partial frame at {pos}")
        frames.append(bytes(stream[pos:end]))
        pos = end
    return frames
