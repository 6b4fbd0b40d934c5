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

The variables are MOSN's (``pkg/proxy/var.go``, ``pkg/types``); where mosn's value
differs from MOSN's the docs (``docs/access_log.md``) say so.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from mosn.network.tls import tls_variable
from mosn.proxy.observer import StreamObserver

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
REQUEST_HEADER_PREFIX = "request_header_"
RESPONSE_HEADER_PREFIX = "response_header_"
NOT_FOUND = "-"
"""What a variable shows when its value does not exist (no upstream, no header ...)."""

_VARIABLE = re.compile(r"%([A-Za-z0-9_.\-]+)%")


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


class _StartTime:
    """``start_time`` in MOSN's layout (``2006/01/02 15:04:05.000``, local time); the
    date and time part is made once per second."""

    __slots__ = ("second", "prefix")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, s: "DownstreamStream") -> str:
        t = s.start_time
        second = int(t)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(second))
        return f"{self.prefix}.{int((t - second) * 1000):03d}"


def _address(addr: Any) -> str | None:
    if isinstance(addr, tuple):
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return f"unix:{addr}" if addr else None


def _since_start(s: "DownstreamStream", at: float) -> float | None:
    return at - s.start_monotonic if at else None


def _request_received(s: "DownstreamStream") -> float | None:
    upstream = s.upstream
    return upstream.start_monotonic - s.start_monotonic if upstream is not None else None


def _bytes_received(s: "DownstreamStream") -> int:
    head = s.request
    if head is not None and head.frame is not None:
        return len(head.frame.data)  # an RPC request is its frame
    return s.bytes_received


def _upstream_local(s: "DownstreamStream") -> str | None:
    upstream = s.upstream
    client = upstream.client if upstream is not None else None
    return _address(client.conn.local_address) if client is not None else None


_NO_UPSTREAM_FLAGS = {"UF": "connection_failure", "UO": "overflow"}
"""A try that never got a connection (Envoy's flags) has no reset reason of its own."""


def _upstream_failure(s: "DownstreamStream") -> str | None:
    upstream = s.upstream
    reason = upstream.reset_reason if upstream is not None else None
    if reason is not None:
        return reason.value
    for flag in s.response_flags:
        if flag in _NO_UPSTREAM_FLAGS:
            return _NO_UPSTREAM_FLAGS[flag]
    return None


def _tls_variable(name: str, s: "DownstreamStream") -> str | None:
    return tls_variable(s.conn.tls, name)


def _trace_id(s: "DownstreamStream") -> str | None:
    span = s.span
    if span is None:
        return None
    return f"{span.get_span_context().trace_id:032x}"


@dataclass(frozen=True, slots=True)
class Variable:
    """A built-in variable: ``get`` reads the stream at its end (None: not there);
    ``duration``: the value is seconds, written as a Go duration (text) or a
    number of seconds (JSON)."""

    get: Callable[["DownstreamStream"], Any]
    meaning: str
    duration: bool = False


VARIABLES: dict[str, Variable] = {
    "start_time": Variable(_StartTime(), "when the request began (local time, ms)"),
    "request_received_duration": Variable(
        _request_received, "from the start until the request went upstream (its last try)",
        True),
    "response_received_duration": Variable(
        lambda s: _since_start(s, s.response_monotonic),
        "from the start until the response began (from upstream, or the proxy's own)", True),
    "request_finished_duration": Variable(
        lambda s: _since_start(s, s.end_monotonic), "from the start until the stream ended", True),
    "duration": Variable(
        lambda s: _since_start(s, s.end_monotonic), "the stream's whole duration", True),
    "bytes_sent": Variable(lambda s: s.bytes_sent, "response body bytes sent downstream"),
    "bytes_received": Variable(_bytes_received, "request body bytes received from downstream"),
    "protocol": Variable(lambda s: s.protocol, "the downstream protocol (Http1, bolt ...)"),
    "response_code": Variable(lambda s: s.response_code or None, "the status sent downstream"),
    "response_flag": Variable(lambda s: ",".join(s.response_flags) or None,
                              "Envoy's response flags (NR, UH, UF, UT ...), comma-separated"),
    "response_flags": Variable(lambda s: ",".join(s.response_flags) or None,
                               "the same as response_flag"),
    "upstream_local_address": Variable(_upstream_local,
                                       "the proxy's address on the upstream connection"),
    "downstream_local_address": Variable(lambda s: _address(s.conn.local_address),
                                         "the listener address the client reached"),
    "downstream_remote_address": Variable(lambda s: _address(s.conn.remote_address),
                                          "the client's address"),
    "downstream_remote_address_without_port": Variable(
        lambda s: s.conn.remote_address[0] if isinstance(s.conn.remote_address, tuple)
        else None, "the client's IP address (Envoy's DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT)"),
    "upstream_host": Variable(lambda s: str(s.host) if s.host is not None else None,
                              "the upstream host's address (the last try's)"),
    "upstream_cluster": Variable(lambda s: s.cluster.name if s.cluster is not None else None,
                                 "the cluster the route chose"),
    "request_method": Variable(lambda s: s.request.method if s.request is not None else None,
                               "the request method (RPC: the method header)"),
    "request_path": Variable(lambda s: s.request.path if s.request is not None else None,
                             "the request target with its query (RPC: empty)"),
    "request_uri": Variable(lambda s: s.request.path if s.request is not None else None,
                            "the request target with its query (MOSN's)"),
    "request_scheme": Variable(lambda s: s.request.scheme if s.request is not None else None,
                               "http or https (MOSN's)"),
    "upstream_transport_failure_reason": Variable(
        _upstream_failure, "why the upstream ended the try without a whole response"),
    "trace_id": Variable(_trace_id, "mosn's own: the stream's trace id when tracing is on"),
    **{name: Variable(functools.partial(_tls_variable, name), meaning)
       for name, meaning in (
           ("downstream_peer_uri_san", "the client certificate's first URI SAN (SPIFFE id)"),
           ("downstream_peer_dns_san", "the client certificate's first DNS SAN"),
           ("downstream_peer_subject", "the client certificate's subject"),
           ("downstream_tls_version", "the TLS version of the downstream connection"),
           ("downstream_tls_cipher", "the cipher of the downstream connection"),
           ("downstream_alpn", "the protocol ALPN chose on the downstream connection"),
           ("requested_server_name", "the SNI the client asked for"))},
}
"""Every variable by name (the header variables are prefixes, below): the one
registry the access log, route header values and the stream filters read; a feature
adds its own with :func:`register_variable`."""


def register_variable(name: str, get: Callable[["DownstreamStream"], Any], meaning: str,
                      duration: bool = False) -> None:
    """Add a variable (at import time of the feature that has it); a name taken by
    another is refused."""
    if name in VARIABLES and VARIABLES[name].get is not get:
        raise ValueError(f"variable %{name}% is registered already")
    VARIABLES[name] = Variable(get, meaning, duration)


def _header(name: str, headers_of: Callable[["DownstreamStream"], Any]
            ) -> Callable[["DownstreamStream"], Any]:
    """A header variable: the lower-case name (HTTP), else the name as written (an
    RPC header map keeps its keys' case)."""
    lowered = name.lower()

    def get(s: "DownstreamStream") -> Any:
        headers = headers_of(s)
        if headers is None:
            return None
        value = headers.get(lowered)
        return headers.get(name) if value is None else value

    return get


def _request_headers(s: "DownstreamStream") -> Any:
    return s.request.headers if s.request is not None else None


def _response_headers(s: "DownstreamStream") -> Any:
    return s.response_headers


def variable(name: str) -> Variable:
    """The variable ``name`` (built-in or a header one); ValueError if unknown."""
    known = VARIABLES.get(name)
    if known is not None:
        return known
    for prefix, headers_of, what in ((REQUEST_HEADER_PREFIX, _request_headers, "request"),
                                     (RESPONSE_HEADER_PREFIX, _response_headers, "response")):
        if name.startswith(prefix) and len(name) > len(prefix):
            header = name[len(prefix):]
            return Variable(_header(header, headers_of), f"the {what} header {header}")
    raise ValueError(f"unknown access log variable %{name}% (known: "
                     f"{', '.join(f'%{n}%' for n in VARIABLES)}, "
                     f"%{REQUEST_HEADER_PREFIX}NAME%, %{RESPONSE_HEADER_PREFIX}NAME%)")


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
