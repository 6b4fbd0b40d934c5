"""Real SOFARPC peers for the tests and the golden-frame capture, run as processes:

- sofa-rpc-node / sofa-bolt-node (Node.js): ``peers/server.js`` (an RpcServer),
  ``peers/rpc_client.js`` (an RpcClient call), ``peers/bolt_client.js`` (raw frames:
  heartbeats, oneway, bolt v2 with CRC); installed with ``npm ci`` from the lock file;
- anthunder (Python, sofa-bolt-python): ``peers/anthunder_peer.py``, in a venv of its own
  (``peers/.venv-anthunder``) since it pins old packages and sets a process-wide
  asyncio policy on import.

Also a recording TCP relay (to capture what peers say to each other) and a frame
splitter written apart from the codec under test.
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
ANTHUNDER_VENV = PEERS / ".venv-anthunder"
ANTHUNDER_READY = ANTHUNDER_VENV / "installed"
ECHO_SERVICE = "com.example.EchoService:1.0"
UNKNOWN_SERVICE = "com.example.UnknownService:1.0"
"""In the peers' proto file, offered by no server and named by no route."""

START_TIMEOUT = 15.0  # seconds for a peer to come up on a loaded CI machine
CALL_TIMEOUT = 30.0  # seconds for a client process: start, connect, call, exit
INSTALL_TIMEOUT = 600.0  # seconds for npm ci or a pip install into the anthunder venv
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
    """``npm ci`` in peers/ unless node_modules matches the lock file already."""
    if (NODE_MODULES / ".package-lock.json").exists():
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True,
                   timeout=INSTALL_TIMEOUT, stdout=subprocess.DEVNULL)


def ensure_anthunder() -> Path:
    """The interpreter of peers/.venv-anthunder, created and installed if needed."""
    python = ANTHUNDER_VENV / "bin" / "python"
    if not ANTHUNDER_READY.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(ANTHUNDER_VENV)],
                       check=True, timeout=INSTALL_TIMEOUT)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(PEERS / "requirements-anthunder.txt")],
                       check=True, timeout=INSTALL_TIMEOUT)
        ANTHUNDER_READY.write_text("ok\n")
    return python


def node_package_version(name: str) -> str:
    return json.loads((NODE_MODULES / name / "package.json").read_text())["version"]


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


# -- servers and clients --------------------------------------------------------------


class Peer:
    """A peer server process; ready once it printed ``listening PORT``."""

    def __init__(self, args: list[str], port: int) -> None:
        self.port = port
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


def start_node_server(port: int) -> Peer:
    """sofa-rpc-node's RpcServer with com.example.EchoService:1.0 (echo, echoObj, fail)."""
    return Peer(["node", "server.js", str(port)], port)


def start_anthunder_server(python: Path, port: int) -> Peer:
    """anthunder's AioListener with com.example.EchoService:1.0 (echoObj, fail)."""
    return Peer([str(python), "anthunder_peer.py", "server", str(port)], port)


def _json_lines(args: list[str]) -> list[dict[str, Any]]:
    out = subprocess.run(args, cwd=PEERS, capture_output=True, text=True, timeout=CALL_TIMEOUT,
                         check=False)  # a failed call still prints its JSON line
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{args} printed nothing (exit {out.returncode}): {out.stderr[-2000:]}")
    return lines


def hessian_string(text: str) -> dict[str, str]:
    """A hessian2 argument in sofa-rpc-node's js-to-java form."""
    return {"$class": "java.lang.String", "$": text}


def rpc_call(port: int, codec: str, method: str, args: list[Any],
             service: str = ECHO_SERVICE) -> dict[str, Any]:
    """One call with sofa-rpc-node's RpcClient: ``{"ok": True, "result": ...}`` or
    ``{"ok": False, "error": ...}``."""
    return _json_lines(["node", "rpc_client.js", f"127.0.0.1:{port}", codec, method,
                        json.dumps(args), service])[0]


def bolt_steps(port: int, steps: list[dict[str, Any]], *, protocol: str = "bolt",
               bolt_version: int = 1, crc: bool = False) -> list[dict[str, Any]]:
    """Steps on one connection with sofa-bolt-node's encoder and decoder (see
    peers/bolt_client.js); one result per step."""
    args = ["node", "bolt_client.js", f"127.0.0.1:{port}", json.dumps(steps),
            "--protocol", protocol, "--bolt-version", str(bolt_version)]
    return _json_lines(args + (["--crc"] if crc else []))


def anthunder(python: Path, *args: str) -> dict[str, Any]:
    """One run of peers/anthunder_peer.py (``call`` or ``heartbeat``)."""
    return _json_lines([str(python), "anthunder_peer.py", *args])[0]


# -- a recording relay ----------------------------------------------------------------


class Recording:
    """The bytes of one relayed connection, each direction in order."""

    def __init__(self) -> None:
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.done = threading.Event()


class Relay:
    """Forwards 127.0.0.1:port to 127.0.0.1:upstream_port, recording every connection."""

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
            pumps = [
                threading.Thread(target=self._pump, args=(client, server, recording.to_server)),
                threading.Thread(target=self._pump, args=(server, client, recording.to_client)),
            ]
            for p in pumps:
                p.start()
            threading.Thread(target=self._finish, args=(pumps, recording, client, server),
                             daemon=True).start()

    @staticmethod
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

    @staticmethod
    def _finish(pumps: list[threading.Thread], recording: Recording, *socks: socket.socket) -> None:
        for p in pumps:
            p.join()
        for s in socks:
            s.close()
        recording.done.set()

    def take(self, timeout: float = START_TIMEOUT) -> list[Recording]:
        """The connections relayed since the last take that carried bytes, once each
        has closed (anthunder's pool opens and drops idle ones)."""
        taken, self.recordings = self.recordings, []
        for r in taken:
            if not r.done.wait(timeout):
                raise TimeoutError("a relayed connection did not close")
        return [r for r in taken if r.to_server or r.to_client]

    def close(self) -> None:
        self._listener.close()


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
