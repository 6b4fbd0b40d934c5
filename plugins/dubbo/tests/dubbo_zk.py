"""A real ZooKeeper server for the registry tests: Debian's ``zookeeper`` package
(installed on first use when running as root), run standalone on a free port with a
temporary data dir; stopped and started again on the same port and data (a restart
keeps the sessions and their ephemeral nodes, as a real outage would)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from mosn.testing import install_lock

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
ZOOKEEPER_CONF = Path("/etc/zookeeper/conf")
"""Debian's log4j settings (the class path needs them)."""
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
START_TIMEOUT = 30.0  # seconds for the JVM to answer on a loaded CI machine
INSTALL_TIMEOUT = 600.0  # seconds for apt-get
TICK_MS = 500
"""ZooKeeper's tick: sessions may last 2 to 20 ticks (1 to 10 s here), so a lost
client's ephemeral nodes go quickly."""


def zookeeper_missing() -> str | None:
    """Why ZooKeeper cannot run here (after trying to install it), or None."""
    if not ZOOKEEPER_JAR.exists():
        if os.geteuid() != 0:
            return "the zookeeper package is not installed (apt-get install zookeeper)"
        with install_lock(ZOOKEEPER_JAR):  # another test process may be installing it
            if not ZOOKEEPER_JAR.exists():
                env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                subprocess.run(["apt-get", "update", "-qq"], check=False,
                               timeout=INSTALL_TIMEOUT, env=env, stdout=subprocess.DEVNULL)
                subprocess.run(["apt-get", "install", "-y", "-qq", "zookeeper"], check=False,
                               timeout=INSTALL_TIMEOUT, env=env, stdout=subprocess.DEVNULL)
        if not ZOOKEEPER_JAR.exists():
            return "apt-get install zookeeper failed"
    if shutil.which("java") is None:
        return "java is not installed"
    return None


def _ask(port: int, word: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(word)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


class ZooKeeper:
    """A standalone ZooKeeper on 127.0.0.1:port."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.workdir = workdir
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.config = workdir / "zoo.cfg"
        self.config.write_text(
            f"tickTime={TICK_MS}\n"
            f"dataDir={workdir / 'data'}\n"
            f"clientPort={port}\n"
            "clientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = open(self.workdir / "zookeeper.log", "ab")  # noqa: SIM115 (the JVM's)
        self.proc = subprocess.Popen(
            ["java", "-Xmx128m", "-cp", f"{ZOOKEEPER_CONF}:{ZOOKEEPER_JAR}",
             f"-Dzookeeper.log.dir={self.workdir}", "-Dzookeeper.root.logger=INFO,CONSOLE",
             MAIN, str(self.config)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited {self.proc.returncode}: "
                                   f"{(self.workdir / 'zookeeper.log').read_text()[-2000:]}")
            try:
                if _ask(self.port, b"ruok") == b"imok":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("ZooKeeper did not start")

    def stop(self) -> None:
        """Kill it (an outage, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
