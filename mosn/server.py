"""Run a validated config: bind, fork the workers, serve, drain on a signal.

Order matters and is the same for one process or many: everything that can fail
(the config, the plugins, binding each listener and the admin port) happens before
anything serves. Then, with ``--workers N``, the parent forks N workers that inherit
the bound sockets and the shared stats, and keeps the admin API, the active health
checks and host discovery for itself (with a stats row of its own); with one worker
the single process does all of it. The workers follow health through shared memory
and get host-set changes over a socket pair per worker (one JSON line per change).

Signals: the first SIGTERM or SIGINT stops accepting and lets open connections finish
for up to ``graceful_timeout``; a second one closes them at once. SIGHUP (with
workers) reloads the config file: the parent builds the new config on the listening
sockets it kept, forks new workers, then drains the old ones; their stats carry over
by name (:meth:`StatsStore.follow`).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import gc
import json
import logging
import os
import resource
import signal
import socket
import sys
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.abc

from mosn import __version__
from mosn.admin.server import Admin, set_log_levels
from mosn.config import ConfigError, LoadedConfig, load
from mosn.config.loader import admin_exposure
from mosn.config.models import DEFAULT_GRACEFUL_TIMEOUT, FilterConfig
from mosn.network.filter import CloseType
from mosn.network.filter_chain import ChainMatch, FilterChain
from mosn.network.listener import Listener, ListenerIndex, bind
from mosn.network.udp import UdpListener
from mosn.network.overload import OverloadManager
from mosn.observability.observer import StatsObserver
from mosn.observability.runtime import Observability, ObservabilityError
from mosn.observability.stats import (
    LISTENER_STATS,
    SERVER_STATS,
    UDP_LISTENER_STATS,
    StatsStore,
)
from mosn.plugins import BuildContext
from mosn.router import Routers
from mosn.tls import CertificateWatcher, ServerTls
from mosn.stream.types import go_away
from mosn.upstream.cluster import ClusterManager

log = logging.getLogger("mosn")

WORKER_POLL_INTERVAL = 0.2
"""Seconds between the parent's checks that its workers are alive."""
DRAIN_POLL_INTERVAL = 0.1
"""Seconds between checks that draining connections are gone."""
FIRST_REQUEST_WAIT = 0.1
"""Seconds a draining worker waits between accepting no more and asking its
connections to go away: one accepted just before has its first request on the way
(a client writes right after connecting, and on a reload the other workers go on
accepting), and an HTTP/1 connection asked while idle closes without reading it."""
MAX_CONTROL_MESSAGE = 64 * 1024 * 1024
"""Bytes of one host-set message from the parent to a worker (a cluster of thousands
of hosts with metadata fits)."""
_PR_SET_PDEATHSIG = 1


class StartError(Exception):
    """The proxy cannot start (a port in use ...); the message says where and why."""


def worker_count(value: str | int) -> int:
    if value == "auto":
        return len(os.sched_getaffinity(0))
    n = int(value)
    if n < 1:
        raise ValueError("--workers must be at least 1 or 'auto'")
    return n


@dataclass
class Runtime:
    """Everything a worker serves, built (and its stats registered) before any fork."""

    loaded: LoadedConfig
    store: StatsStore = field(default_factory=StatsStore)
    clusters: ClusterManager = field(init=False)
    listeners: list[Listener] = field(default_factory=list)
    admin_sock: socket.socket | None = None
    metrics_socks: list[socket.socket] | None = None
    """The ``metrics`` block's Prometheus sinks' sockets (kept over a reload, as
    the admin's)."""
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    observability: Observability = field(init=False)
    overload: OverloadManager = field(init=False)
    sockets: dict[str, socket.socket] = field(default_factory=dict)
    """Listening sockets of the config before a reload, by address: taken over, not
    bound again, so the port never stops accepting."""

    def __post_init__(self) -> None:
        config, plugins = self.loaded.config, self.loaded.plugins
        self._bound: list[socket.socket] = []
        self.server_stats = self.store.scope("server", SERVER_STATS)
        self.observability = Observability(config)
        self.clusters = ClusterManager(config, plugins, self.store)
        self.tls_holders: list[tuple[str, Any]] = [
            (f"cluster {c.name}", c.tls) for c in self.clusters.clusters.values()
            if c.tls is not None]
        """Every TLS context holder (``ServerTls``, ``ClientTls``), for rotation and
        ``/certs``."""
        context = BuildContext(host=plugins, cluster_manager=self.clusters, stats=self.store,
                               routers=Routers(r for _, r in config.routers()))
        if config.servers:
            self.graceful_timeout = config.servers[0].graceful_timeout
        try:
            handing_off = []
            for path, lc in config.listeners():
                name = lc.name or str(lc.address)
                stream_filters = tuple(
                    _extension(plugins, "stream_filter", flt).factory(flt.parsed, context)
                    for flt in lc.stream_filters)
                try:
                    logged = self.observability.observers(path, lc, name, self.store)
                except ObservabilityError as exc:
                    raise StartError(str(exc)) from None
                observers = (StatsObserver(self.store, name, plugins.names("protocol"),
                                           self.clusters.clusters.values()), *logged)
                chain_context = replace(context, stream_filters=stream_filters,
                                        observers=observers)
                chains = []
                for i, fc in enumerate(lc.filter_chains):
                    installs = [_extension(plugins, "network_filter", flt).factory(
                        flt.parsed, chain_context) for flt in fc.filters]
                    certificates = fc.enabled_tls()
                    tls = ServerTls(certificates) if certificates else None
                    chain_name = fc.name or str(i)
                    if tls is not None:
                        self.tls_holders.append((f"listener {name}" if len(lc.filter_chains) == 1
                                                 else f"listener {name} chain {chain_name}", tls))
                    match = ChainMatch(fc.filter_chain_match) if fc.filter_chain_match else None
                    chains.append(FilterChain(chain_name, _chain(installs), match, tls))
                stats = self.store.scope(f"listener.{name}", UDP_LISTENER_STATS
                                         if lc.network == "udp" else LISTENER_STATS)
                if lc.network == "udp":
                    sock = self._bind(f"{path}.address", lc.address, lc.reuseport, udp=True)
                    self.listeners.append(UdpListener(
                        name, sock, self.store, stats, chains[0].install,
                        max_datagram_size=lc.max_datagram_size))
                    continue
                sock = None if lc.is_virtual else self._bind(
                    f"{path}.address", lc.address, lc.reuseport,
                    transparent=lc.use_original_dst == "tproxy")
                listener = Listener(
                    name, sock, self.store, stats, chains,
                    max_connections=lc.max_connections,
                    idle_timeout=lc.connection_idle_timeout,
                    buffer_limit=lc.per_connection_buffer_limit_bytes,
                    listener_filters=self._listener_filters(lc, context),
                    tls_optional=lc.inspector,
                    listener_filters_timeout=lc.listener_filters_timeout,
                    continue_on_listener_filters_timeout=lc.continue_on_listener_filters_timeout,
                    address=lc.address,
                )
                self.listeners.append(listener)
                if lc.use_original_dst:
                    handing_off.append(listener)
            index = ListenerIndex(lst for lst in self.listeners if isinstance(lst, Listener))
            for listener in handing_off:
                listener.hand_off = index.find
            if self.admin_sock is None:
                self.admin_sock = self._bind("admin.address", config.admin.bind, False)
            if self.metrics_socks is None:
                self.metrics_socks = [
                    self._bind(f"metrics.sinks[{i}].config.port", sink.config.bind, False)
                    for i, sink in enumerate(config.metrics.sinks if config.metrics else [])]
            self.overload = OverloadManager(config.overload_manager, self.store, self.listeners)
        except Exception:  # a reload that fails must not keep a port it bound
            self.close_sockets()
            raise

    def _listener_filters(self, lc: Any, context: BuildContext) -> tuple[Any, ...]:
        """The listener's filters as configured, with the ones its other settings
        need: ``original_dst`` first for ``use_original_dst`` (MOSN adds it too), the
        TLS inspector for ``inspector: true`` or for chains matched by TLS facts
        (Envoy adds it too)."""
        plugins = self.loaded.plugins
        filters = list(lc.listener_filters)
        types = {flt.type for flt in filters}
        if lc.use_original_dst and "original_dst" not in types:
            filters.insert(0, _parsed_filter(plugins, "original_dst",
                                             {"type": lc.use_original_dst}))
        if "tls_inspector" not in types and (lc.inspector or _needs_tls_inspector(lc)):
            filters.append(_parsed_filter(plugins, "tls_inspector", {}))
        return tuple(_extension(plugins, "listener_filter", flt).factory(flt.parsed, context)
                     for flt in filters)

    def _bind(self, path: str, address: Any, reuseport: bool, transparent: bool = False,
              udp: bool = False) -> socket.socket:
        key = f"udp:{address}" if udp else str(address)
        if key in self.sockets:
            return self.sockets[key]
        try:
            sock = bind(address, reuseport, transparent,
                        socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        except OSError as exc:
            reason = exc.strerror or exc
            if transparent and exc.errno == errno.EPERM:
                reason = f"{reason} (use_original_dst: tproxy needs CAP_NET_ADMIN)"
            raise StartError(f"{path}: cannot listen on {address}: {reason}") from None
        self._bound.append(sock)
        return sock

    def listener_sockets(self) -> dict[str, socket.socket]:
        """The bound sockets by address (``udp:`` in front for UDP ones)."""
        return {(f"udp:{lc.address}" if lc.network == "udp" else str(lc.address)): lst.sock
                for (_, lc), lst in zip(self.loaded.config.listeners(), self.listeners)
                if lst.sock is not None}

    def close_sockets(self) -> None:
        """Close the sockets this runtime bound (not those it took over)."""
        for sock in self._bound:
            sock.close()


def _extension(plugins: Any, kind: str, flt: Any) -> Any:
    ext = plugins.get(kind, flt.type)
    assert ext is not None, "the loader checks filter types"
    return ext


def _parsed_filter(plugins: Any, type_: str, config: dict[str, Any]) -> FilterConfig:
    """A listener filter the runtime adds, its config validated as the loader would."""
    flt = FilterConfig(type=type_, config=config)
    model = _extension(plugins, "listener_filter", flt).config_model
    flt.set_parsed(model.model_validate(config) if model is not None else None)
    return flt


def _needs_tls_inspector(lc: Any) -> bool:
    """Envoy's rule: a chain matched on TLS, or on server names or application
    protocols without naming the transport, needs what the TLS inspector reads."""
    for fc in lc.filter_chains:
        m = fc.filter_chain_match
        if m is not None and (m.transport_protocol == "tls" or (
                not m.transport_protocol and (m.server_names or m.application_protocols))):
            return True
    return False


def _chain(installs: list[Any]) -> Any:
    if len(installs) == 1:
        return installs[0]

    def install(conn: Any) -> None:
        for one in installs:
            if conn.closed:  # refused by a filter before this one (network rbac)
                return
            one(conn)

    return install


def raise_fd_limit() -> None:
    """Allow as many open sockets as the hard limit permits (a proxy holds two per
    connection); the soft default of 1024 is too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run(loaded: LoadedConfig, workers: int = 1) -> int:
    """Serve until a signal; returns the process exit code."""
    raise_fd_limit()
    runtime = Runtime(loaded)
    runtime.store.allocate(workers + 1 if workers > 1 else 1)  # the parent's row last
    admin = Admin(loaded, runtime.store, runtime.clusters, runtime.metrics_socks or ())
    pid_file = loaded.config.pid
    if pid_file:
        with open(pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    try:
        for lst in runtime.listeners:
            log.info("listener %s on %s", lst.name, _listening_on(lst))
        log.info("admin on %s", _sockname(runtime.admin_sock))
        for sock in runtime.metrics_socks or ():
            log.info("metrics sink on %s", _sockname(sock))
        if exposed := admin_exposure(loaded.config):
            log.warning("%s", exposed)
        if workers == 1:
            return anyio.run(_serve, runtime, admin, **anyio_backend())
        # The parent keeps the listening sockets open: a config reload hands them to
        # the next workers, so the ports never stop accepting.
        children, channels = _start_workers(runtime, workers)
        return anyio.run(_supervise, runtime, admin, children, channels, **anyio_backend())
    finally:
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass


EVENT_LOOP_ENV = "MOSN_EVENT_LOOP"
"""``asyncio`` runs mosn on the standard event loop even when uvloop is installed
(an escape hatch should uvloop misbehave; it is about 2x slower on the data path)."""


def anyio_backend() -> dict[str, Any]:
    if os.environ.get(EVENT_LOOP_ENV, "uvloop") == "asyncio":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"backend_options": {"use_uvloop": True}}


def _listening_on(lst: Any) -> str:
    if lst.sock is None:
        return f"{lst.address} (virtual: takes the connections handed over to it)"
    return ("udp:" if lst.sock.type == socket.SOCK_DGRAM else "") + _sockname(lst.sock)


def _sockname(sock: socket.socket | None) -> str:
    if sock is None:
        return "-"
    name = sock.getsockname()
    return f"unix:{name}" if isinstance(name, str) else f"{name[0]}:{name[1]}"


async def _serve(runtime: Runtime, admin: Admin | None, control: socket.socket | None = None,
                 ) -> int:
    """One worker's life (the whole process's, with one worker)."""
    for lst in runtime.listeners:
        await lst.start()
    runtime.overload.start()
    # What is built by now (config models, route tables, plugins) lives as long as the
    # process: keep it out of the garbage collector's full passes, which otherwise
    # show as millisecond pauses in the tail latency.
    gc.freeze()
    log.info("mosn %s serving (pid %d)", __version__, os.getpid())
    signals = ((signal.SIGTERM, signal.SIGUSR1) if admin is None
               else (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1))
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.clusters.run_worker, admin is None)
        tg.start_soon(CertificateWatcher(runtime.tls_holders).run)
        if admin is not None:
            tg.start_soon(admin.serve, runtime.admin_sock)
            tg.start_soon(runtime.clusters.run_control)
            if roll := runtime.observability.roller(runtime.loaded.config, _reopen_logs):
                tg.start_soon(roll)
        if control is not None:
            tg.start_soon(_follow_parent, runtime, control)
        with anyio.open_signal_receiver(*signals) as received:
            draining = False
            async for sig in received:
                if sig == signal.SIGUSR1:  # logrotate moved the logs
                    runtime.observability.reopen_logs()
                    continue
                if sig == signal.SIGHUP:
                    log.warning("config reload needs --workers N (N >= 2: a parent that "
                                "supervises workers); still serving the config started with")
                    continue
                if draining:
                    break
                draining = True
                if admin is not None:
                    admin.draining = True
                tg.start_soon(_drain, runtime, tg.cancel_scope)
        tg.cancel_scope.cancel()
    runtime.overload.stop()
    for lst in runtime.listeners:
        for conn in list(lst.connections):
            conn.close(CloseType.NO_FLUSH)
    runtime.observability.close()  # queued access log lines written, spans exported
    return 0


async def _drain(runtime: Runtime, scope: anyio.CancelScope) -> None:
    log.info("draining: no new connections; waiting up to %gs for open ones",
             runtime.graceful_timeout)
    for lst in runtime.listeners:
        lst.stop_accepting()
    if any(lst.connections for lst in runtime.listeners):
        await anyio.sleep(FIRST_REQUEST_WAIT)
    for lst in runtime.listeners:
        for conn in list(lst.connections):
            go_away(conn)  # a connection without a codec that can just runs until it ends
    with anyio.move_on_after(runtime.graceful_timeout):
        while any(lst.connections for lst in runtime.listeners):
            await anyio.sleep(DRAIN_POLL_INTERVAL)
    scope.cancel()


async def _follow_parent(runtime: Runtime, control: socket.socket) -> None:
    """A worker: apply the host sets and log levels the parent sends."""
    reader, writer = await asyncio.open_connection(sock=control, limit=MAX_CONTROL_MESSAGE)
    try:
        while line := await reader.readline():
            try:
                message = json.loads(line)
                if "log_levels" in message:
                    set_log_levels(message["log_levels"])
                else:
                    runtime.clusters.apply(message)
            except Exception:
                log.exception("worker %d: a message from the parent failed", os.getpid())
    finally:
        writer.close()


class WorkerChannel:
    """The parent's end of one worker's socket pair: JSON lines, never blocking the
    parent (what the socket does not take now is sent when it can)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.buffer = bytearray()
        self._waiting = False

    def send(self, message: dict[str, Any]) -> None:
        if self.sock.fileno() < 0:
            return
        self.buffer += json.dumps(message).encode() + b"\n"
        self._flush()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.buffer)
        except BlockingIOError:
            sent = 0
        except OSError:  # the worker is gone
            self.buffer.clear()
            self.sock.close()
            return
        del self.buffer[:sent]
        loop = asyncio.get_running_loop()
        if self.buffer and not self._waiting:
            self._waiting = True
            loop.add_writer(self.sock.fileno(), self._writable)
        elif not self.buffer and self._waiting:
            self._waiting = False
            loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self._flush()

    def close(self) -> None:
        """The worker is gone (its runtime was replaced by a reload)."""
        if self._waiting and self.sock.fileno() >= 0:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())
        self._waiting = False
        self.buffer.clear()
        self.sock.close()


def _start_workers(runtime: Runtime, workers: int, inherited: tuple[socket.socket, ...] = (),
                   ) -> tuple[list[int], list[WorkerChannel]]:
    """Fork ``workers`` workers serving ``runtime``; the parent then writes the last
    stats row. ``inherited``: the parent's sockets a worker must not keep open."""
    pairs = [socket.socketpair() for _ in range(workers)]
    children: list[int] = []
    try:
        for i in range(workers):
            children.append(_fork_worker(runtime, i, pairs, inherited))
    except OSError:  # no fork (out of memory, process limit): no half set of workers
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for pair in pairs:
            for sock in pair:
                sock.close()
        raise
    for _, theirs in pairs:
        theirs.close()
    runtime.store.use_row(workers)
    return children, [WorkerChannel(ours) for ours, _ in pairs]


def _fork_worker(runtime: Runtime, index: int,
                 pairs: list[tuple[socket.socket, socket.socket]],
                 inherited: tuple[socket.socket, ...] = ()) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _die_with_parent()
        # Forked from the parent's running event loop (a reload): its signal handlers
        # and wakeup fd are the parent's; this process sets up its own.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns ^C into SIGTERM
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the parent's
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the worker's handler is set
        for sock in (*inherited, runtime.admin_sock, *(runtime.metrics_socks or ())):
            if sock is not None:
                sock.close()
        for i, (ours, theirs) in enumerate(pairs):
            ours.close()
            if i != index:
                theirs.close()
        runtime.store.use_row(index)
        code = anyio.run(_serve, runtime, None, pairs[index][1], **anyio_backend())
    except BaseException:
        log.exception("worker %d failed", index)
    finally:
        logging.shutdown()
        os._exit(code)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


async def _supervise(runtime: Runtime, admin: Admin, children: list[int],
                     channels: list[WorkerChannel]) -> int:
    """The parent with workers: admin API, health checks and discovery, worker watch,
    signal forwarding, config reload on SIGHUP."""
    workers = len(children)
    runtime.clusters.publishers = admin.publishers = [channel.send for channel in channels]
    alive = set(children)
    retiring: list[tuple[Runtime, set[int], list[WorkerChannel]]] = []
    """Runtimes replaced by a reload, oldest first, with their draining workers."""
    exit_code = 0
    log.info("mosn %s: %d workers %s", __version__, len(children), sorted(children))

    def forward(sig: int, pids: Any = None) -> None:
        for pid in alive if pids is None else pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def retire() -> None:
        """Release the stats and sockets of replaced runtimes whose workers are gone
        (in order, so a newer store never freezes an older one still counting)."""
        while retiring and not retiring[0][1]:
            old, _, old_channels = retiring.pop(0)
            (retiring[0][0] if retiring else runtime).store.release(old.store)
            for channel in old_channels:
                channel.close()
            in_use = {id(lst.sock) for rt in (runtime, *(r for r, _, _ in retiring))
                      for lst in rt.listeners}
            for lst in old.listeners:
                if lst.sock is not None and id(lst.sock) not in in_use:
                    lst.sock.close()
            old.observability.close()
            log.info("the workers of the config before a reload stopped; their counters "
                     "and histograms kept")

    async def watch() -> None:
        nonlocal exit_code
        while alive:
            await anyio.sleep(WORKER_POLL_INTERVAL)
            for pid in list(alive):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                alive.discard(pid)
                if any(pid in pids for _, pids, _ in retiring):
                    for _, pids, _ in retiring:
                        pids.discard(pid)
                    continue
                if not admin.draining:
                    log.error("worker %d exited unexpectedly (status %d); stopping", pid, status)
                    exit_code = 1
                    admin.draining = True
                    forward(signal.SIGTERM)
            retire()
        tg.cancel_scope.cancel()

    async def reload() -> None:
        nonlocal runtime, children, channels, control
        failed = runtime.server_stats.reload_failed
        try:
            loaded = load(runtime.loaded.source)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("config reload refused, still serving the old config: %s", line)
            runtime.store.values[failed] += 1  # type: ignore[index]
            return
        try:
            new = Runtime(loaded, sockets=runtime.listener_sockets(),
                          admin_sock=runtime.admin_sock, metrics_socks=runtime.metrics_socks)
        except StartError as exc:
            log.error("config reload refused, still serving the old config: %s", exc)
            runtime.store.values[failed] += 1  # type: ignore[index]
            return
        except Exception:
            log.exception("config reload failed, still serving the old config")
            runtime.store.values[failed] += 1  # type: ignore[index]
            return
        if str(loaded.config.admin.bind) != str(runtime.loaded.config.admin.bind):
            log.warning("config reload: the admin API stays on %s (a new admin address "
                        "needs a restart)", _sockname(runtime.admin_sock))
        new.store.allocate(workers + 1)
        new.store.follow(runtime.store)
        kept = {id(s) for s in new.listener_sockets().values()}
        gone = tuple(lst.sock for lst in runtime.listeners
                     if lst.sock is not None and id(lst.sock) not in kept)
        others = tuple(ch.sock for ch in channels) + tuple(
            ch.sock for _, _, old_channels in retiring for ch in old_channels)
        try:
            new_children, new_channels = _start_workers(new, workers, gone + others)
        except OSError:
            log.exception("config reload failed, still serving the old config")
            new.close_sockets()
            runtime.store.values[failed] += 1  # type: ignore[index]
            return
        alive.update(new_children)
        # From here the new workers accept on the same sockets; the old ones finish
        # what they have (go away) within graceful_timeout.
        forward(signal.SIGTERM, children)
        retiring.append((runtime, set(children), channels))
        control.cancel()
        runtime.store.zero_gauges()
        runtime, children, channels = new, new_children, new_channels
        runtime.clusters.publishers = admin.publishers = [ch.send for ch in channels]
        admin.switch(loaded, runtime.store, runtime.clusters)
        control = await tg.start(_control, runtime)
        runtime.store.values[runtime.server_stats.reload_success] += 1  # type: ignore[index]
        for lst in runtime.listeners:
            log.info("listener %s on %s", lst.name, _listening_on(lst))
        log.info("config reloaded from %s: workers %s (draining the old ones)",
                 loaded.source, sorted(children))

    async with anyio.create_task_group() as tg:
        tg.start_soon(admin.serve, runtime.admin_sock)
        control = await tg.start(_control, runtime)
        tg.start_soon(watch)
        if roll := runtime.observability.roller(runtime.loaded.config, _reopen_logs):
            tg.start_soon(roll)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                        signal.SIGHUP, signal.SIGUSR1) as received:
            async for sig in received:
                if sig == signal.SIGUSR1:  # logrotate moved the logs: every worker reopens
                    runtime.observability.reopen_logs()
                    forward(signal.SIGUSR1)
                    continue
                if sig == signal.SIGHUP:
                    if not admin.draining:
                        await reload()
                    continue
                admin.draining = True
                # The listening sockets kept for a reload close here too, so that once
                # the workers stop accepting a new connection is refused, not queued.
                for rt in (runtime, *(r for r, _, _ in retiring)):
                    for lst in rt.listeners:
                        if lst.sock is not None:
                            lst.sock.close()
                forward(signal.SIGTERM)  # a second signal makes the workers stop at once
    return exit_code


def _reopen_logs() -> None:
    """The roller moved the logs: this process's SIGUSR1 reopens them everywhere."""
    os.kill(os.getpid(), signal.SIGUSR1)


async def _control(runtime: Runtime, *,
                   task_status: anyio.abc.TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED,
                   ) -> None:
    """The parent's health checks and discovery for ``runtime``, until a reload
    cancels them."""
    with anyio.CancelScope() as scope:
        task_status.started(scope)
        async with anyio.create_task_group() as tg:
            tg.start_soon(CertificateWatcher(runtime.tls_holders).run)  # health checks' TLS
            await runtime.clusters.run_control()


def configure_logging(level: str, path: str = "") -> None:
    level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level.upper(), level.upper())
    if path in ("", "stderr"):
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    elif path == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
