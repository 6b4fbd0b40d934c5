"""Real peers for interop tests: other implementations of a protocol, run as processes
on 127.0.0.1, and a recording relay to capture what they say to each other.

A plugin keeps its peers in a directory of its own (``tests/peers/``): Node.js peers
with a ``package.json`` and its lock file, installed with ``npm ci``; a Python peer in a
venv of its own (old pinned packages, or a top-level package name that would clash,
stay out of mosn's venv). Every function here takes that directory, or the venv and
its requirements file, as a parameter.

A peer server prints ``listening PORT`` once it accepts connections (:class:`Peer`);
a client process prints one JSON object a line, one per call (:func:`json_lines`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mosn.testing.process import START_TIMEOUT, stop_process

INSTALL_TIMEOUT = 600.0
"""Seconds for ``npm ci`` or a ``pip install`` into a peer's venv."""
CALL_TIMEOUT = 30.0
"""Seconds for a client process: start, connect, call, exit."""
RELAY_CHUNK = 65536
"""Bytes read per recv by the relay."""


# -- installing the peers -------------------------------------------------------------


def node_missing() -> str | None:
    """Why the Node.js peers cannot run here, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@contextlib.contextmanager
def install_lock(target: str | Path) -> Iterator[None]:
    """Held while installing into ``target`` (a directory, or any name for a shared
    install): test processes run side by side (pytest-xdist workers, or two test runs)
    install it once, one at a time; the others wait here, then find it installed.
    The lock is a file in the temporary directory, named after ``target``."""
    key = hashlib.sha256(str(target).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"mosn-install-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def ensure_node_modules(peers: Path) -> None:
    """``npm ci`` in ``peers`` unless its node_modules matches the lock file already;
    the calling test is skipped (saying why) where Node.js or npm is missing."""
    reason = node_missing()
    if reason:
        import pytest

        pytest.skip(f"Node.js peers: {reason}")
    with install_lock(peers.resolve()):
        if (peers / "node_modules" / ".package-lock.json").exists():
            return
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=peers, check=True,
                       timeout=INSTALL_TIMEOUT, stdout=subprocess.DEVNULL)


def ensure_venv(venv: Path, requirements: Path) -> Path:
    """The interpreter of ``venv``, created and ``requirements`` installed if needed
    (once: a file ``installed`` in the venv marks it done)."""
    python = venv / "bin" / "python"
    ready = venv / "installed"
    with install_lock(venv.resolve()):
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)],
                           check=True, timeout=INSTALL_TIMEOUT)
            subprocess.run([str(python), "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", "-r", str(requirements)],
                           check=True, timeout=INSTALL_TIMEOUT)
            ready.write_text("ok\n")
    return python


def pip_install_target(source: Path, target: Path) -> None:
    """``pip install --no-deps --target target source``: a plugin installed into a
    directory of its own. pip builds in ``source`` (its build/ and egg-info), so two
    test processes installing one source take turns."""
    with install_lock(source.resolve()):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--target", str(target), str(source)],
                       check=True, capture_output=True, timeout=INSTALL_TIMEOUT)


def node_package_version(peers: Path, name: str) -> str:
    """The version of the Node.js package ``name`` installed under ``peers``."""
    return json.loads((peers / "node_modules" / name / "package.json").read_text())["version"]


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


# -- servers and clients --------------------------------------------------------------


class Peer:
    """A peer server process run in ``cwd``; ready once it printed ``listening PORT``."""

    def __init__(self, args: list[str], port: int, cwd: Path) -> None:
        self.port = port
        self.args = args
        self.proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE,
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
        stop_process(self.proc)


def json_lines(args: list[str], cwd: Path, timeout: float = CALL_TIMEOUT) -> list[dict[str, Any]]:
    """Run a client process in ``cwd``; the JSON objects it printed, one a line."""
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         check=False)  # a failed call still prints its JSON line
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{args} printed nothing (exit {out.returncode}): {out.stderr[-2000:]}")
    return lines


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
        has closed (a client's pool may open connections and drop them unused)."""
        taken, self.recordings = self.recordings, []
        for r in taken:
            if not r.done.wait(timeout):
                raise TimeoutError("a relayed connection did not close")
        return [r for r in taken if r.to_server or r.to_client]

    def close(self) -> None:
        self._listener.close()
