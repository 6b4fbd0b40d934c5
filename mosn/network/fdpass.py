"""Messages with file descriptors over a Unix domain socket (``SCM_RIGHTS``).

The channel an upgrade talks over (:mod:`mosn.upgrade.handover`), and the one from a
parent to each of its workers (host sets, control plane snapshots with the sockets of
new listeners): each message is a JSON object, optionally with descriptors (listening
sockets, a migrated connection's socket) and a blob of bytes (a migrated connection's
unprocessed bytes, a snapshot's packed resources). On the wire:
a header (JSON length, blob length, descriptor count), the JSON, the blob; the
descriptors ride with the header's bytes, so by the time a header is read whole its
descriptors have arrived.
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import socket
import struct
from collections import deque
from typing import Any, Iterable

HEADER = struct.Struct("!III")
MAX_FDS_PER_MESSAGE = 253
"""Descriptors in one message: Linux's SCM_MAX_FD (measured: 253 pass, 254 fail with
EINVAL); more go in several messages."""
MAX_JSON = 16 * 1024 * 1024
"""Bytes of one message's JSON (the counters of a large config fit, and a host set of
the largest cluster, 65,536 hosts: some 7.4 MB)."""
MAX_BLOB = 64 * 1024 * 1024
"""Bytes of one message's blob (a connection's unprocessed bytes are bounded by its
buffer limit, well below this; a control plane snapshot of 10,000 endpoints packs to
some 290 KB)."""
RECEIVE_CHUNK = 256 * 1024
"""Bytes asked of one ``recvmsg``."""
UPGRADE_BACKLOG = 8
"""Pending connections to the upgrade socket (one new process at a time is served;
the others are told an upgrade is under way)."""

Message = tuple[dict[str, Any], list[socket.socket], bytes]


class ChannelClosed(Exception):
    """The other end closed the channel (or sent what is not a message)."""


class FdChannel:
    """One end of a Unix stream socket carrying messages with descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._fds: deque[int] = deque()

    def close(self) -> None:
        for fd in self._fds:
            socket.close(fd)
        self._fds.clear()
        self.sock.close()

    # -- reading --------------------------------------------------------------------------

    def _parse(self) -> Message | None:
        buf = self._buffer
        if len(buf) < HEADER.size:
            return None
        body_len, blob_len, fd_count = HEADER.unpack_from(buf)
        if body_len > MAX_JSON or blob_len > MAX_BLOB or fd_count > MAX_FDS_PER_MESSAGE:
            raise ChannelClosed("a message over the limits")
        end = HEADER.size + body_len + blob_len
        if len(buf) < end or len(self._fds) < fd_count:
            return None
        try:
            message = json.loads(bytes(buf[HEADER.size:HEADER.size + body_len]))
        except ValueError:
            raise ChannelClosed("a message that is not JSON") from None
        blob = bytes(buf[HEADER.size + body_len:end])
        del buf[:end]
        socks = [socket.socket(fileno=self._fds.popleft()) for _ in range(fd_count)]
        return message, socks, blob

    def _take(self) -> bool:
        """Read what is there; False at EOF. Raises BlockingIOError when nothing is."""
        data, ancillary, _, _ = self.sock.recvmsg(
            RECEIVE_CHUNK, socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * array.array("i").itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                self._fds.extend(fds)
        self._buffer += data
        return bool(data)

    # -- blocking (before the event loop runs) ----------------------------------------------

    def send_now(self, message: dict[str, Any], fds: Iterable[int] = (), blob: bytes = b"") -> None:
        data, fds = frame(message, fds, blob)
        sent = self.sock.sendmsg([data], rights(fds))
        if sent < len(data):
            self.sock.sendall(data[sent:])

    def receive_now(self) -> Message:
        while True:
            got = self._parse()
            if got is not None:
                return got
            if not self._take():
                raise ChannelClosed("the other end closed the channel")

    # -- on the event loop -------------------------------------------------------------------

    async def send(self, message: dict[str, Any], fds: Iterable[int] = (), blob: bytes = b"") -> None:
        data, fds = frame(message, fds, blob)
        view = memoryview(data)
        ancillary = rights(fds)
        while view:
            try:
                sent = self.sock.sendmsg([view], ancillary)
            except BlockingIOError:
                await self._ready(writable=True)
                continue
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None
            ancillary = []
            view = view[sent:]

    async def receive(self) -> Message:
        while True:
            got = self._parse()
            if got is not None:
                return got
            try:
                if not self._take():
                    raise ChannelClosed("the other end closed the channel")
            except BlockingIOError:
                await self._ready(writable=False)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None

    async def _ready(self, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        fd = self.sock.fileno()
        if fd < 0:
            raise ChannelClosed("the channel is closed")
        done = loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        (loop.add_writer if writable else loop.add_reader)(fd, wake)
        try:
            await done
        finally:
            (loop.remove_writer if writable else loop.remove_reader)(fd)


def frame(message: dict[str, Any], fds: Iterable[int] = (), blob: bytes = b"",
          ) -> tuple[bytes, list[int]]:
    """One message's bytes and the descriptors to send with its first bytes (for a
    sender of its own, such as the parent's non-blocking channel to each worker).
    Raises ValueError past the limits."""
    body = json.dumps(message).encode()
    fds = list(fds)
    if len(fds) > MAX_FDS_PER_MESSAGE or len(body) > MAX_JSON or len(blob) > MAX_BLOB:
        raise ValueError("message too large for the channel")
    return HEADER.pack(len(body), len(blob), len(fds)) + body + blob, fds


def rights(fds: list[int]) -> list[tuple[int, int, bytes]]:
    """``sendmsg``'s ancillary data carrying ``fds``."""
    if not fds:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


def connect(path: str, timeout: float) -> FdChannel | None:
    """A channel to the process listening at ``path`` (blocking, with ``timeout``);
    None when none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except OSError:
        sock.close()
        raise
    return FdChannel(sock)


def listen(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, bound at a private name and renamed into
    place, so whoever connects to ``path`` meets a listening socket, never none."""
    temporary = f"{path}.{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        sock.bind(temporary)
        sock.listen(UPGRADE_BACKLOG)
        os.rename(temporary, path)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
