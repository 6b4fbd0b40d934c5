"""The process hand-over: a new mosn takes the listening sockets and the established
connections of the running one over a Unix socket, as MOSN does.

Each mosn listens on ``RUN_DIR/upgrade.sock`` (:func:`run_dir`: ``--run-dir``, else the
config's ``upgrade.run_dir``, else a directory named after the config file's path, so
two mosns on two config files never meet). A new ``mosn start`` connects there before
it builds anything; the conversation (JSON messages, descriptors by ``SCM_RIGHTS``,
:mod:`mosn.network.fdpass`):

```
new -> old  hello {pid, version}
old -> new  busy {pid}                        (an upgrade is under way: the new one exits)
        or  listeners {keys, workers, more} + sockets  (every listening socket, the admin
                                               one too; a parent names its workers'
                                               upgrade sockets: the new process, or each
                                               of its workers, takes each worker's
                                               connections there, the same conversation)
new         builds its config on those sockets (binding the others); on failure:
new -> old  abort {reason}                    (the old one goes on untouched) and exits
new -> old  ready {migrate}                   (the new one accepts on the sockets;
                                               migrate false: a parent with workers,
                                               which cannot continue connections: the
                                               old one drains its own)
old         accepts no more (both accepted meanwhile, so no attempt was refused);
            stops each connection at a safe point (mosn.network.migration) and:
old -> new  connections {items: [{id, facts, sizes, fds}]} + their sockets [+ their
            upstreams'] + their bytes         (those at a safe point by then, a batch:
                                               up to MAX_FDS_PER_MESSAGE descriptors)
new -> old  answers {taken: [ids], refused: [ids]}  (the old one closes its copies |
                                               drains those)
old         drains what cannot migrate (TLS, HTTP/2, no safe point in time)
old -> new  stats {counters}                  (counters and histograms carry over)
old -> new  done; the old process exits; the new one listens on upgrade.sock
```

If the new process dies on the way, the old one takes its listeners back, resumes
the connections not yet sent, and closes (and counts) the ones sent and not yet
acknowledged: every connection is served by one of the two or closed, never stuck.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from mosn import __version__
from mosn.network.fdpass import (
    MAX_BLOB,
    MAX_FDS_PER_MESSAGE,
    ChannelClosed,
    FdChannel,
    connect,
    listen,
)
from mosn.network.listener import Listener
from mosn.network.migration import TLS, Leaving, Refused, arrive, stop_at_safe_point
from mosn.stream.types import go_away
from mosn.upgrade.managers import StartError, drain

log = logging.getLogger("mosn.upgrade")

SOCKET_NAME = "upgrade.sock"
ADMIN_KEY = "admin"
"""The admin socket's key among the listening sockets handed over."""


def metrics_key(port: int) -> str:
    """A ``metrics`` sink's socket's key among the listening sockets handed over."""
    return f"metrics:{port}"
HELLO_TIMEOUT = 10.0
"""Seconds a new process waits for the running one to answer (it answers at once
unless it is stuck; a stuck one is not waited for)."""
BROKEN = "broken"
"""The answer of a connection sent when the channel broke before its answer came."""
UNSENT = "unsent"
"""The answer of a connection that could not be put in a message (it drains here)."""
KEPT = "kept"
"""The answer of a connection not sent yet when the channel broke (served here again)."""
SAFE_POINT_SHARE = 0.5
"""The share of ``graceful_timeout`` a connection may take to reach a safe point; it
drains in what is left."""


def run_dir(config_path: str, flag: str = "", configured: str = "") -> str:
    """The upgrade socket's directory: ``--run-dir``, else the config's
    ``upgrade.run_dir``, else one named after the config file's real path."""
    if flag or configured:
        return flag or configured
    digest = hashlib.sha256(os.path.realpath(config_path).encode()).hexdigest()[:16]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, f"mosn-{digest}")


def socket_path(directory: str) -> str:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, SOCKET_NAME)


# -- the new process ------------------------------------------------------------------------

@dataclass
class Takeover:
    """What a new process got from the one it replaces."""

    channel: FdChannel
    sockets: dict[str, socket.socket]
    old_pid: int
    used: set[int] = field(default_factory=set)
    workers: list[str] = field(default_factory=list)
    """The upgrade sockets of the old process's workers (it has workers): each hands
    its own connections over to whoever takes over from it there."""
    xds: tuple[dict[str, Any], bytes] | None = None
    """The control plane's resources the old process served (header, messages)."""

    @property
    def admin_sock(self) -> socket.socket | None:
        return self.sockets.get(ADMIN_KEY)

    def listener_sockets(self) -> dict[str, socket.socket]:
        """Every socket handed over but the admin's (the metrics sinks' are taken by
        their :func:`metrics_key`)."""
        return {k: s for k, s in self.sockets.items() if k != ADMIN_KEY}

    def abort(self, reason: str) -> None:
        """This process cannot serve the config: the old one goes on untouched."""
        try:
            self.channel.send_now({"op": "abort", "reason": reason})
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.channel.close()

    def release_unused(self, in_use: set[int]) -> None:
        """Close the sockets handed over that the new config does not serve (the old
        process closes its copies as it exits, and those ports close)."""
        for sock in self.sockets.values():
            if id(sock) not in in_use:
                sock.close()


def take_over(directory: str) -> Takeover | None:
    """Before anything is built: ask the mosn serving at ``directory`` for its
    listening sockets. None: no mosn serves there. Raises :class:`StartError` when
    an upgrade is already under way or the running mosn does not answer."""
    return take_over_at(socket_path(directory))


def worker_socket_path(directory: str, pid: int) -> str:
    """Where a worker serves the hand-over to the worker that replaces it (a reload
    with workers)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, f"worker-{pid}.sock")


def take_over_at(path: str) -> Takeover | None:
    """:func:`take_over` from the process serving the upgrade socket ``path``."""
    try:
        channel = connect(path, HELLO_TIMEOUT)
    except OSError as exc:
        raise StartError(f"upgrade: cannot reach the running mosn at {path}: {exc}") from None
    if channel is None:
        return None
    try:
        channel.send_now({"op": "hello", "pid": os.getpid(), "version": __version__})
        sockets: dict[str, socket.socket] = {}
        while True:
            message, socks, _ = channel.receive_now()
            if message.get("op") == "busy":
                channel.close()
                raise StartError(f"upgrade refused: an upgrade is already under way "
                                 f"(mosn {message.get('pid')} at {path})")
            if message.get("op") != "listeners":
                raise ChannelClosed(f"unexpected {message.get('op')!r}")
            sockets.update(zip(message["keys"], socks))
            if not message.get("more"):
                break
        xds = None
        if message.get("xds"):
            resources, _, blob = channel.receive_now()
            if resources.get("op") != "xds":
                raise ChannelClosed(f"unexpected {resources.get('op')!r}")
            xds = (resources, blob)
    except (OSError, ChannelClosed) as exc:
        channel.close()
        raise StartError(f"upgrade: the running mosn at {path} did not hand over: "
                         f"{exc}") from None
    channel.sock.setblocking(False)
    return Takeover(channel, sockets, int(message.get("pid", 0)),
                    workers=list(message.get("workers", ())), xds=xds)


async def continue_from(takeover: Takeover, listeners: dict[str, Any],
                        carry: Callable[[dict[str, int]], None], migrate: bool = True) -> bool:
    """The new process serves: tell the old one, then continue the connections it
    hands over on the listeners of the same names and carry its counters. True once
    the old process said it is done; False if it went away before. ``migrate``
    False: this process cannot continue connections (a parent with workers); the old
    one drains its own."""
    channel = takeover.channel
    batches = arrived = 0
    try:
        await channel.send({"op": "ready", "migrate": migrate})
        while True:
            message, socks, blob = await channel.receive()
            op = message.get("op")
            if op == "connections":
                batches += 1
                arrived += len(message["items"])
                answers: dict[str, list[int]] = {"taken": [], "refused": []}
                for item, item_socks, item_blob in _split(message["items"], socks, blob):
                    ok = await _arrive(listeners, item, item_socks, item_blob)
                    answers["taken" if ok else "refused"].append(item["id"])
                await channel.send({"op": "answers", **answers})
            elif op == "stats":
                carry(message["counters"])
            elif op == "done":
                log.info("upgrade: mosn %d handed everything over and exits (%d connections "
                         "in %d messages)", takeover.old_pid, arrived, batches)
                return True
    except ChannelClosed as exc:
        log.warning("upgrade: mosn %d went away before it was done (%s)",
                    takeover.old_pid, exc)
        return False
    finally:
        channel.close()


def _split(items: list[dict[str, Any]], socks: list[socket.socket], blob: bytes,
           ) -> list[tuple[dict[str, Any], list[socket.socket], bytes]]:
    """A batch of connections: each item with its descriptors and its bytes."""
    out = []
    fd_at = blob_at = 0
    for item in items:
        fds, size = item["fds"], item["unprocessed"] + item["unwritten"]
        out.append((item, socks[fd_at:fd_at + fds], blob[blob_at:blob_at + size]))
        fd_at += fds
        blob_at += size
    return out


async def _arrive(listeners: dict[str, Any], message: dict[str, Any],
                  socks: list[socket.socket], blob: bytes) -> bool:
    facts = message["facts"]
    listener = listeners.get(facts.get("listener", ""))
    if not isinstance(listener, Listener) or not socks:
        for sock in socks:
            sock.close()
        return False
    split = message["unprocessed"]
    peer = socks[1] if len(socks) > 1 else None
    try:
        await arrive(listener, socks[0], blob[:split], facts, peer, blob[split:])
    except OSError as exc:
        log.warning("upgrade: a migrated connection could not be continued: %s", exc)
        for sock in socks:
            sock.close()
        return False
    return True


# -- the running process ----------------------------------------------------------------------

def count(runtime: Any, name: str) -> None:
    """One more of the server stat ``name`` (``server.<name>``)."""
    runtime.store.values[getattr(runtime.server_stats, name)] += 1


class UpgradeServer:
    """The running process's end: serves ``upgrade.sock``; hands over to one new
    process at a time (another is told an upgrade is under way)."""

    def __init__(self, path: str, runtime: Any,
                 stop: Callable[[], None], pause_admin: Callable[[bool], None],
                 workers: WorkerHandOff | None = None) -> None:
        """``runtime``: what this process serves (its ``listener_manager``,
        ``listener_sockets()``, ``admin_sock``, ``store``, ``server_stats``,
        ``graceful_timeout``); ``stop()`` ends this process once it handed over;
        ``pause_admin(True/False)`` stops and resumes its admin API.
        ``workers``: a parent with workers: its connections are the workers', each
        of which hands them over itself (see :class:`WorkerHandOff`)."""
        self.path = path
        self.runtime = runtime
        self.stop = stop
        self.pause_admin = pause_admin
        self.workers = workers
        self.sock = listen(path)
        self._inode = os.stat(path).st_ino
        self._replaced: asyncio.Future[None] | None = None
        self.busy = False

    def close(self) -> None:
        """Stop serving the upgrade socket; its path is removed unless a newer
        process has put its own there."""
        self.sock.close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
            os.rmdir(os.path.dirname(self.path))  # unless another mosn's socket is there
        except OSError:
            pass

    def _take_path_back(self) -> None:
        """The new process failed after it may have put its upgrade socket at the
        path: this process listens there again (the next upgrade must find it)."""
        try:
            if os.stat(self.path).st_ino == self._inode:
                return
        except OSError:
            pass
        try:
            sock = listen(self.path)
        except OSError as exc:
            log.error("upgrade: cannot serve upgrades at %s again: %s", self.path, exc)
            return
        self.sock = sock
        self._inode = os.stat(self.path).st_ino
        if self._replaced is not None and not self._replaced.done():
            self._replaced.set_result(None)  # serve() goes on with the new socket

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            sock = self.sock
            self._replaced = loop.create_future()
            accept = loop.create_task(loop.sock_accept(sock))
            await asyncio.wait({accept, self._replaced}, return_when=asyncio.FIRST_COMPLETED)
            if not accept.done():  # listening again on a new socket
                accept.cancel()
                await asyncio.wait({accept})
                sock.close()
                continue
            try:
                conn, _ = accept.result()
            except OSError:
                return  # closed
            channel = FdChannel(conn)
            conn.setblocking(False)
            if self.busy:
                loop.create_task(self._refuse(channel))
                continue
            self.busy = True
            loop.create_task(self._hand_over(channel))

    async def _refuse(self, channel: FdChannel) -> None:
        try:
            await channel.receive()
            await channel.send({"op": "busy", "pid": os.getpid()})
        except ChannelClosed:
            pass
        finally:
            channel.close()

    def _count(self, name: str) -> None:
        count(self.runtime, name)

    async def _hand_over(self, channel: FdChannel) -> None:
        try:
            await self._hand_over_on(channel)
        finally:
            channel.close()

    async def _hand_over_on(self, channel: FdChannel) -> None:
        runtime = self.runtime
        try:
            hello, _, _ = await channel.receive()
            log.info("upgrade: mosn %s (version %s) takes over", hello.get("pid"),
                     hello.get("version"))
            sockets = dict(runtime.listener_sockets())
            if runtime.admin_sock is not None:
                sockets[ADMIN_KEY] = runtime.admin_sock
            for sock in getattr(runtime, "metrics_socks", None) or ():
                sockets[metrics_key(sock.getsockname()[1])] = sock
            sockets = {k: s for k, s in sockets.items() if s.fileno() >= 0}
            items = list(sockets.items())
            workers = self.workers.sockets() if self.workers is not None else []
            plane = getattr(runtime, "control_plane", None)
            for start in range(0, max(1, len(items)), MAX_FDS_PER_MESSAGE):
                batch = items[start:start + MAX_FDS_PER_MESSAGE]
                more = start + MAX_FDS_PER_MESSAGE < len(items)
                await channel.send({"op": "listeners", "pid": os.getpid(),
                                    "keys": [k for k, _ in batch], "workers": workers,
                                    "more": more, "xds": plane is not None and not more},
                                   [s.fileno() for _, s in batch])
            if plane is not None:  # the control plane's resources it serves (docs/xds.md)
                header, blob = plane.handover()
                await channel.send({"op": "xds", **header}, (), blob)
            answer, _, _ = await channel.receive()
        except ChannelClosed as exc:
            log.error("upgrade: the new process went away before it served (%s); "
                      "still serving", exc)
            self._count("upgrade_failed")
            self._take_path_back()
            self.busy = False
            return
        if answer.get("op") != "ready":
            self._take_path_back()
            log.error("upgrade: the new process cannot serve (%s); still serving",
                      answer.get("reason", answer.get("op")))
            self._count("upgrade_failed")
            self.busy = False
            return
        manager = runtime.listener_manager
        self.pause_admin(True)
        try:
            if self.workers is not None:
                log.info("upgrade: the new process serves; each worker hands its "
                         "connections over")
                await self._while_connected(channel, self.workers.handed_over())
                await self._done(channel)
            elif answer.get("migrate") is False:
                manager.pause_accepting()
                log.warning("upgrade: the new process serves with workers, which cannot "
                            "take connections over; draining them here")
                await self._drain_all(channel)
            else:
                manager.pause_accepting()
                log.info("upgrade: the new process serves; migrating connections")
                await Migrator(runtime, channel).run()
        except ChannelClosed as exc:
            self._count("upgrade_failed")
            log.error("upgrade: the new process went away mid-migration (%s); serving "
                      "again", exc)
            if self.workers is not None:
                self.workers.failed()
            manager.resume_accepting()
            self.pause_admin(False)
            self._take_path_back()
            self.busy = False
            return
        self.sock.close()  # the path is the new process's from now on
        self.stop()

    @staticmethod
    async def _while_connected(channel: FdChannel, work: Awaitable[None]) -> None:
        """``work``, called off with ChannelClosed if the new process goes away."""
        task = asyncio.ensure_future(work)
        gone = asyncio.ensure_future(channel.receive())
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            gone.result()  # raises ChannelClosed (the new process sends nothing else)
            raise ChannelClosed("an unexpected message")
        gone.cancel()
        task.result()

    async def _drain_all(self, channel: FdChannel) -> None:
        runtime = self.runtime
        connections = runtime.listener_manager.connections
        for conn in list(connections()):
            count(runtime, "connections_drained")
            go_away(conn)
        closed = await drain(connections, runtime.graceful_timeout)
        log.info("upgrade: connections drained (%d closed at the end)", closed)
        await self._done(channel)

    async def _done(self, channel: FdChannel) -> None:
        await channel.send({"op": "stats", "counters": self.runtime.store.export_counters()})
        await channel.send({"op": "done"})


class WorkerHandOff(Protocol):
    """A parent with workers, as the old process of an upgrade: the new process (or
    each of its workers) connects to each worker's own upgrade socket, and the worker
    hands its connections over itself, as to its successor in a reload."""

    def sockets(self) -> list[str]:
        """The workers' upgrade sockets."""

    async def handed_over(self) -> None:
        """Return once every worker has handed over and exited (one not taken over
        in time drains)."""

    def failed(self) -> None:
        """The new process went away: the workers left serve on."""


class Migrator:
    """Hands every connection of this process over, or drains it."""

    def __init__(self, runtime: Any, channel: FdChannel) -> None:
        self.channel = channel
        self.runtime = runtime
        self._ids = itertools.count(1)
        self.lock = asyncio.Lock()
        self.waiting: dict[int, asyncio.Future[str]] = {}
        """Connections sent, by id: their answer (``taken``, ``refused`` or BROKEN)."""
        self.stopping: set[asyncio.Task[Any]] = set()
        """Tasks waiting for their connection's safe point (called off if the channel
        breaks: those connections go on here)."""
        self.broken: ChannelClosed | None = None
        self.outbox: list[tuple[int, Leaving]] = []
        """Connections at their safe point, waiting for the next batch."""
        self._sender: asyncio.Task[None] | None = None

    def _count(self, name: str) -> None:
        count(self.runtime, name)

    def _answer(self, ident: int, outcome: str) -> None:
        answer = self.waiting.get(ident)
        if answer is not None and not answer.done():
            answer.set_result(outcome)

    def _enqueue(self, ident: int, leaving: Leaving) -> None:
        self.outbox.append((ident, leaving))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_batches())

    async def _send_batches(self) -> None:
        """Send what is in the outbox, a batch per message: one message and one answer
        for up to MAX_FDS_PER_MESSAGE descriptors instead of one per connection."""
        await asyncio.sleep(0)  # the connections reaching their safe point now join in
        while self.outbox:
            if self.broken is not None:
                self._keep_unsent()
                return
            fds = size = taken = 0
            for _, leaving in self.outbox:
                more = len(leaving.fds())
                blob = len(leaving.unprocessed) + len(leaving.peer_unwritten)
                if taken and (fds + more > MAX_FDS_PER_MESSAGE or size + blob > MAX_BLOB):
                    break
                fds, size, taken = fds + more, size + blob, taken + 1
            batch, self.outbox = self.outbox[:taken], self.outbox[taken:]
            await self._send(batch)

    async def _send(self, batch: list[tuple[int, Leaving]]) -> None:
        items: list[dict[str, Any]] = []
        fds: list[int] = []
        blobs: list[bytes] = []
        for ident, leaving in batch:
            own = leaving.fds()
            items.append({"id": ident, "facts": leaving.facts, "fds": len(own),
                          "unprocessed": len(leaving.unprocessed),
                          "unwritten": len(leaving.peer_unwritten)})
            fds += own
            blobs += (leaving.unprocessed, leaving.peer_unwritten)
        try:
            async with self.lock:
                await self.channel.send({"op": "connections", "items": items}, fds,
                                        b"".join(blobs))
        except ChannelClosed as exc:
            self.broken = self.broken or exc
            for ident, _ in batch:
                self._answer(ident, BROKEN)
        except (OSError, ValueError) as exc:
            if len(batch) > 1:  # each alone: only the one that cannot be sent stays
                for one in batch:
                    await self._send([one])
                return
            log.warning("upgrade: %r cannot be handed over: %s; it drains",
                        batch[0][1].conn, exc)
            self._answer(batch[0][0], UNSENT)

    async def run(self) -> None:
        runtime = self.runtime
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read_answers())
        timeout = runtime.graceful_timeout * SAFE_POINT_SHARE
        conns = list(runtime.listener_manager.connections())
        results = await asyncio.gather(*(loop.create_task(self._one(conn, timeout))
                                         for conn in conns))
        if self.broken is not None:
            reader.cancel()
            raise self.broken
        migrated = sum(1 for r in results if r)
        left = runtime.graceful_timeout * (1 - SAFE_POINT_SHARE)
        closed = await drain(runtime.listener_manager.connections, left)
        log.info("upgrade: %d connections migrated, %d drained (%d closed at the end)",
                 migrated, len(conns) - migrated, closed)
        async with self.lock:
            await self.channel.send({"op": "stats", "counters": runtime.store.export_counters()})
            await self.channel.send({"op": "done"})
        reader.cancel()

    async def _one(self, conn: Any, timeout: float) -> bool:
        count = self._count
        task = asyncio.current_task()
        assert task is not None
        self.stopping.add(task)
        try:
            leaving = await stop_at_safe_point(conn, timeout)
        except Refused as refused:
            if self.broken is not None:
                return False  # served here as before
            log.debug("upgrade: %r drains (%s)", conn, refused.reason)
            if refused.reason == TLS:
                count("connections_tls_drained")
            count("connections_drained")
            go_away(conn)
            return False
        except asyncio.CancelledError:
            return False  # the channel broke: served here as before
        finally:
            self.stopping.discard(task)
        if self.broken is not None:
            leaving.cancel()
            return False
        ident = next(self._ids)
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[ident] = answer
        self._enqueue(ident, leaving)
        outcome = await answer
        self.waiting.pop(ident, None)
        if outcome == "taken":
            leaving.done()
            count("connections_migrated")
            return True
        if outcome == BROKEN:
            # Sent, perhaps read over there: it cannot be served here again safely.
            leaving.conn.close()
            count("connections_migration_failed")
            return False
        leaving.cancel()
        if outcome == KEPT:
            return False  # the channel broke before it was sent: served here as before
        count("connections_drained")
        go_away(conn)
        return False

    async def _read_answers(self) -> None:
        try:
            while True:
                message, socks, _ = await self.channel.receive()
                for sock in socks:
                    sock.close()
                if message.get("op") == "answers":
                    for outcome in ("taken", "refused"):
                        for ident in message.get(outcome, ()):
                            self._answer(ident, outcome)
        except ChannelClosed as exc:
            self.broken = self.broken or exc
            for task in list(self.stopping):
                task.cancel()
            self._keep_unsent()
            for answer in self.waiting.values():
                if not answer.done():
                    answer.set_result(BROKEN)

    def _keep_unsent(self) -> None:
        queued, self.outbox = self.outbox, []
        for ident, _ in queued:
            self._answer(ident, KEPT)
