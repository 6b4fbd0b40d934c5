"""Network namespaces for the interception tests: a "pod" (where mosn and the
application run, with the iptables rules of a sidecar) and a "peer" (the services
the application calls, or the clients that call it), joined by a veth pair.

Everything lives inside the two namespaces (the veth pair is made in them, the
addresses, routes and iptables rules are theirs), so deleting the namespaces removes
it all and nothing touches the host; names carry the process id and a counter, so
runs of the suite side by side do not collide.

The test process enters a namespace for a moment (:meth:`Namespace.entered`, setns
on the calling thread): a socket made there stays in that namespace, and a process
started there (mosn, curl) runs in it.

Where the machine cannot do this (not root, no ``ip``/``iptables``, a kernel without
namespaces or TPROXY), :func:`require` skips the test with the reason, or fails it
when ``MOSN_REQUIRE_NETNS`` is set (``.ci/run`` sets it: CI must run these tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import shutil
import socket
import subprocess
import threading
import time
from functools import cache
from typing import Any, Callable, Iterator

import pytest

REQUIRE_ENV = "MOSN_REQUIRE_NETNS"
"""Set (to anything) to turn a skip for want of namespaces or iptables into a failure."""
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT = 20.0
"""Seconds an ``ip``/``iptables`` command may take on a loaded machine."""
DEADLINE = 10.0
"""Seconds a test waits for a condition (a connection through mosn, a stat)."""
POLL = 0.05

POD_IP, PEER_IP = "10.70.0.1", "10.70.0.2"
POD_IP6, PEER_IP6 = "fd70::1", "fd70::2"
_names = itertools.count(1)
_libc = ctypes.CDLL(None, use_errno=True)


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          check=False)


@cache
def unavailable() -> str:
    """Why this machine cannot run the namespace tests ("" when it can)."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    for tool, package in (("ip", "iproute2"), ("iptables", "iptables"),
                          ("ip6tables", "iptables")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    probe = f"mosnprobe{os.getpid()}"
    done = _run("ip", "netns", "add", probe)
    if done.returncode:
        return f"the kernel refuses a network namespace: {done.stderr.strip()}"
    try:
        for rule in (["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "mark",
                      "--mark", "1", "-m", "owner", "--uid-owner", "1", "-j", "REDIRECT",
                      "--to-ports", "1"],
                     ["iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-j",
                      "TPROXY", "--on-port", "1", "--tproxy-mark", "1"],
                     ["ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j",
                      "REDIRECT", "--to-ports", "1"]):
            done = _run("ip", "netns", "exec", probe, *rule)
            if done.returncode:
                return f"{' '.join(rule)}: {done.stderr.strip()}"
    finally:
        _run("ip", "netns", "del", probe)
    return ""


def require() -> None:
    reason = unavailable()
    if reason:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but the namespace tests cannot run: {reason}")
        pytest.skip(reason)


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, *cmd: str) -> str:
        """Run ``cmd`` in the namespace; its output, or an error with its stderr."""
        done = _run("ip", "netns", "exec", self.name, *cmd)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} in {self.name}: {done.stderr.strip()}")
        return done.stdout

    def iptables(self, *rule: str, v6: bool = False) -> None:
        self.sh("ip6tables" if v6 else "iptables", "-w", *rule)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """This thread in the namespace until the block ends."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Pair:
    """The pod and the peer, joined by a veth pair (``POD_IP``/``PEER_IP``, and
    IPv6 ``POD_IP6``/``PEER_IP6``)."""

    def __init__(self) -> None:
        tag = f"mosn{os.getpid()}x{next(_names)}"
        self.pod = Namespace(f"{tag}pod")
        self.peer = Namespace(f"{tag}peer")

    def create(self) -> None:
        for ns in (self.pod, self.peer):
            done = _run("ip", "netns", "add", ns.name)
            if done.returncode:
                raise RuntimeError(f"ip netns add {ns.name}: {done.stderr.strip()}")
            ns.sh("ip", "link", "set", "lo", "up")
        self.pod.sh("ip", "link", "add", "vpod", "type", "veth", "peer", "name", "vpeer",
                    "netns", self.peer.name)
        for ns, dev, ip, ip6 in ((self.pod, "vpod", POD_IP, POD_IP6),
                                 (self.peer, "vpeer", PEER_IP, PEER_IP6)):
            ns.sh("ip", "addr", "add", f"{ip}/24", "dev", dev)
            ns.sh("ip", "-6", "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
            ns.sh("ip", "link", "set", dev, "up")

    def delete(self) -> None:
        for ns in (self.pod, self.peer):
            _run("ip", "netns", "del", ns.name)


@contextlib.contextmanager
def pair() -> Iterator[Pair]:
    require()
    made = Pair()
    try:
        made.create()
        yield made
    finally:
        made.delete()


class RecordingServer:
    """A TCP server in a namespace: it echoes each connection's bytes after ``tag``,
    and records them with the client's address once the client is done."""

    def __init__(self, ns: Namespace | None, host: str, port: int, tag: bytes) -> None:
        """``ns`` None: the test's own namespace."""
        with ns.entered() if ns is not None else contextlib.nullcontext():
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(64)
        self.tag = tag
        self.received: list[tuple[Any, bytes]] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn, peer), daemon=True).start()

    def _one(self, conn: socket.socket, peer: Any) -> None:
        with conn:
            data = b""
            try:
                while chunk := conn.recv(65536):
                    conn.sendall(chunk if data else self.tag + chunk)
                    data += chunk
            except OSError:
                pass
            self.received.append((peer, data))

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def exchange(ns: Namespace, host: str, port: int, data: bytes,
             timeout: float = DEADLINE) -> bytes:
    """Connect from ``ns`` to ``host:port``, send ``data``, half-close, return the
    whole answer (what came before a reset, if mosn reset the connection)."""
    with ns.entered():
        sock = socket.create_connection((host, port), timeout=timeout)
    with sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            # mosn may close (or reset) before the client has finished sending:
            # the connection's answer is then whatever arrived before that.
            if error.errno not in (errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE):
                raise
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not after {timeout}s: {what}")
        time.sleep(POLL)
