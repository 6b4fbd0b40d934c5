"""Active health checking: probe every host of a cluster on a timer.

Runs once per process tree: in the parent when there are workers (which follow the
results through :class:`mosn.upstream.cluster.SharedHealth`), else in the one
process. For each host: wait ``initial_delay_seconds``, then probe every ``interval``
plus up to ``interval_jitter``, each probe bounded by ``timeout``. A healthy host
turns unhealthy after ``unhealthy_threshold`` failed probes in a row, and back after
``healthy_threshold`` good ones (MOSN's session checker). Hosts start healthy.

A probe is a health checker named by ``health_check.protocol``: built in are ``tcp``
(a connect) and ``http`` (MOSN's ``Http1``: a GET whose status must be in the
expected ranges); RPC plugins add theirs with the ``mosn_health_checkers`` hook, a
:class:`HeartbeatChecker` over their codec's heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import anyio
from pydantic import Field, field_validator

from mosn.config.base import Model
from mosn.config.types import Address, Duration
from mosn.plugins import Extension, hookimpl
from mosn.rpc.codec import CodecError, FrameKind
from mosn.upstream.cluster import FAILED_ACTIVE_HC

log = logging.getLogger("mosn.upstream.health")

MAX_STATUS_LINE = 8192
"""Bytes read of an HTTP health check answer looking for its status line."""
MAX_HEARTBEAT_ANSWER = 64 * 1024
"""Bytes read of an RPC host's answer looking for its heartbeat reply: a reply is a
few dozen bytes; a host that sends this much else is not answering the heartbeat."""


class HealthCheckFailed(Exception):
    """A probe's answer was wrong (as opposed to no answer at all)."""


async def open_connection(address: Address, limit: int = MAX_STATUS_LINE, tls: Any = None,
                          host_name: str = "",
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection for a probe; ``tls``: the cluster's ``ClientTls`` (a host of a
    TLS cluster is probed over TLS, as Envoy's health checks use the cluster's
    transport socket)."""
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs = {"ssl": tls.context(("http/1.1",)),
                  "server_hostname": tls.server_name or host_name or address.host or None,
                  "ssl_handshake_timeout": tls.handshake_timeout}
    if address.is_unix:
        return await asyncio.open_unix_connection(address.path, limit=limit, **kwargs)
    return await asyncio.open_connection(address.host, address.port, limit=limit, **kwargs)


def probe_connection(host: Any, address: Address | None = None,
                     limit: int = MAX_STATUS_LINE) -> Any:
    """``open_connection`` to ``host`` (or another ``address`` of it), with the TLS of
    its cluster unless the host disables it."""
    return open_connection(address or host.address, limit, tls=host.tls,
                           host_name=host.hostname)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


# -- the built-in checkers ------------------------------------------------------------


class TcpChecker:
    """Healthy when a TCP (or Unix socket) connection can be made."""

    def __init__(self, config: Any = None, cluster_config: Any = None) -> None:
        pass

    async def check(self, host: Any) -> bool:
        _, writer = await probe_connection(host)
        await close(writer)
        return True


class CodeRange(Model):
    """MOSN's ``{Start, End}``: both ends included."""

    start: int = Field(ge=100, le=599)
    end: int = Field(ge=100, le=599)


class HttpCheckConfig(Model):
    """MOSN's ``http_check_config``."""

    port: int = Field(default=0, ge=0, le=65535)
    """Probe this port of the host's IP (0: the host's own port)."""
    path: str = "/"
    method: str = "GET"
    scheme: str = "http"
    domain: str = ""
    """The Host header (default: the host's address)."""
    timeout: Duration = 0.0
    """Not used: ``health_check.timeout`` bounds each probe."""
    codes: list[CodeRange] = Field(default_factory=list)
    """Statuses that mean healthy (default: 200 only, MOSN's)."""

    @field_validator("scheme")
    @classmethod
    def _plain(cls, value: str) -> str:
        if value.lower() != "http":
            raise ValueError("only http is supported")
        return value.lower()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value


class HttpCheckerConfig(Model):
    """``health_check.check_config`` for ``http``: MOSN's ``{http_check_config: {...}}``."""

    http_check_config: HttpCheckConfig = Field(default_factory=HttpCheckConfig)


class HttpChecker:
    """An HTTP/1.1 request per probe; healthy when the status is expected."""

    def __init__(self, config: HttpCheckerConfig | None = None, cluster_config: Any = None) -> None:
        self.config = (config or HttpCheckerConfig()).http_check_config
        self.codes = [(c.start, c.end) for c in self.config.codes] or [(200, 200)]

    async def check(self, host: Any) -> bool:
        c = self.config
        address = host.address
        if c.port and not address.is_unix:
            address = Address(address.host, c.port)
        reader, writer = await probe_connection(host, address)
        try:
            authority = c.domain or str(address)
            writer.write(f"{c.method} {c.path} HTTP/1.1\r\nHost: {authority}\r\n"
                         "User-Agent: mosn-health-check\r\nConnection: close\r\n\r\n".encode())
            line = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise HealthCheckFailed("no HTTP status line") from exc
        finally:
            await close(writer)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise HealthCheckFailed(f"not an HTTP status line: {line[:80]!r}")
        status = int(parts[1])
        return any(lo <= status <= hi for lo, hi in self.codes)


class HeartbeatChecker:
    """Healthy when the host answers an RPC protocol's heartbeat with success: the
    codec's ``heartbeat()`` request is sent on a new connection, and its frames are
    read until the ``HEARTBEAT_REPLY`` (whose status must map to 200). An RPC plugin
    registers one per protocol: ``HeartbeatChecker(codec)`` as the factory's result
    (``bolt`` in the SOFARPC plugin)."""

    def __init__(self, codec: Any) -> None:
        self.codec = codec

    async def check(self, host: Any) -> bool:
        codec = self.codec
        reader, writer = await probe_connection(host)
        try:
            writer.write(codec.heartbeat())
            await writer.drain()
            buffer = bytearray()
            read = 0
            while True:
                try:
                    frame = codec.decode(buffer)
                except CodecError as exc:
                    raise HealthCheckFailed(f"not a {codec.name} answer: {exc}") from None
                if frame is not None:
                    if frame.kind is not FrameKind.HEARTBEAT_REPLY:
                        continue
                    status = codec.http_status(frame.status)
                    if status != 200:
                        raise HealthCheckFailed(f"heartbeat answered with status "
                                                f"{frame.status} ({status})")
                    return True
                if read > MAX_HEARTBEAT_ANSWER:
                    raise HealthCheckFailed(f"no heartbeat reply in {read} bytes")
                data = await reader.read(MAX_HEARTBEAT_ANSWER)
                if not data:
                    raise ConnectionResetError("closed without answering the heartbeat")
                read += len(data)
                buffer += data
        finally:
            await close(writer)


@hookimpl
def mosn_health_checkers() -> list[Extension]:
    return [
        Extension("tcp", TcpChecker, description="a TCP connect"),
        Extension("http", HttpChecker, HttpCheckerConfig,
                  description="an HTTP/1.1 GET with an expected status"),
        Extension("Http1", HttpChecker, HttpCheckerConfig,
                  description="MOSN's name for the http checker"),
        Extension("http1", HttpChecker, HttpCheckerConfig,
                  description="MOSN's name for the http checker, as its samples write it"),
    ]


# -- running them ---------------------------------------------------------------------


class ClusterHealthChecker:
    """Probes every host of one cluster, following its host set as it changes."""

    def __init__(self, cluster: Any, checker: Any) -> None:
        self.cluster = cluster
        self.config = cluster.config.health_check
        self.checker = checker
        self.stats = cluster.more
        self._scopes: dict[Any, anyio.CancelScope] = {}
        self._counts: dict[Any, list[int]] = {}
        self._changed = anyio.Event()
        cluster.on_hosts_changed.append(lambda _: self._changed.set())

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            while True:
                self._follow_hosts(tg)
                self._update_healthy()
                await self._changed.wait()
                self._changed = anyio.Event()

    def _follow_hosts(self, tg: Any) -> None:
        hosts = set(self.cluster.hosts)
        for host in [h for h in self._scopes if h not in hosts]:
            self._scopes.pop(host).cancel()
            self._counts.pop(host, None)
        for host in self.cluster.hosts:
            if host not in self._scopes:
                scope = self._scopes[host] = anyio.CancelScope()
                self._counts[host] = [0, 0]
                tg.start_soon(self._probe_forever, host, scope)

    async def _probe_forever(self, host: Any, scope: anyio.CancelScope) -> None:
        config = self.config
        with scope:
            await anyio.sleep(config.initial_delay_seconds)
            while True:
                self._record(host, await self.probe(host))
                await anyio.sleep(config.interval + random.uniform(0, config.interval_jitter))

    async def probe(self, host: Any) -> bool:
        v, s = self.cluster.store.values, self.stats
        v[s.health_check_attempt] += 1
        try:
            with anyio.fail_after(self.config.timeout):
                ok = bool(await self.checker.check(host))
        except (TimeoutError, OSError) as exc:
            log.debug("health check of %s in %s: %r", host, self.cluster.name, exc)
            v[s.health_check_network_failure] += 1
            ok = False
        except HealthCheckFailed as exc:
            log.debug("health check of %s in %s: %s", host, self.cluster.name, exc)
            ok = False
        except Exception:  # a checker plugin's bug must not stop the others
            log.exception("health checker %s failed on %s", self.config.protocol, host)
            ok = False
        v[s.health_check_success if ok else s.health_check_failure] += 1
        return ok

    def _record(self, host: Any, ok: bool) -> None:
        counts = self._counts.get(host)
        if counts is None or host.slot < 0:  # removed meanwhile
            return
        failed = bool(host.health_flags & FAILED_ACTIVE_HC)
        config = self.config
        if ok:
            counts[1] = 0
            if failed:
                counts[0] += 1
                if counts[0] >= config.healthy_threshold:
                    counts[0] = 0
                    log.info("cluster %s: host %s is healthy again", self.cluster.name, host)
                    self.cluster.count(self.stats.health_check_turned_healthy)
                    self.cluster.set_active_health(host, True)
                    self._update_healthy()
        else:
            counts[0] = 0
            if not failed:
                counts[1] += 1
                if counts[1] >= config.unhealthy_threshold:
                    counts[1] = 0
                    log.warning("cluster %s: host %s failed its health check", self.cluster.name,
                                host)
                    self.cluster.count(self.stats.health_check_turned_unhealthy)
                    self.cluster.set_active_health(host, False)
                    self._update_healthy()

    def _update_healthy(self) -> None:
        healthy = sum(1 for h in self.cluster.hosts if not h.health_flags & FAILED_ACTIVE_HC)
        self.cluster.store.values[self.stats.health_check_healthy] = healthy


def build_checker(cluster: Any, plugins: Any) -> ClusterHealthChecker | None:
    config = cluster.config.health_check
    if config is None:
        return None
    ext = plugins.get("health_checker", config.protocol)
    assert ext is not None, "the loader checks health_check.protocol"
    checker = ext.factory(config.parsed, cluster.config)
    return ClusterHealthChecker(cluster, checker)
