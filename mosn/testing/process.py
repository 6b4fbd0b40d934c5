"""Real processes on 127.0.0.1 for tests: mosn started on a config, free ports, waits.

A test gives a config as a dict; :class:`MosnProcess` writes it to a file, runs
``python -m mosn start -c FILE`` (the same interpreter as the tests), waits until the
admin API answers ``/ready`` and stops the process (SIGTERM, then SIGKILL) when asked.
The admin API is put on a free port unless the config names one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import yaml

START_TIMEOUT = 60.0
"""Seconds for a server to come up on a loaded CI machine."""
STOP_TIMEOUT = 10.0
"""Seconds a process gets to exit after SIGTERM before it is killed."""
POLL_INTERVAL = 0.05
"""Seconds between readiness probes."""
ADMIN_TIMEOUT = 5.0
"""Seconds an admin API request may take."""


RECENT_PORTS = 4096
"""Ports :func:`free_port` remembers having given: the kernel may hand the same free
port to two calls in a row, and a config built from both would then listen twice on
one port."""
_given: deque[int] = deque(maxlen=RECENT_PORTS)


WORKER_PORTS_FROM = 10000
"""Lowest port of the ranges :func:`free_port` gives pytest-xdist workers. The kernel
hands every process the same free ports, so two workers could each be given one and
both start a server on it; each worker draws instead from a range of its own between
here and the kernel's ephemeral ports (which no outgoing connection takes meanwhile)."""
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_ports = range(0)  # this process's own range of ports; empty: the kernel's choice
_cursor = os.getpid()  # where in the range to start: two runs side by side differ


def worker_ports(count: int, index: int) -> range:
    """Range ``index`` of ``count`` shared out between here and the kernel's ephemeral
    ports; empty (the kernel's choice) when each would be too small."""
    try:
        ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768  # Linux's default
    size = (ephemeral - WORKER_PORTS_FROM) // max(count, 1)
    if size < RECENT_PORTS:
        return range(0)
    return range(WORKER_PORTS_FROM + index * size, WORKER_PORTS_FROM + (index + 1) * size)


def use_ports(ports: range) -> range:
    """Make :func:`free_port` draw from ``ports`` (empty: the kernel's choice); the range
    it drew from before. mosn's pytest plugin gives each pytest-xdist worker
    ``worker_ports(workers, index)``."""
    global _ports
    before, _ports = _ports, ports
    return before


def _candidates() -> Iterator[int]:
    """Ports to try: once round this process's own range, then the kernel's choice (0)."""
    global _cursor
    for _ in _ports:
        _cursor += 1
        yield _ports[_cursor % len(_ports)]
    while True:
        yield 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, and not one this process was given
    lately: the kernel's choice, or in a pytest-xdist worker the next free one of the
    worker's own range (:func:`use_ports`)."""
    candidates = _candidates()
    while True:
        with socket.socket() as s:
            try:
                s.bind((host, next(candidates)))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in _given:
            _given.append(port)
            return port


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = START_TIMEOUT) -> None:
    """Return once something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"nothing listening on {host}:{port}")


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 timeout: float = STOP_TIMEOUT) -> int:
    """Send ``sig`` and wait; kill the process if it outlives ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def serving(command: Callable[[int], Sequence[str]], **popen: Any) -> Iterator[int]:
    """A server process on a free port: ``command(port)`` is its argv (``popen``
    goes to :class:`subprocess.Popen`). Yields the port once it accepts
    connections; the process is stopped on leaving."""
    port = free_port()
    proc = subprocess.Popen(list(command(port)), **popen)
    try:
        wait_for_port(port)
        yield port
    finally:
        stop_process(proc)


@dataclass(frozen=True)
class AdminResponse:
    """What the admin API answered (the attributes an ``httpx.Response`` offers)."""

    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class MosnProcess:
    """A mosn process started on ``config``; ``admin(path)`` queries its admin API.

    ``args`` go after ``start -c FILE`` (``--workers 2`` ...); ``env`` replaces the
    environment (pass ``{**os.environ, "PYTHONPATH": ...}`` to add a plugin's site).
    """

    def __init__(self, config: dict[str, Any], workdir: Path, args: Iterable[str] = (),
                 env: dict[str, str] | None = None, wait: bool = True) -> None:
        admin = config.setdefault("admin", {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": free_port()}}})
        self.admin_port: int = admin["address"]["socket_address"]["port_value"]
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"mosn-{self.admin_port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"mosn-{self.admin_port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (open while mosn runs)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mosn", "start", "-c", str(self.config_path), *args],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # else a mosn slow to start outlives the test that gave up
                raise

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once ``/ready`` says 200; raise with mosn's output if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosn exited {self.proc.returncode}:\n{self.output()}")
            try:
                if self.admin("/ready", timeout=0.5).status_code == 200:
                    return
            except OSError:
                pass
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"mosn not ready after {timeout}s:\n{self.output()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def admin(self, path: str, timeout: float = ADMIN_TIMEOUT) -> AdminResponse:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
                return AdminResponse(r.status, r.read().decode())
        except urllib.error.HTTPError as exc:
            return AdminResponse(exc.code, exc.read().decode())

    def stats(self) -> dict[str, int]:
        return self.admin("/stats?format=json").json()["stats"]

    def wait_stat(self, name: str, value: int, timeout: float = 5.0) -> dict[str, int]:
        """Stats once ``name`` reached ``value`` (or after ``timeout``: counters are
        updated asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats.get(name) == value or time.monotonic() > deadline:
                return stats
            time.sleep(POLL_INTERVAL)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        code = stop_process(self.proc, sig)
        self.log.close()
        return code


def env_with_path(*paths: str | os.PathLike[str]) -> dict[str, str]:
    """This environment with ``paths`` put first on ``PYTHONPATH`` (for a plugin
    installed with ``pip install --target``)."""
    current = os.environ.get("PYTHONPATH")
    parts = [str(p) for p in paths] + ([current] if current else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(parts)}


def assert_reported(config: dict[str, Any], path: str) -> None:
    """Fail unless validating ``config`` reports ``path`` (an unknown key, say), as an
    error or as a warning."""
    from mosn.config import ConfigError, validate

    try:
        loaded = validate(config)
    except ConfigError as exc:
        assert any(e.startswith(path) for e in exc.errors), (
            f"{path} is not among the errors: {exc.errors}")
        return
    assert any(w.startswith(path) for w in loaded.warnings), (
        f"{path} is neither an error nor a warning: {loaded.warnings}")


def plugin_site(directory: str | os.PathLike[str], plugins: Iterable[tuple[str, str]],
                distribution: str = "mosn-testing-site") -> Path:
    """A directory that, put first on ``PYTHONPATH`` (:func:`env_with_path`), makes a
    mosn process load each ``(name, module)`` of ``plugins`` as an installed plugin,
    without installing anything: the metadata of a distribution whose ``mosn.plugins``
    entry points name them (what ``pip install`` writes). Each module must be
    importable in that process. ``mosn.testing.probes.PROBES`` is the kit's own."""
    site = Path(directory)
    name = re.sub(r"[^A-Za-z0-9.]+", "_", distribution)
    info = site / f"{name}-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\n"
                                   "Version: 0.0\n")
    (info / "entry_points.txt").write_text(
        "[mosn.plugins]\n" + "".join(f"{n} = {m}\n" for n, m in plugins))
    return site


def rpc_proxy_config(listen_port: int, protocol: str, upstreams: Iterable[str], *,
                     service: str = ".*", timeout: str = "3s",
                     extend_config: dict[str, Any] | None = None,
                     cluster: dict[str, Any] | None = None,
                     proxy_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-listener config in MOSN's shape: ``protocol`` on ``listen_port``, requests
    whose ``service`` matches the regex ``service`` routed to the hosts ``upstreams``;
    ``proxy_fields`` adds to (or overrides) the ``proxy`` filter's config."""
    proxy: dict[str, Any] = {"downstream_protocol": protocol, "router_config_name": "rpc"}
    if extend_config:
        proxy["extend_config"] = extend_config
    proxy.update(proxy_fields or {})
    return {
        "servers": [{
            "graceful_timeout": "2s",
            "routers": [{"router_config_name": "rpc", "virtual_hosts": [{
                "name": "rpc", "domains": ["*"], "routers": [{
                    "match": {"headers": [{"name": "service", "value": service, "regex": True}]},
                    "route": {"cluster_name": "backend", "timeout": timeout}}]}]}],
            "listeners": [{
                "name": "rpc", "address": f"127.0.0.1:{listen_port}", "bind_port": True,
                "filter_chains": [{"filters": [{"type": "proxy", "config": proxy}]}],
            }],
        }],
        "cluster_manager": {"clusters": [{
            "name": "backend", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": a} for a in upstreams], **(cluster or {})}]},
    }
