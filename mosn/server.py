"""Run a validated config: bind, fork the workers, serve, drain on a signal.

Order matters and is the same for one process or many: everything that can fail
(the config, the plugins, binding each listener and the admin port) happens before
anything serves. What a process serves is a :class:`Runtime` (a generation): the
listener, cluster and route managers of :mod:`mosn.upgrade` built from one config.
With ``--workers N``, the parent forks N workers that inherit the bound sockets and
the shared stats, and keeps the admin API, the active health checks and host
discovery for itself (with a stats row of its own); with one worker the single
process does all of it. The workers follow health through shared memory and get
host-set changes and the control plane's snapshots over a socket pair per worker
(:class:`WorkerChannel`: docs/xds.md, "Workers").

Signals: the first SIGTERM or SIGINT stops accepting and lets open connections finish
for up to ``graceful_timeout``; a second one closes them at once. SIGHUP (and
``POST /reload``) reloads the config file: one process applies it in place through
its managers (:func:`reload_in_place`); a parent with workers (its
:class:`Supervisor`) builds the next :class:`Generation` on the listening sockets it
kept, forks new workers, then retires the old ones once they handed their
connections over; their stats carry over by name (:meth:`StatsStore.follow`).
docs/upgrade.md says which change takes which path. The upgrade protocol itself
(hand-over of listeners and connections) is :mod:`mosn.upgrade`.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import importlib
import logging
import os
import resource
import signal
import socket
import sys
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from mosn import __version__
from mosn.admin.server import Admin, set_log_levels
from mosn.config import ConfigError, LoadedConfig, load
from mosn.config.loader import admin_exposure, read_file
from mosn.config.models import DEFAULT_GRACEFUL_TIMEOUT, FilterConfig
from mosn.network import fdpass
from mosn.network.filter import CloseType
from mosn.network.listener import bind
from mosn.network.overload import OverloadManager
from mosn.observability.runtime import Observability
from mosn.observability.stats import SERVER_STATS, StatsStore
from mosn.plugins import BuildContext
from mosn.router import Routers
from mosn.tls import CertificateWatcher
from mosn.upgrade import handover
from mosn.upgrade.managers import (
    ListenerManager,
    StartError,
    apply_in_place,
    drain,
    in_place_blockers,
    socket_key,
)
from mosn.upstream.cluster import ClusterManager

log = logging.getLogger("mosn")

WORKER_POLL_INTERVAL = 0.2
"""Seconds between the parent's checks that its workers are alive."""
WORKER_EXIT_MARGIN = 5.0
"""Seconds past ``graceful_timeout`` an upgrade waits for draining workers to exit
(they close what is left at ``graceful_timeout``) before it hands over the stats."""
_PR_SET_PDEATHSIG = 1


def worker_count(value: str | int) -> int:
    if value == "auto":
        return len(os.sched_getaffinity(0))
    n = int(value)
    if n < 1:
        raise ValueError("--workers must be at least 1 or 'auto'")
    return n


@dataclass
class Runtime:
    """One generation of what a process serves: the listener, cluster and route
    managers built from one config (and its stats registered) before any fork. A
    reload in place changes it through its managers; a reload with workers builds the
    next generation on the same listening sockets."""

    loaded: LoadedConfig
    store: StatsStore = field(default_factory=StatsStore)
    clusters: ClusterManager = field(init=False)
    admin_sock: socket.socket | None = None
    metrics_socks: list[socket.socket] | None = None
    """The ``metrics`` block's Prometheus sinks' sockets (kept over a reload, as
    the admin's)."""
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    observability: Observability = field(init=False)
    overload: OverloadManager = field(init=False)
    sockets: dict[str, socket.socket] = field(default_factory=dict)
    """Listening sockets of the config before a reload (or handed over by the process
    an upgrade replaces), by address: taken over, not bound again, so the port never
    stops accepting."""
    extends: list[Any] = field(default_factory=list)
    """What the config's ``extends`` entries built (:func:`build_extends`), run by the
    process that runs discovery."""
    control_plane: Any = None
    """The xDS client and composer (``mosn.xds.control.ControlPlane``) under
    ``dynamic_resources``: an upgrade hands its accepted resources over."""
    xds_stats: Any = None
    """The control plane's stats (``mosn.xds.stats.XdsStats``), registered before the
    store is allocated for workers."""

    def __post_init__(self) -> None:
        config, plugins = self.loaded.config, self.loaded.plugins
        self.server_stats = self.store.scope("server", SERVER_STATS)
        self.observability = Observability(config)
        self.clusters = ClusterManager(config, plugins, self.store)
        self.routers = Routers(r for _, r in config.routers())
        if config.servers:
            self.graceful_timeout = config.servers[0].graceful_timeout
        self.listener_manager = ListenerManager(
            plugins, self.store, self.clusters, self.routers, self.observability,
            self.graceful_timeout, self.sockets)
        self._admin_bound: socket.socket | None = None
        self._metrics_bound: list[socket.socket] = []
        self.listener_manager.build_all(config.listeners())
        try:
            if self.admin_sock is None:
                self.admin_sock = self._admin_bound = self._bind_admin()
            if self.metrics_socks is None:
                self.metrics_socks = [
                    self._bind_metrics(i, sink.config.bind)
                    for i, sink in enumerate(config.metrics.sinks if config.metrics else [])]
            self.overload = OverloadManager(config.overload_manager, self.store, self.listeners)
        except Exception:  # a reload that fails must not keep a port it bound
            self.close_sockets()
            raise
        self.listener_manager.on_change.append(self._listeners_changed)

    @property
    def listeners(self) -> list[Any]:
        return list(self.listener_manager.listeners.values())

    @property
    def tls_holders(self) -> list[tuple[str, Any]]:
        """Every TLS context holder (``ServerTls``, ``ClientTls``), for rotation and
        ``/certs``."""
        return [*((f"cluster {c.name}", c.tls) for c in self.clusters.clusters.values()
                  if c.tls is not None), *self.listener_manager.tls_holders]

    def _listeners_changed(self) -> None:
        self.overload.listeners[:] = self.listeners

    def _bind_admin(self) -> socket.socket:
        address = self.loaded.config.admin.bind
        try:
            return bind(address)
        except OSError as exc:
            raise StartError(f"admin.address: cannot listen on {address}: "
                             f"{exc.strerror or exc}") from None

    def _bind_metrics(self, index: int, address: Any) -> socket.socket:
        """A ``metrics`` sink's socket: the one handed over for its port, else bound."""
        taken = self.sockets.get(handover.metrics_key(address.port))
        if taken is not None:
            return taken
        try:
            sock = bind(address)
        except OSError as exc:
            raise StartError(f"metrics.sinks[{index}].config.port: cannot listen on "
                             f"{address}: {exc.strerror or exc}") from None
        self._metrics_bound.append(sock)
        return sock

    def listener_sockets(self) -> dict[str, socket.socket]:
        """The bound sockets by address (``udp:`` in front for UDP ones)."""
        return {socket_key(self.listener_manager.configs[name]): lst.sock
                for name, lst in self.listener_manager.listeners.items()
                if lst.sock is not None}

    def close_sockets(self) -> None:
        """Close the sockets this runtime bound (not those it took over)."""
        self.listener_manager.close_sockets()
        if self._admin_bound is not None:
            self._admin_bound.close()
        for sock in self._metrics_bound:
            sock.close()


def raise_fd_limit() -> None:
    """Allow as many open sockets as the hard limit permits (a proxy holds two per
    connection); the soft default of 1024 is too few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


GRPC_FORK_SUPPORT = "GRPC_ENABLE_FORK_SUPPORT"
"""gRPC's switch for its fork handlers (see :func:`without_grpc_fork_handlers`)."""


def without_grpc_fork_handlers() -> None:
    """Turn gRPC's fork handlers off unless the environment says otherwise; call it
    before anything imports gRPC (a config with ``dynamic_resources`` does, as it
    loads). When on, they run in every fork: a reload forks new workers while the
    parent's channel to the control plane streams, the handlers skip their work
    ("Other threads are currently calling into gRPC") and the child then crashed in
    them, about one reload in three. The workers never use the parent's channel."""
    os.environ.setdefault(GRPC_FORK_SUPPORT, "false")


def run(loaded: LoadedConfig, workers: int = 1, run_directory: str = "") -> int:
    """Serve until a signal (or until a new process took over); returns the process
    exit code. ``run_directory``: where the upgrade socket lives (``--run-dir``)."""
    raise_fd_limit()
    if workers > 1 and loaded.config.extends:
        raise StartError("extends: an extension adds clusters and routes to one process "
                         "for now (run without --workers; docs/compat.md)")
    directory = handover.run_dir(loaded.source, run_directory, loaded.config.upgrade.run_dir)
    fresh = loaded.config.disable_upgrade or loaded.config.close_graceful
    takeover = None if fresh else handover.take_over(directory)
    try:
        runtime = Runtime(loaded, sockets=takeover.listener_sockets() if takeover else {},
                          admin_sock=_same_admin(loaded, takeover))
    except Exception as exc:
        if takeover is not None:
            takeover.abort(str(exc))
        raise
    try:
        runtime.extends = build_extends(runtime)
    except StartError as exc:
        runtime.close_sockets()
        if takeover is not None:
            takeover.abort(str(exc))
        raise
    if takeover is not None and takeover.xds is not None \
            and loaded.config.dynamic_resources is not None:
        _serve_handed_resources(runtime, takeover.xds)
    if takeover is not None:
        takeover.release_unused({id(s) for s in (*runtime.listener_sockets().values(),
                                                 runtime.admin_sock,
                                                 *(runtime.metrics_socks or ()))})
        log.info("upgrade: taking over from mosn %d", takeover.old_pid)
    if workers > 1 and loaded.config.dynamic_resources is not None:
        _prepare_control_plane(runtime)
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
            return anyio.run(_serve, runtime, admin, None, takeover,
                             handover.socket_path(directory), **anyio_backend())
        # The parent keeps the listening sockets open: a config reload hands them to
        # the next workers, so the ports never stop accepting.
        children, channels = _start_workers(
            runtime, workers, run_dir=directory,
            predecessors=tuple(takeover.workers) if takeover is not None else ())
        supervisor = Supervisor(runtime, admin, children, channels, directory, takeover)
        return anyio.run(supervisor.run, **anyio_backend())
    finally:
        if pid_file:
            _remove_own_pid_file(pid_file)


def build_extends(runtime: Runtime) -> list[Any]:
    """What each ``extends`` entry's plugin builds (it binds its ports here, before
    anything serves); a failure closes what the others took and is a StartError."""
    built: list[Any] = []
    context = BuildContext(host=runtime.loaded.plugins, cluster_manager=runtime.clusters,
                           stats=runtime.store, routers=runtime.routers)
    for i, entry in enumerate(runtime.loaded.config.extends):
        ext = runtime.loaded.plugins.get("extends_type", entry.type)
        assert ext is not None, "the loader checks extends types"
        try:
            built.append(ext.factory(entry.parsed, context))
        except (OSError, ValueError) as exc:
            for made in built:
                made.close()
            raise StartError(f"extends[{i}] ({entry.type}): {exc}") from None
    return built


def _same_admin(loaded: LoadedConfig, takeover: handover.Takeover | None,
                ) -> socket.socket | None:
    """The admin socket handed over, if the new config's admin has its address."""
    sock = takeover.admin_sock if takeover is not None else None
    if sock is None:
        return None
    address = loaded.config.admin.bind
    if address.is_unix or sock.getsockname()[1] != address.port:
        return None
    return sock


def _remove_own_pid_file(path: str) -> None:
    """Remove the pid file unless a process that took over wrote its own there."""
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
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
                 takeover: handover.Takeover | None = None, upgrade_path: str = "") -> int:
    """One worker's life (the whole process's, with one worker). ``takeover``: the
    process this one replaces is handing over; ``upgrade_path``: where this process
    serves the next upgrade."""
    await runtime.listener_manager.start()
    runtime.overload.start()
    # What is built by now (config models, route tables, plugins) lives as long as the
    # process: keep it out of the garbage collector's full passes, which otherwise
    # show as millisecond pauses in the tail latency.
    gc.freeze()
    log.info("mosn %s serving (pid %d)", __version__, os.getpid())
    signals = ((signal.SIGTERM, signal.SIGUSR1) if admin is None
               else (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1))
    upgrades: list[handover.UpgradeServer] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(runtime.clusters.run_worker, admin is None)
        tg.start_soon(CertificateWatcher(runtime.tls_holders).run)
        admin_api = None
        if admin is not None:
            admin.reloader = lambda: reload_in_place(runtime, admin)
            admin_api = AdminApi(admin, runtime.admin_sock, tg)
            admin_api.pause(False)
            if runtime.loaded.config.dynamic_resources is not None:
                tg.start_soon(_control_plane, runtime, admin)
            tg.start_soon(runtime.clusters.run_control)
            for extension in runtime.extends:
                tg.start_soon(extension.run)
            if roll := runtime.observability.roller(runtime.loaded.config, _reopen_logs):
                tg.start_soon(roll)
        if upgrade_path:
            tg.start_soon(_upgrades, runtime, admin_api, takeover, upgrade_path,
                          tg.cancel_scope, upgrades)
        if control is not None:
            tg.start_soon(_follow_parent, runtime, control)
        with anyio.open_signal_receiver(*signals) as received:
            draining = False
            async for sig in received:
                if sig == signal.SIGUSR1:  # logrotate moved the logs
                    runtime.observability.reopen_logs()
                    continue
                if sig == signal.SIGHUP:
                    if not draining and admin is not None:
                        admin.reloader()
                    continue
                if draining:
                    break
                draining = True
                if admin is not None:
                    admin.draining = True
                tg.start_soon(_drain, runtime, tg.cancel_scope)
        tg.cancel_scope.cancel()
    for server in upgrades:
        server.close()
    runtime.overload.stop()
    for conn in list(runtime.listener_manager.connections()):
        conn.close(CloseType.NO_FLUSH)
    runtime.observability.close()  # queued access log lines written, spans exported
    return 0


class AdminApi:
    """The admin API's serving task, which an upgrade pauses (the new process
    answers on the same socket) and resumes if the new process fails."""

    def __init__(self, admin: Admin, sock: socket.socket | None,
                 tg: anyio.abc.TaskGroup) -> None:
        self.admin = admin
        self.sock = sock
        self.tg = tg
        self.scope: anyio.CancelScope | None = None

    def pause(self, pause: bool) -> None:
        if pause:
            if self.scope is not None:
                self.scope.cancel()
                self.scope = None
        elif self.scope is None and self.sock is not None:
            self.scope = anyio.CancelScope()
            self.tg.start_soon(self._serve, self.scope, self.sock.dup())

    async def _serve(self, scope: anyio.CancelScope, sock: socket.socket) -> None:
        with scope:
            await self.admin.serve(sock)


async def _upgrades(runtime: Runtime, admin_api: AdminApi | None,
                    takeover: handover.Takeover | None, path: str, scope: anyio.CancelScope,
                    servers: list[handover.UpgradeServer]) -> None:
    """Serve upgrades, and continue from the process this one replaces (if any)
    meanwhile: the upgrade socket is this process's before it tells the old one it
    serves, so a third process always finds the one in charge (refused while this
    hand-over is under way). Without ``admin_api``: a worker, replaced by a reload
    (its stats are the parent's to carry over)."""

    def stop() -> None:
        log.info("upgrade: handed over; this process exits")
        scope.cancel()

    try:
        server = handover.UpgradeServer(path, runtime, stop,
                                        admin_api.pause if admin_api is not None else _no_admin)
    except OSError as exc:
        log.error("upgrade: cannot serve upgrades at %s: %s; serving without", path, exc)
        server = None
    else:
        servers.append(server)
    async with anyio.create_task_group() as tg:
        if server is not None:
            server.busy = takeover is not None
            tg.start_soon(server.serve)
        if takeover is not None:
            for worker in takeover.workers:  # one process replacing one with workers
                tg.start_soon(_take_worker, runtime, worker)
            carry = runtime.store.carry if admin_api is not None else _shared_stats
            done = await handover.continue_from(takeover, runtime.listener_manager.listeners,
                                                carry)
            if admin_api is not None:  # a worker's hand-over is its parent's to count
                outcome = runtime.server_stats.upgrade_success if done else \
                    runtime.server_stats.upgrade_failed
                runtime.store.values[outcome] += 1  # type: ignore[index]
            if server is not None:
                server.busy = False


async def _take_worker(runtime: Runtime, path: str) -> None:
    """Continue the connections of the old process's worker at ``path`` here (its
    counters come with its parent's)."""
    try:
        worker = handover.take_over_at(path)
    except StartError as exc:
        log.warning("%s; its connections drain", exc)
        return
    if worker is not None:
        worker.release_unused(set())
        await handover.continue_from(worker, runtime.listener_manager.listeners,
                                     _shared_stats)


def _shared_stats(counters: dict[str, int]) -> None:
    """A worker's counters live in the shared stats, which the parent carries over."""


def _no_admin(pause: bool) -> None:
    """A worker has no admin API to pause."""


def reload_in_place(runtime: Runtime, admin: Admin) -> tuple[int, str]:
    """Re-read the config file and apply it through the listener, cluster and route
    managers (one process). Returns an HTTP status and what was done: 200 applied,
    400 the new config is refused (the old one still serves), 409 it cannot be
    applied in place (docs/upgrade.md: start a new mosn on it)."""
    stats = runtime.server_stats
    values = runtime.store.values
    assert values is not None
    try:
        loaded = load(runtime.loaded.source)
    except ConfigError as exc:
        for line in exc.errors:
            log.error("config reload refused, still serving the old config: %s", line)
        values[stats.reload_failed] += 1
        return 400, "config reload refused, still serving the old config:\n" + \
            "".join(f"{line}\n" for line in exc.errors)
    blockers = in_place_blockers(runtime.loaded, loaded)
    if blockers:
        message = ("config reload: cannot apply in place (" + "; ".join(blockers) +
                   "); still serving the old config: start a new mosn on it (an upgrade)")
        log.error("%s", message)
        values[stats.reload_failed] += 1
        return 409, message + "\n"
    try:
        runtime.listener_manager.reserve(c for _, c in loaded.config.listeners())
        done = apply_in_place(loaded.config, runtime.listener_manager, runtime.clusters,
                              runtime.routers)
        for extension in runtime.extends:  # what they added is not in the file
            extension.on_reload()
    except StartError as exc:
        log.error("config reload refused, still serving the old config: %s", exc)
        values[stats.reload_failed] += 1
        return 400, f"config reload refused, still serving the old config: {exc}\n"
    runtime.loaded = loaded
    admin.switch(loaded, runtime.store, runtime.clusters)
    values[stats.reload_success] += 1
    values[stats.reload_in_place] += 1
    summary = "; ".join(f"{what}: {', '.join(names)}" for what, names in done.items()
                        if names) or "nothing changed"
    log.info("config reloaded in place from %s: %s", loaded.source, summary)
    return 200, f"reloaded in place: {summary}\n"


def _apply_resources(runtime: Runtime, loaded: LoadedConfig) -> None:
    runtime.listener_manager.reserve(c for _, c in loaded.config.listeners())
    apply_in_place(loaded.config, runtime.listener_manager, runtime.clusters, runtime.routers)
    runtime.loaded = loaded


def _serve_handed_resources(runtime: Runtime, handed: tuple[dict[str, Any], bytes]) -> None:
    """An upgrade of a mosn under xDS: serve the resources the old process had
    accepted, on the sockets it handed over, before this one is ready; the client
    subscribes with their versions once the process serves (docs/xds.md)."""
    control = importlib.import_module("mosn.xds.control")
    stats = importlib.import_module("mosn.xds.stats")
    static = runtime.loaded
    try:
        snapshot = control.restore_handed(*handed)
    except Exception as exc:
        log.error("upgrade: the control plane's resources handed over do not load here "
                  "(%s); subscribing without them", exc)
        return
    runtime.xds_stats = stats.XdsStats(runtime.store)
    plane = control.ControlPlane(static, functools.partial(_apply_resources, runtime),
                                 runtime.xds_stats, snapshot)
    errors = plane.serve_snapshot()
    if errors:
        log.error("upgrade: the control plane's resources handed over cannot be served "
                  "(%s); subscribing without them", "; ".join(errors))
        runtime.loaded = static
        return
    runtime.control_plane = plane
    log.info("upgrade: serving the control plane's resources handed over (%s)",
             ", ".join(f"{url.rpartition('.')[2]} {version}"
                       for url, version in snapshot.versions.items()))


def _prepare_control_plane(runtime: Runtime) -> None:
    """Before a parent with workers forks them: the control plane's stats registered
    (they must be in every row), and its modules loaded, so that the workers share
    them instead of each importing them at its first snapshot."""
    importlib.import_module("mosn.xds.control")
    importlib.import_module("mosn.xds.workers")
    if runtime.xds_stats is None:
        runtime.xds_stats = importlib.import_module("mosn.xds.stats").XdsStats(runtime.store)


async def _control_plane(runtime: Runtime, admin: Admin) -> None:
    """Serve what the control plane of ``dynamic_resources`` sends (docs/xds.md): each
    accepted response is applied in place through the managers."""
    # Imported only under a control plane (gRPC and Envoy's messages would cost every
    # other mosn process about 20 MB and a second of start-up), in a thread so that
    # the admin API answers meanwhile.
    control = await anyio.to_thread.run_sync(importlib.import_module, "mosn.xds.control")
    stats = importlib.import_module("mosn.xds.stats")

    def apply(loaded: LoadedConfig) -> None:
        _apply_resources(runtime, loaded)
        admin.switch(loaded, runtime.store, runtime.clusters)

    plane = runtime.control_plane
    if plane is None:
        plane = control.ControlPlane(runtime.loaded, apply, stats.XdsStats(runtime.store))
        runtime.control_plane = plane
    else:  # serving the resources an upgrade handed over since before the admin API
        plane.composer.serve = apply
        admin.switch(runtime.loaded, runtime.store, runtime.clusters)
    admin.control_plane = plane
    admin.reloader = plane.reload
    await plane.run()


async def _drain(runtime: Runtime, scope: anyio.CancelScope) -> None:
    log.info("draining: no new connections; waiting up to %gs for open ones",
             runtime.graceful_timeout)
    runtime.listener_manager.stop_accepting()
    await drain(runtime.listener_manager.connections, runtime.graceful_timeout)
    scope.cancel()


async def _follow_parent(runtime: Runtime, control: socket.socket) -> None:
    """A worker: apply the host sets, log levels and control plane snapshots the
    parent sends."""
    control.setblocking(False)
    channel = fdpass.FdChannel(control)
    follower = None
    if runtime.loaded.config.dynamic_resources is not None:
        follower = importlib.import_module("mosn.xds.workers").Follower.start(
            runtime.loaded, functools.partial(_apply_resources, runtime),
            runtime.control_plane)
        runtime.control_plane = None  # the parent's: this worker hands none over
    try:
        while True:
            try:
                message, socks, blob = await channel.receive()
            except fdpass.ChannelClosed:
                return
            try:
                _adopt_sockets(runtime, message.get("sockets", ()), socks)
                if "xds" in message:
                    follow_snapshot(runtime, follower, message, blob)
                elif "log_levels" in message:
                    set_log_levels(message["log_levels"])
                elif "hosts" in message:
                    runtime.clusters.apply(message)
            except Exception:
                log.exception("worker %d: a message from the parent failed", os.getpid())
    finally:
        channel.close()


def _adopt_sockets(runtime: Runtime, keys: list[str], socks: list[socket.socket]) -> None:
    """A worker takes the listening sockets the parent bound for the listeners of a
    snapshot (sent before it), by key."""
    sockets = runtime.listener_manager.sockets
    for key, sock in zip(keys, socks):
        if key in sockets and sockets[key].fileno() >= 0:
            sock.close()
        else:
            sockets[key] = sock


def follow_snapshot(runtime: Runtime, follower: Any, message: dict[str, Any],
                    blob: bytes) -> None:
    """A worker serves the control plane's snapshot the parent served, on the
    listening sockets the parent sent it (docs/xds.md, "Workers")."""
    store = runtime.store
    assert follower is not None and store.values is not None
    with store.in_step():
        errors = follower.offer(message["xds"], blob)
    if errors:
        store.values[runtime.server_stats.worker_xds_apply_failed] += 1
        log.error("worker %d: cannot serve the control plane's resources the parent "
                  "serves (%s); still serving what it served before", os.getpid(),
                  "; ".join(errors))
    if len(store.names) != message["stats"]:
        store.values[runtime.server_stats.worker_stats_diverged] += 1
        log.error("worker %d: %d stats registered here and %d in the parent: the stats "
                  "registered from now on do not line up (restart mosn)", os.getpid(),
                  len(store.names), message["stats"])
    if runtime.clusters.health.taken != message["health"]:
        store.values[runtime.server_stats.worker_health_diverged] += 1
        log.error("worker %d: %d host slots of shared health taken here and %d in the "
                  "parent: the clusters added from now on may follow another's health "
                  "(restart mosn)", os.getpid(), runtime.clusters.health.taken,
                  message["health"])


class WorkerChannel:
    """The parent's end of one worker's socket pair: messages framed as the upgrade
    channel frames them (:mod:`mosn.network.fdpass`: JSON, a blob, descriptors),
    never blocking the parent (what the socket does not take now is sent when it
    can). ``sockets``: the listening sockets the worker has (inherited)."""

    def __init__(self, sock: socket.socket, sockets: Any = ()) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.queue: deque[tuple[memoryview, list[int]]] = deque()
        """Messages not yet sent whole, and the descriptors to send with the first."""
        self.known: weakref.WeakSet[socket.socket] = weakref.WeakSet(sockets)
        self._waiting = False

    def send(self, message: dict[str, Any], blob: bytes = b"",
             sockets: dict[str, socket.socket] | None = None) -> None:
        """Send ``message`` (and ``blob``); ``sockets``: listening sockets by key, the
        ones the worker does not have yet go first (messages naming them in
        ``"sockets"``, as many descriptors each as one message carries). Raises
        ValueError past the channel's limits (then nothing is sent)."""
        if self.sock.fileno() < 0:
            return
        data, _ = fdpass.frame(message, (), blob)
        new = [(key, s) for key, s in (sockets or {}).items()
               if s not in self.known and s.fileno() >= 0]
        for start in range(0, len(new), fdpass.MAX_FDS_PER_MESSAGE):
            part = new[start:start + fdpass.MAX_FDS_PER_MESSAGE]
            framed, _ = fdpass.frame({"sockets": [key for key, _ in part]},
                                     [s.fileno() for _, s in part])
            # Copies of the descriptors: a socket may close here before it is sent.
            self.queue.append((memoryview(framed), [os.dup(s.fileno()) for _, s in part]))
            self.known.update(s for _, s in part)
        self.queue.append((memoryview(data), []))
        self._flush()

    def _flush(self) -> None:
        while self.queue:
            data, fds = self.queue[0]
            try:
                sent = self.sock.sendmsg([data], fdpass.rights(fds))
            except BlockingIOError:
                break
            except OSError:  # the worker is gone
                self._drop()
                self.sock.close()
                return
            for fd in fds:
                os.close(fd)
            if sent < len(data):
                self.queue[0] = (data[sent:], [])
                break
            self.queue.popleft()
        loop = asyncio.get_running_loop()
        if self.queue and not self._waiting:
            self._waiting = True
            loop.add_writer(self.sock.fileno(), self._writable)
        elif not self.queue and self._waiting:
            self._waiting = False
            loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self._flush()

    def _drop(self) -> None:
        for _, fds in self.queue:
            for fd in fds:
                os.close(fd)
        self.queue.clear()

    def close(self) -> None:
        """The worker is gone (its runtime was replaced by a reload)."""
        if self._waiting and self.sock.fileno() >= 0:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())
        self._waiting = False
        self._drop()
        self.sock.close()


def _start_workers(runtime: Runtime, workers: int, inherited: tuple[socket.socket, ...] = (),
                   run_dir: str = "", predecessors: tuple[str, ...] = (),
                   ) -> tuple[list[int], list[WorkerChannel]]:
    """Fork ``workers`` workers serving ``runtime``; the parent then writes the last
    stats row. ``inherited``: the parent's sockets a worker must not keep open;
    ``run_dir``: where each worker serves the hand-over to the worker that replaces
    it; ``predecessors``: the upgrade sockets of the workers these replace (a reload),
    one each, whose connections they take over."""
    pairs = [socket.socketpair() for _ in range(workers)]
    children: list[int] = []
    try:
        for i in range(workers):
            predecessor = predecessors[i] if i < len(predecessors) else ""
            children.append(_fork_worker(runtime, i, pairs, inherited, run_dir, predecessor))
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
    inherited_listeners = list(runtime.listener_manager.sockets.values())
    return children, [WorkerChannel(ours, inherited_listeners) for ours, _ in pairs]


def _fork_worker(runtime: Runtime, index: int,
                 pairs: list[tuple[socket.socket, socket.socket]],
                 inherited: tuple[socket.socket, ...] = (), run_dir: str = "",
                 predecessor: str = "") -> int:
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
        runtime.clusters.follows_health = True  # the parent runs the health checks
        takeover = None
        if predecessor:
            try:
                takeover = handover.take_over_at(predecessor)
            except StartError as exc:  # it drains instead (the parent sees to it)
                log.warning("worker %d: %s", index, exc)
            if takeover is not None:
                takeover.release_unused(set())  # it serves the sockets it inherited
        path = handover.worker_socket_path(run_dir, os.getpid()) if run_dir else ""
        code = anyio.run(_serve, runtime, None, pairs[index][1], takeover, path,
                         **anyio_backend())
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


@dataclass
class Generation:
    """One config's :class:`Runtime` with the workers that serve it. A reload starts
    the next generation on the same listening sockets; the one it replaces retires
    while its workers hand their connections over, and is released once they exit."""

    runtime: Runtime
    workers: list[int]
    channels: list[WorkerChannel]
    running: set[int] = field(default_factory=set)
    """Its workers not yet exited (followed once it retires)."""

    def __post_init__(self) -> None:
        self.running = set(self.workers)


class Supervisor:
    """The parent with workers: admin API, health checks and discovery, the control
    plane's one subscription (each snapshot served here, then sent to the workers),
    worker watch, signal forwarding, config reload on SIGHUP, upgrades. A new process takes the
    listening sockets here and each worker's connections from the worker
    (``takeover``: the process this one replaces; its workers, if it has any, hand
    theirs to these workers, one each; a single process drains its own)."""

    def __init__(self, runtime: Runtime, admin: Admin, children: list[int],
                 channels: list[WorkerChannel], run_dir: str = "",
                 takeover: handover.Takeover | None = None) -> None:
        self.current = Generation(runtime, children, channels)
        self.retiring: list[Generation] = []
        """Generations replaced by a reload, oldest first."""
        self.admin = admin
        self.run_dir = run_dir
        self.takeover = takeover
        self.worker_count = len(children)
        self.alive = set(children)
        """Every worker of every generation not yet exited."""
        self.handing_over = False
        self.exit_code = 0
        self.tg: anyio.abc.TaskGroup | None = None
        self.control: anyio.CancelScope | None = None
        self.outbox: Any = None
        """What the current workers were sent of the control plane's snapshots
        (``mosn.xds.workers.Outbox``), under ``dynamic_resources``."""
        self._publish()

    @property
    def runtime(self) -> Runtime:
        return self.current.runtime

    def _publish(self) -> None:
        """Host-set changes go to the current generation's workers."""
        self.runtime.clusters.publishers = self.admin.publishers = [
            channel.send for channel in self.current.channels]

    def stop(self) -> None:
        assert self.tg is not None
        self.tg.cancel_scope.cancel()

    def forward(self, sig: int, pids: Any = None) -> None:
        for pid in self.alive if pids is None else pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def exited(self, pid: int) -> None:
        self.alive.discard(pid)
        for old in self.retiring:
            old.running.discard(pid)

    def retire(self) -> None:
        """Release the stats and sockets of retired generations whose workers are gone
        (in order, so a newer store never freezes an older one still counting)."""
        while self.retiring and not self.retiring[0].running:
            old = self.retiring.pop(0)
            (self.retiring[0].runtime if self.retiring else self.runtime).store.release(
                old.runtime.store)
            for channel in old.channels:
                channel.close()
            in_use = {id(lst.sock) for g in (self.current, *self.retiring)
                      for lst in g.runtime.listeners}
            for lst in old.runtime.listeners:
                if lst.sock is not None and id(lst.sock) not in in_use:
                    lst.sock.close()
            old.runtime.observability.close()
            log.info("the workers of the config before a reload stopped; their counters "
                     "and histograms kept")

    async def run(self) -> int:
        admin = self.admin
        async with anyio.create_task_group() as self.tg:
            admin_api = AdminApi(admin, self.runtime.admin_sock, self.tg)
            admin_api.pause(False)
            self.control = await self.tg.start(_control, self.runtime)
            if self.runtime.loaded.config.dynamic_resources is not None:
                self.tg.start_soon(self.follow_control_plane)
            self.tg.start_soon(self.watch)
            if self.run_dir:
                self.tg.start_soon(self.upgrades, admin_api)
            if roll := self.runtime.observability.roller(self.runtime.loaded.config,
                                                         _reopen_logs):
                self.tg.start_soon(roll)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                            signal.SIGHUP, signal.SIGUSR1) as received:
                async for sig in received:
                    if sig == signal.SIGUSR1:  # logrotate moved the logs: all reopen
                        self.runtime.observability.reopen_logs()
                        self.forward(signal.SIGUSR1)
                        continue
                    if sig == signal.SIGHUP:
                        if not admin.draining:
                            await self.reload()
                        continue
                    admin.draining = True
                    # The listening sockets kept for a reload close here too, so that
                    # once the workers stop accepting a new connection is refused, not
                    # queued.
                    for g in (self.current, *self.retiring):
                        for lst in g.runtime.listeners:
                            if lst.sock is not None:
                                lst.sock.close()
                    self.forward(signal.SIGTERM)  # a second signal stops them at once
        return self.exit_code

    # -- under a control plane (docs/xds.md, "Workers") ---------------------------------

    async def follow_control_plane(self) -> None:
        """The one subscription of a parent with workers: each snapshot is served here
        first (a NACK stays one), then sent to the workers, and ACKed."""
        control = await anyio.to_thread.run_sync(importlib.import_module, "mosn.xds.control")
        runtime = self.runtime
        plane = runtime.control_plane
        if plane is None:
            plane = control.ControlPlane(runtime.loaded, self.serve_resources,
                                         runtime.xds_stats)
            runtime.control_plane = plane
        else:  # the resources an upgrade handed over serve since before the fork
            plane.composer.serve = self.serve_resources
        self.outbox = importlib.import_module("mosn.xds.workers").Outbox(plane.client.snapshot)
        plane.accepted.append(self.send_snapshot)
        self.admin.control_plane = plane
        await plane.run()

    def serve_resources(self, loaded: LoadedConfig) -> None:
        """Serve a config the control plane's resources make, in this process (its
        health checks, admin API and stats follow it)."""
        runtime = self.runtime
        clusters = runtime.clusters
        # The workers take the endpoints from the snapshot (as the hosts of their own
        # apply), not as host sets this apply would send them first.
        publishers, clusters.publishers = clusters.publishers, []
        try:
            with runtime.store.in_step():
                _apply_resources(runtime, loaded)
        finally:
            clusters.publishers = publishers
        self.admin.switch(loaded, runtime.store, clusters)

    def send_snapshot(self, snapshot: Any) -> None:
        """Send the workers a snapshot this process serves, with the listening sockets
        they do not have yet, and the number of stats registered here (a worker whose
        count differs says so)."""
        runtime = self.runtime
        header, blob = self.outbox.delta(snapshot)
        message = {"xds": header, "stats": len(runtime.store.names),
                   "health": runtime.clusters.health.taken}
        try:
            for channel in self.current.channels:
                channel.send(message, blob, runtime.listener_manager.sockets)
        except ValueError as exc:  # the same size for every worker: none was sent it
            runtime.store.values[  # type: ignore[index]
                runtime.server_stats.worker_xds_apply_failed] += len(self.current.channels)
            log.error("the workers cannot be sent the control plane's resources (%s); "
                      "they serve what they served before, the next push sends these "
                      "changes again", exc)
            return
        self.outbox.sent = snapshot

    def _resources_for(self, new: Runtime) -> str:
        """A reload under a control plane: serve the resources accepted last on the
        next generation before its workers fork (they start from them); the control
        plane follows it once they did (:meth:`_follow_reload`). Returns why it
        cannot, or ""."""
        plane = self.runtime.control_plane
        static = plane.static if plane is not None else self.runtime.loaded
        if new.loaded.config.dynamic_resources != static.config.dynamic_resources:
            return "dynamic_resources changed (a new mosn subscribes anew: an upgrade)"
        if plane is None:
            return ""
        composer = plane.composer
        before = composer.static
        composer.static = read_file(new.loaded.source)
        composer.serve = functools.partial(_apply_resources, new)
        try:
            errors = composer.offer(plane.client.snapshot)
        finally:
            composer.serve = self.serve_resources
        if errors:
            composer.static = before
            return "; ".join(errors)
        new.xds_stats = importlib.import_module("mosn.xds.stats").XdsStats(new.store)
        new.control_plane = plane
        return ""

    def _follow_reload(self, new: Runtime, static: LoadedConfig) -> None:
        """The control plane goes on for the generation a reload started (``static``:
        its config file): its stats, its next reload, what its workers hold."""
        plane = new.control_plane
        if plane is None:
            return
        old = self.runtime.xds_stats
        if old is not None:  # the stream stays up (the gauge of the old store goes to 0)
            new.xds_stats.connected(bool(self.runtime.store.values[  # type: ignore[index]
                old.connected_index]))
        plane.client.stats = new.xds_stats
        plane.static = static
        if self.outbox is not None:
            self.outbox.sent = plane.client.snapshot

    async def watch(self) -> None:
        """Follow the workers; one that exits unexpectedly stops every worker."""
        while self.alive:
            await anyio.sleep(WORKER_POLL_INTERVAL)
            for pid in list(self.alive):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                retired = any(pid in old.running for old in self.retiring)
                self.exited(pid)
                if retired:
                    continue
                if not self.admin.draining and not self.handing_over:
                    log.error("worker %d exited unexpectedly (status %d); stopping", pid, status)
                    self.exit_code = 1
                    self.admin.draining = True
                    self.forward(signal.SIGTERM)
            self.retire()
        if self.handing_over:  # the hand-over's last messages; its end stops this sooner
            await anyio.sleep(handover.HELLO_TIMEOUT)
        self.stop()

    async def upgrades(self, admin_api: AdminApi) -> None:
        """Serve upgrades on the run directory's socket; finish the one this process
        came from."""
        def stop() -> None:
            log.info("upgrade: handed over; this process exits")
            self.stop()

        path = handover.socket_path(self.run_dir)
        try:
            server = handover.UpgradeServer(path, self.runtime, stop, admin_api.pause,
                                            WorkersHandOff(self))
        except OSError as exc:
            log.error("upgrade: cannot serve upgrades at %s: %s; serving without", path, exc)
            return
        try:
            async with anyio.create_task_group() as upgrade_tg:
                server.busy = self.takeover is not None
                upgrade_tg.start_soon(server.serve)
                if self.takeover is not None:
                    runtime = self.runtime
                    done = await handover.continue_from(self.takeover, {},
                                                        runtime.store.carry, migrate=False)
                    outcome = runtime.server_stats.upgrade_success if done else \
                        runtime.server_stats.upgrade_failed
                    runtime.store.values[outcome] += 1  # type: ignore[index]
                    server.busy = False
        finally:
            server.close()

    def _reload_failed(self) -> None:
        runtime = self.runtime
        runtime.store.values[runtime.server_stats.reload_failed] += 1  # type: ignore[index]

    async def reload(self) -> None:
        """Start the next generation from the config file on the same listening
        sockets; each old worker hands its connections over to its successor."""
        assert self.tg is not None and self.control is not None
        runtime, admin = self.runtime, self.admin
        plane = runtime.control_plane  # its resources are not in the file
        try:
            loaded = load(plane.static.source if plane is not None else runtime.loaded.source)
        except ConfigError as exc:
            for line in exc.errors:
                log.error("config reload refused, still serving the old config: %s", line)
            self._reload_failed()
            return
        try:
            new = Runtime(loaded, sockets=runtime.listener_sockets(),
                          admin_sock=runtime.admin_sock, metrics_socks=runtime.metrics_socks)
        except StartError as exc:
            log.error("config reload refused, still serving the old config: %s", exc)
            self._reload_failed()
            return
        except Exception:
            log.exception("config reload failed, still serving the old config")
            self._reload_failed()
            return
        refused = self._resources_for(new)
        if refused:
            log.error("config reload refused, still serving the old config: %s", refused)
            new.close_sockets()
            self._reload_failed()
            return
        if str(loaded.config.admin.bind) != str(runtime.loaded.config.admin.bind):
            log.warning("config reload: the admin API stays on %s (a new admin address "
                        "needs a restart)", _sockname(runtime.admin_sock))
        new.store.allocate(self.worker_count + 1)
        new.store.follow(runtime.store)
        kept = {id(s) for s in new.listener_sockets().values()}
        gone = tuple(lst.sock for lst in runtime.listeners
                     if lst.sock is not None and id(lst.sock) not in kept)
        others = tuple(ch.sock for g in (self.current, *self.retiring) for ch in g.channels)
        old = self.current
        try:
            workers, channels = _start_workers(
                new, self.worker_count, gone + others, self.run_dir,
                tuple(handover.worker_socket_path(self.run_dir, pid) for pid in old.workers))
        except OSError:
            log.exception("config reload failed, still serving the old config")
            if plane is not None:
                plane.composer.static = read_file(plane.static.source)
            new.close_sockets()
            self._reload_failed()
            return
        self._follow_reload(new, loaded)
        self.alive.update(workers)
        # From here the new workers accept on the same sockets; each old one hands
        # its connections over to its successor and exits (one whose successor did
        # not come is told to drain once that had time to happen).
        self.tg.start_soon(self.drain_left, set(old.workers), runtime.graceful_timeout)
        self.retiring.append(old)
        self.control.cancel()
        runtime.store.zero_gauges()
        self.current = Generation(new, workers, channels)
        self._publish()
        admin.switch(new.loaded, new.store, new.clusters)
        self.control = await self.tg.start(_control, new)
        new.store.values[new.server_stats.reload_success] += 1  # type: ignore[index]
        for lst in new.listeners:
            log.info("listener %s on %s", lst.name, _listening_on(lst))
        log.info("config reloaded from %s: workers %s (the old ones hand their connections "
                 "over)", loaded.source, sorted(workers))

    async def drain_left(self, old: set[int], graceful_timeout: float) -> None:
        """Workers a reload replaced that are still there once their successors had
        time to take their connections over (one that could not) are told to drain."""
        await anyio.sleep(graceful_timeout + handover.HELLO_TIMEOUT)
        left = old & self.alive
        if left:
            log.warning("workers %s were not replaced by a hand-over; draining them",
                        sorted(left))
            self.forward(signal.SIGTERM, left)


class WorkersHandOff:
    """A supervisor's workers as an upgrade's old process (handover.WorkerHandOff)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def sockets(self) -> list[str]:
        sup = self.supervisor
        return [handover.worker_socket_path(sup.run_dir, pid) for pid in sup.current.workers]

    async def _wait_for_exits(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            while self.supervisor.alive:
                await anyio.sleep(WORKER_POLL_INTERVAL)

    async def handed_over(self) -> None:
        sup = self.supervisor
        sup.handing_over = True
        graceful = sup.runtime.graceful_timeout
        await self._wait_for_exits(graceful + handover.HELLO_TIMEOUT)
        if sup.alive:
            log.warning("upgrade: workers %s were not taken over; draining them",
                        sorted(sup.alive))
            sup.admin.draining = True
            sup.forward(signal.SIGTERM)
            await self._wait_for_exits(graceful + WORKER_EXIT_MARGIN)

    def failed(self) -> None:
        sup = self.supervisor
        for pid in list(sup.alive):  # those that handed over before: expected, not a crash
            if os.waitpid(pid, os.WNOHANG)[0]:
                sup.exited(pid)
        sup.handing_over = False
        if not sup.alive:
            sup.stop()  # every worker had gone over: nothing serves here


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
