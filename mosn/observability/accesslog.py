"""Access logs: one line per downstream stream, in MOSN's ``%variable%`` template or
as JSON, written off the request path.

A template is compiled once, when the config is validated, into a ``%``-format
string and one getter per variable; at the end of each stream the line is made
with a single ``fmt % values`` and appended to the log's in-memory queue. A writer
thread per log file (started in each process on its first line) takes what is
queued every ``FLUSH_INTERVAL`` and writes it with one ``write()`` per batch of
whole lines on a file opened with ``O_APPEND``: worker processes sharing a file
never split each other's lines (on a local file system each ``write()`` of an
``O_APPEND`` file lands whole at the end). When the queue holds
``MAX_PENDING_LINES`` new lines are dropped and counted, never blocking the proxy;
the count is logged. Closing a log (on shutdown) writes what is queued.

The variables are the registry's (:mod:`mosn.variables`, MOSN's names); where
mosn's value differs from MOSN's the docs (``docs/access_log.md``) say so.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from mosn.proxy.observer import StreamObserver
from mosn.variables import (
    VARIABLE_PATTERN,
    VARIABLES,
    Variable,
    variable,
)

if TYPE_CHECKING:
    from mosn.observability.stats import StatsStore
    from mosn.proxy.stream import DownstreamStream

log = logging.getLogger("mosn.accesslog")

MAX_PENDING_LINES = 65536
"""Lines a log holds in memory per process before new ones are dropped: a few
seconds of a busy worker, about 16 MiB at 256 bytes a line; a stuck disk or a
blocked stdout must not grow the proxy's memory without bound."""
FLUSH_INTERVAL = 1.0
"""Seconds between the writer's writes: lines reach the file within this, and a
busy proxy pays one system call per interval, not one per request (Envoy waits
10 s by default; a second keeps ``tail -f`` lively)."""
MAX_WRITE_BYTES = 1024 * 1024
"""Bytes of whole lines per ``write()``: large enough to drain a full queue in a few
calls, small enough that one call does not hold a shared file for long."""
CLOSE_TIMEOUT = 5.0
"""Seconds shutdown waits for the writer to finish the last batch."""
STDOUT_PATHS = ("stdout", "/dev/stdout")
"""Paths meaning the process's standard output (inherited by every worker)."""

DEFAULT_FORMAT = (
    "%start_time% %request_received_duration% %response_received_duration% %bytes_sent%"
    " %bytes_received% %protocol% %response_code% %duration% %response_flag% %response_code%"
    " %upstream_local_address% %downstream_local_address% %downstream_remote_address%"
    " %upstream_host%"
)
"""MOSN's ``DefaultAccessLogFormat`` (``pkg/types``), used when ``log_format`` is empty."""
JSON_FORMAT = "json"
"""``log_format: json``: one JSON object a line with every variable of the default format."""
NOT_FOUND = "-"
"""What a variable shows when its value does not exist (no upstream, no header ...)."""

_VARIABLE = VARIABLE_PATTERN


# -- values --------------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration.String()`` writes it (``"1.234567ms"``,
    ``"2.5s"``, ``"1m30s"``), MOSN's form for its duration variables."""
    ns = round(seconds * 1e9)
    if ns <= 0:
        return "0s"
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _decimal(ns, 1000, 3) + "µs"
    if ns < 1_000_000_000:
        return _decimal(ns, 1_000_000, 6) + "ms"
    whole, frac = divmod(ns, 1_000_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = _decimal(secs * 1_000_000_000 + frac, 1_000_000_000, 9) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _decimal(value: int, unit: int, digits: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def _text(var: Variable) -> Callable[["DownstreamStream"], str]:
    get = var.get
    if var.duration:
        def duration(s: "DownstreamStream") -> str:
            value = get(s)
            return NOT_FOUND if value is None else go_duration(value)
        return duration

    def text(s: "DownstreamStream") -> str:
        value = get(s)
        if value is None or value == "":
            return NOT_FOUND
        value = str(value)
        if "\n" in value or "\r" in value:  # an RPC header value could end the line early
            return value.replace("\n", " ").replace("\r", " ")
        return value
    return text


def _json_value(var: Variable) -> Callable[["DownstreamStream"], Any]:
    get = var.get
    if var.duration:
        def seconds(s: "DownstreamStream") -> Any:
            value = get(s)
            return None if value is None else round(value, 6)
        return seconds
    return get


# -- formats -------------------------------------------------------------------------------


class Formatter:
    """A compiled ``%variable%`` template: ``format(stream)`` is the line."""

    __slots__ = ("fmt", "getters")

    def __init__(self, template: str) -> None:
        parts: list[str] = []
        self.getters: tuple[Callable[["DownstreamStream"], str], ...] = ()
        getters = []
        pos = 0
        for m in _VARIABLE.finditer(template):
            parts.append(template[pos:m.start()].replace("%", "%%"))
            parts.append("%s")
            getters.append(_text(variable(m.group(1))))
            pos = m.end()
        parts.append(template[pos:].replace("%", "%%"))
        self.fmt = "".join(parts).replace("\n", " ") + "\n"
        self.getters = tuple(getters)

    def format(self, s: "DownstreamStream") -> str:
        return self.fmt % tuple([g(s) for g in self.getters])


class JsonFormatter:
    """One JSON object a line: ``fields`` maps a key to a template; a template that
    is one variable keeps its type (numbers stay numbers, missing is null)."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        compiled: list[tuple[str, Callable[["DownstreamStream"], Any]]] = []
        for key, template in fields.items():
            m = _VARIABLE.fullmatch(template)
            if m is not None:
                compiled.append((key, _json_value(variable(m.group(1)))))
            else:
                text = Formatter(template)
                compiled.append((key, lambda s, f=text: f.format(s)[:-1]))
        self.fields = tuple(compiled)

    def format(self, s: "DownstreamStream") -> str:
        return json.dumps({key: get(s) for key, get in self.fields},
                          ensure_ascii=False, separators=(",", ":")) + "\n"


def default_json_fields() -> dict[str, str]:
    """``log_format: json``: the variables of MOSN's default format, each under its name."""
    names = dict.fromkeys(m.group(1) for m in _VARIABLE.finditer(DEFAULT_FORMAT))
    return {name: f"%{name}%" for name in names}


def compile_format(log_format: str, json_format: dict[str, str] | None = None
                   ) -> Formatter | JsonFormatter:
    """The formatter for a log's config; ValueError naming an unknown variable."""
    if json_format:
        return JsonFormatter(json_format)
    if log_format.strip().lower() == JSON_FORMAT:
        return JsonFormatter(default_json_fields())
    return Formatter(log_format or DEFAULT_FORMAT)


# -- writing -------------------------------------------------------------------------------


def open_log(path: str) -> int:
    """A file descriptor for ``path``, opened for appending (created if missing)."""
    if path in STDOUT_PATHS:
        return os.dup(1)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


class LogWriter:
    """One log file's queue and writer thread, in one process.

    ``append`` is called on the event loop; the thread is started by the first line
    in each process (a forked worker starts its own) and writes batches of whole
    lines. ``dropped`` counts lines refused while the queue was full.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.queue: collections.deque[str] = collections.deque()
        self.dropped = 0
        self._reported = 0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = False
        self._reopen = False
        """Asked to reopen the path (a rotation moved the file): done before the next write."""
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        # The parent's thread does not exist in a child: start afresh, with nothing
        # of the parent's queued (the parent writes its own lines).
        self._thread = None
        self._wake = threading.Event()
        self._stop = False
        self.queue.clear()

    def append(self, line: str) -> bool:
        """Queue ``line``; False if it was dropped (the queue is full)."""
        queue = self.queue
        if len(queue) >= MAX_PENDING_LINES:
            self.dropped += 1
            return False
        queue.append(line)
        if self._thread is None:
            self._start()
        return True

    def reopen(self) -> None:
        """Open the path again (``logrotate`` or the roller moved the file): at once
        when this process has no writer thread, else by the thread before its next
        write, so a write never races the swap. Lines written before go to the moved
        file; none is lost."""
        if self.path in STDOUT_PATHS:
            return
        if self._thread is None:
            self._swap()
        else:
            self._reopen = True
            self._wake.set()

    def _swap(self) -> None:
        self._reopen = False
        try:
            fd = open_log(self.path)
        except OSError as exc:
            log.error("access log %s: cannot reopen, still writing to the file it was: %s",
                      self.path, exc.strerror or exc)
            return
        old, self.fd = self.fd, fd
        os.close(old)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"accesslog {self.path}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write every queued line (from the writer thread, or at close)."""
        if self._reopen:
            self._swap()
        queue = self.queue
        while queue:
            batch: list[str] = []
            size = 0
            while queue and size < MAX_WRITE_BYTES:
                line = queue.popleft()
                batch.append(line)
                size += len(line)
            self._write("".join(batch).encode("utf-8", "replace"))
        if self.dropped != self._reported:
            log.warning("access log %s: %d lines dropped (the queue of %d was full)",
                        self.path, self.dropped - self._reported, MAX_PENDING_LINES)
            self._reported = self.dropped

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError as exc:
                log.error("access log %s: write failed: %s", self.path, exc.strerror or exc)
                return
            view = view[written:]

    def close(self) -> None:
        """Write what is queued and stop the thread (at shutdown)."""
        thread = self._thread
        if thread is not None:
            self._stop = True
            self._wake.set()
            thread.join(CLOSE_TIMEOUT)
        self.flush()
        self._thread = None


class AccessLog(StreamObserver):
    """A listener's access log: a line per stream, queued to its file's writer. A
    line dropped because the queue is full is counted in the stat ``dropped`` of
    ``store`` (the listener's ``access_log_dropped``), when one is given."""

    __slots__ = ("format", "writer", "store", "dropped")

    def __init__(self, formatter: Formatter | JsonFormatter, writer: LogWriter,
                 store: "StatsStore | None" = None, dropped: int = -1) -> None:
        self.format = formatter.format
        self.writer = writer
        self.store = store
        self.dropped = dropped

    def on_stream_end(self, stream: "DownstreamStream") -> None:
        try:
            line = self.format(stream)
        except Exception:  # an observer must not raise into the proxy
            log.exception("access log: a line could not be formatted")
            return
        if not self.writer.append(line) and self.store is not None:
            self.store.values[self.dropped] += 1  # type: ignore[index]


class _Addresses:
    """A connection's two addresses, kept while it is open (a closed transport may no
    longer tell them)."""

    __slots__ = ("remote_address", "local_address")

    def __init__(self, conn: Any) -> None:
        self.remote_address = conn.remote_address
        self.local_address = conn.local_address


class _UpstreamConnection:
    """A TCP session's upstream connection, read by the variables the way a stream's
    last try is (``upstream.start_monotonic``, ``upstream.client.conn``)."""

    __slots__ = ("start_monotonic", "conn")

    def __init__(self, start_monotonic: float, conn: Any) -> None:
        self.start_monotonic = start_monotonic
        self.conn = _Addresses(conn)

    @property
    def client(self) -> "_UpstreamConnection":
        return self


class ConnectionRecord:
    """What the access log reads of one ``tcp_proxy`` session, under the names a
    stream has: ``protocol`` is ``TCP``, the bytes are the connection's, there is no
    response code or header, and ``request_received_duration`` is the time until the
    upstream connection was up."""

    __slots__ = ("start_time", "start_monotonic", "end_monotonic", "bytes_sent",
                 "bytes_received", "conn", "host", "cluster", "upstream", "response_flags")
    protocol = "TCP"
    request = None
    response_headers = None
    response_code = 0
    response_monotonic = 0.0
    span = None

    def __init__(self, conn: Any) -> None:
        self.start_time = time.time()
        self.start_monotonic = time.monotonic()
        self.end_monotonic = 0.0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.conn = _Addresses(conn)
        self.host: Any = None
        self.cluster: Any = None
        self.upstream: _UpstreamConnection | None = None
        self.response_flags: list[str] = []

    def connected(self, host: Any, upstream: Any) -> None:
        self.host = host
        self.upstream = _UpstreamConnection(time.monotonic(), upstream)


class AccessLogs:
    """Every log file of the config, opened once and shared by the listeners (and
    the worker processes) writing to it."""

    def __init__(self) -> None:
        self.writers: dict[str, LogWriter] = {}

    def observer(self, path: str, log_format: str,
                 json_format: dict[str, str] | None = None,
                 store: "StatsStore | None" = None, dropped: int = -1) -> AccessLog:
        """Raises OSError if the file cannot be opened."""
        return AccessLog(compile_format(log_format, json_format), self.writer(path), store,
                         dropped)

    def writer(self, path: str) -> LogWriter:
        """The one writer of ``path`` (opened on first use; OSError if it cannot be)."""
        key = "stdout" if path in STDOUT_PATHS else os.path.abspath(path)
        writer = self.writers.get(key)
        if writer is None:
            writer = self.writers[key] = LogWriter(path, open_log(path))
        return writer

    def reopen(self) -> None:
        """Every log file opened again (SIGUSR1: a rotation moved them)."""
        for writer in self.writers.values():
            writer.reopen()

    def paths(self) -> list[str]:
        """The log files (not stdout), for the roller."""
        return [w.path for w in self.writers.values() if w.path not in STDOUT_PATHS]

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


__all__ = ["DEFAULT_FORMAT", "MAX_PENDING_LINES", "VARIABLES", "AccessLog", "AccessLogs",
           "ConnectionRecord",
           "Formatter", "JsonFormatter", "LogWriter", "Variable", "compile_format", "go_duration",
           "register_variable", "variable"]
