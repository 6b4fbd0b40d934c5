"""The real Dubbo peers the tests run (with the kit's :mod:`mosn.testing.peers`),
installed on first use; a frame splitter written apart from the codec under test.

Node.js peers (``peers/package.json``, locked): sofa-rpc-node's RpcServer and RpcClient
speaking Dubbo through dubbo-remoting, apache-dubbo-js and dubbo2.js (consumers).
Python peer: python3-dubbo (a consumer), in its own venv under ``peers/`` so its
top-level package ``dubbo`` and its pinned kazoo stay out of mosn's venv.

(Named ``dubbo_peers`` so it cannot clash with another plugin's test helpers.)
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

from mosn.testing.peers import RELAY_CHUNK, Peer, ensure_venv, json_lines
from mosn.testing.process import START_TIMEOUT

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
DATA = HERE / "data"
PY_VENV = PEERS / ".venv-python3-dubbo"
PY_REQUIREMENTS = PEERS / "requirements-python3-dubbo.txt"

SERVICE = "com.example.EchoService"
VERSION = "1.0.0"
UNKNOWN_SERVICE = "com.example.UnknownService"
"""Offered by no provider and named by no route."""

CALL_TIMEOUT = 60.0  # seconds for a consumer process: start, connect, all its calls, exit


def ensure_python3_dubbo() -> Path:
    """The interpreter of the python3-dubbo venv, created and installed if needed."""
    return ensure_venv(PY_VENV, PY_REQUIREMENTS)


# -- servers and clients --------------------------------------------------------------


def start_provider(port: int, name: str = "") -> Peer:
    """sofa-rpc-node's RpcServer with dubbo-remoting: com.example.EchoService 1.0.0
    (see peers/server.js); ``whoami`` answers ``name``."""
    return Peer(["node", "server.js", str(port), name or f"provider-{port}"], port, PEERS)


def call(kind: str, port: int, method: str, *args: Any, **fields: Any) -> dict[str, Any]:
    """One call by a Node.js consumer (``sofa``, ``apache`` or ``dubbo2js``):
    ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}``."""
    return calls(kind, port, [{"method": method, "args": list(args), **fields}])[0]


def calls(kind: str, port: int, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls made in order on one consumer; one result each."""
    return json_lines(["node", "client.js", kind, f"127.0.0.1:{port}", json.dumps(steps)],
                      PEERS, CALL_TIMEOUT)


def start_traffic(kind: str, port: int, steps: list[dict[str, Any]], repeat: int,
                  interval_ms: int = 0) -> subprocess.Popen[str]:
    """A consumer making ``steps`` ``repeat`` times in the background; read its
    summary with :func:`traffic_summary`."""
    return subprocess.Popen(
        ["node", "client.js", kind, f"127.0.0.1:{port}", json.dumps(steps), "--repeat",
         str(repeat), "--interval", str(interval_ms), "--summary"],
        cwd=PEERS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def traffic_summary(proc: subprocess.Popen[str], timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"traffic printed nothing (exit {proc.returncode}): {err[-2000:]}")
    return lines[-1]


PY_CALL = """
import json, sys
from dubbo.client import DubboClient
port, method, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = DubboClient(sys.argv[4], version=sys.argv[5], dubbo_version="2.0.2",
                     host="127.0.0.1:" + port)
try:
    out = {"ok": True, "result": client.call(method, args, timeout=5)}
except Exception as e:
    out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
print(json.dumps(out, default=str), flush=True)
"""


PY_ZK_CALL = """
import json, os, sys
from dubbo.client import DubboClient, ZkRegister
zk_address, method, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
registry = ZkRegister(zk_address)
client = DubboClient(sys.argv[4], version=sys.argv[5], dubbo_version="2.0.2",
                     zk_register=registry)
try:
    out = {"ok": True, "result": client.call(method, args, timeout=5),
           "provider": registry.get_provider_host(sys.argv[4])}
except Exception as e:
    out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
print(json.dumps(out, default=str), flush=True)
os._exit(0)  # kazoo's threads would hold the exit up
"""


def python3_dubbo_zk_call(python: Path, zookeeper: str, method: str, *args: Any,
                          service: str = SERVICE, version: str = VERSION) -> dict[str, Any]:
    """One call by python3-dubbo's DubboClient finding its provider in ZooKeeper
    (``ZkRegister``, which registers the consumer there too); ``provider`` says where
    it went."""
    return json_lines([str(python), "-c", PY_ZK_CALL, zookeeper, method,
                       json.dumps(list(args)), service, version], PEERS, CALL_TIMEOUT)[0]


def python3_dubbo_call(python: Path, port: int, method: str, *args: Any,
                       service: str = SERVICE, version: str = VERSION) -> dict[str, Any]:
    """One call by python3-dubbo's DubboClient (a direct host, no registry)."""
    return json_lines([str(python), "-c", PY_CALL, str(port), method, json.dumps(list(args)),
                       service, version], PEERS, CALL_TIMEOUT)[0]


# -- splitting a byte stream into frames (apart from the codec under test) ------------


def split_frames(stream: bytes) -> list[bytes]:
    """Dubbo frames end to end in ``stream``: 16-byte header, body length at 12."""
    frames = []
    pos = 0
    while pos < len(stream):
        if stream[pos:pos + 2] != b"\xda\xbb":
            raise ValueError(f"not a dubbo frame at {pos}: {stream[pos:pos + 16].hex()}")
        (length,) = struct.unpack_from(">I", stream, pos + 12)
        end = pos + 16 + length
        if end > len(stream):
            raise ValueError(f"partial frame at {pos}")
        frames.append(bytes(stream[pos:end]))
        pos = end
    return frames


def exchange(port: int, frame: bytes, *, expect: int = 1, timeout: float = START_TIMEOUT
             ) -> list[bytes]:
    """Send ``frame`` on a new connection; the ``expect`` whole frames answered."""
    buffer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(frame)
        while True:
            try:
                frames = split_frames(buffer)
                if len(frames) >= expect:
                    return frames
            except ValueError:
                pass
            data = s.recv(RELAY_CHUNK)
            if not data:
                return split_frames(buffer) if buffer else []
            buffer += data
