"""The real Dubbo peers the tests run, installed on first use; a recording relay; a
frame splitter written apart from the codec under test.

Node.js peers (``peers/package.json``, locked): sofa-rpc-node's RpcServer and RpcClient
speaking Dubbo through dubbo-remoting, apache-dubbo-js and dubbo2.js (consumers).
Python peer: python3-dubbo (a consumer), in its own venv under ``peers/`` so its
top-level package ``dubbo`` and its pinned kazoo stay out of mosn's venv.

(Named ``dubbo_peers`` so it cannot clash with another plugin's test helpers.)
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
DATA = HERE / "data"
NODE_MODULES = PEERS / "node_modules"
PY_VENV = PEERS / ".venv-python3-dubbo"
PY_READY = PY_VENV / "installed"
PY_REQUIREMENTS = PEERS / "requirements-python3-dubbo.txt"

SERVICE = "com.example.EchoService"
VERSION = "1.0.0"
UNKNOWN_SERVICE = "com.example.UnknownService"
"""Offered by no provider and named by no route."""

START_TIMEOUT = 15.0  # seconds for a peer to come up on a loaded CI machine
CALL_TIMEOUT = 60.0  # seconds for a client process: start, connect, its calls, exit
INSTALL_TIMEOUT = 600.0  # seconds for npm ci or a pip install into the peer venv
RELAY_CHUNK = 65536  # bytes read per recv by the relay


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


# -- installing the peers -------------------------------------------------------------


def node_missing() -> str | None:
    """Why the Node.js peers cannot run here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def ensure_node_modules() -> None:
    """``npm ci`` in peers/ unless node_modules is there already."""
    if (NODE_MODULES / ".package-lock.json").exists():
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True,
                   timeout=INSTALL_TIMEOUT, stdout=subprocess.DEVNULL)


def ensure_python3_dubbo() -> Path:
    """The interpreter of the python3-dubbo venv, created and installed if needed."""
    python = PY_VENV / "bin" / "python"
    if not PY_READY.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PY_VENV)],
                       check=True, timeout=INSTALL_TIMEOUT)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(PY_REQUIREMENTS)], check=True, timeout=INSTALL_TIMEOUT)
        PY_READY.write_text("ok\n")
    return python


def node_package_version(name: str) -> str:
    return json.loads((NODE_MODULES / name / "package.json").read_text())["version"]


# -- servers and clients --------------------------------------------------------------


class Peer:
    """A provider process; ready once it printed ``listening PORT``."""

    def __init__(self, args: list[str], port: int) -> None:
        self.port = port
        self.args = args
        self.proc = subprocess.Popen(args, cwd=PEERS, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        ready = threading.Event()

        def wait_line() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("listening"):
                    ready.set()

        threading.Thread(target=wait_line, daemon=True).start()
        if not ready.wait(START_TIMEOUT):
            self.stop()
            raise TimeoutError(f"peer {args} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_provider(port: int, name: str = "") -> Peer:
    """sofa-rpc-node's RpcServer with dubbo-remoting: com.example.EchoService 1.0.0
    (see peers/server.js); ``whoami`` answers ``name``."""
    return Peer(["node", "server.js", str(port), name or f"provider-{port}"], port)


def _json_lines(args: list[str], timeout: float = CALL_TIMEOUT) -> list[dict[str, Any]]:
    out = subprocess.run(args, cwd=PEERS, capture_output=True, text=True, timeout=timeout,
                         check=False)  # a failed call still prints its JSON line
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{args} printed nothing (exit {out.returncode}): {out.stderr[-2000:]}")
    return lines


def call(kind: str, port: int, method: str, *args: Any, **fields: Any) -> dict[str, Any]:
    """One call by a Node.js consumer (``sofa``, ``apache`` or ``dubbo2js``):
    ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}``."""
    return calls(kind, port, [{"method": method, "args": list(args), **fields}])[0]


def calls(kind: str, port: int, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls made in order on one consumer; one result each."""
    return _json_lines(["node", "client.js", kind, f"127.0.0.1:{port}", json.dumps(steps)])


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


def python3_dubbo_call(python: Path, port: int, method: str, *args: Any,
                       service: str = SERVICE, version: str = VERSION) -> dict[str, Any]:
    """One call by python3-dubbo's DubboClient (a direct host, no registry)."""
    return _json_lines([str(python), "-c", PY_CALL, str(port), method, json.dumps(list(args)),
                        service, version])[0]


# -- a recording relay ----------------------------------------------------------------


class Recording:
    """The bytes of one relayed connection, each direction in order."""

    def __init__(self) -> None:
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.done = threading.Event()


class Relay:
    """Forwards 127.0.0.1:port to 127.0.0.1:upstream_port, recording each connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.recordings: list[Recording] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            recording = Recording()
            self.recordings.append(recording)
            pumps = [threading.Thread(target=_pump, args=(client, server, recording.to_server)),
                     threading.Thread(target=_pump, args=(server, client, recording.to_client))]
            for p in pumps:
                p.start()

            def finish(pumps: list[threading.Thread] = pumps, rec: Recording = recording,
                       socks: tuple[socket.socket, ...] = (client, server)) -> None:
                for p in pumps:
                    p.join()
                for s in socks:
                    s.close()
                rec.done.set()

            threading.Thread(target=finish, daemon=True).start()

    def take(self, timeout: float = START_TIMEOUT) -> list[Recording]:
        """The connections relayed since the last take that carried bytes, once closed."""
        taken, self.recordings = self.recordings, []
        for r in taken:
            if not r.done.wait(timeout):
                raise TimeoutError("a relayed connection did not close")
        return [r for r in taken if r.to_server or r.to_client]

    def close(self) -> None:
        self._listener.close()


def _pump(src: socket.socket, dst: socket.socket, record: bytearray) -> None:
    try:
        while chunk := src.recv(RELAY_CHUNK):
            record += chunk
            dst.sendall(chunk)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


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
