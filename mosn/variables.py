"""MOSN's ``%variable%`` registry: named values of a stream, read by the access log,
route header values (``request_headers_to_add``), route ``variables`` matches, a
route's ``cluster_variable``, the stream filters' request keys and ``dsl`` conditions.

The names are MOSN's (``pkg/types/variable.go``, ``pkg/proxy/var.go``, the HTTP
protocol variables of ``pkg/protocol/http``); each feature adds its own with
:func:`register_variable` when it is imported (TLS in the access log's module, the
filters in theirs). A variable reads a stream (``DownstreamStream`` or anything with
the same attributes, such as a TCP session's record) and returns its value, or None
when there is none.

Prefix variables: ``request_header_NAME``, ``response_header_NAME``,
``request_arg_NAME`` (a query parameter) and ``cookie_NAME`` (a request cookie).

This module imports nothing of mosn, so the config, the router and every layer above
may read it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl

REQUEST_HEADER_PREFIX = "request_header_"
RESPONSE_HEADER_PREFIX = "response_header_"
REQUEST_ARG_PREFIX = "request_arg_"
COOKIE_PREFIX = "cookie_"

VARIABLE_PATTERN = re.compile(r"%([A-Za-z0-9_.\-]+)%")
"""A ``%name%`` in a template: MOSN's names use letters, digits, ``_``, ``-`` and ``.``."""


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable: ``get`` reads a stream (None: not there); ``duration``: the value
    is seconds, written as a Go duration (access log text) or a number of seconds
    (JSON)."""

    get: Callable[[Any], Any]
    meaning: str
    duration: bool = False


class _StartTime:
    """``start_time`` in MOSN's layout (``2006/01/02 15:04:05.000``, local time); the
    date and time part is made once per second."""

    __slots__ = ("second", "prefix")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, s: Any) -> str:
        t = s.start_time
        second = int(t)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(second))
        return f"{self.prefix}.{int((t - second) * 1000):03d}"


def address_text(addr: Any) -> str | None:
    """A socket address as MOSN writes it: ``host:port``, ``[v6]:port``, ``unix:path``."""
    if isinstance(addr, tuple):
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return f"unix:{addr}" if addr else None


def _since_start(s: Any, at: float) -> float | None:
    return at - s.start_monotonic if at else None


def _request_received(s: Any) -> float | None:
    upstream = s.upstream
    return upstream.start_monotonic - s.start_monotonic if upstream is not None else None


def _bytes_received(s: Any) -> int:
    head = s.request
    if head is not None and head.frame is not None:
        return len(head.frame.data)  # an RPC request is its frame
    return s.bytes_received


def _upstream_local(s: Any) -> str | None:
    upstream = s.upstream
    client = upstream.client if upstream is not None else None
    return address_text(client.conn.local_address) if client is not None else None


def _trace_id(s: Any) -> str | None:
    span = s.span
    if span is None:
        return None
    trace_id = getattr(span, "trace_id", None)
    if isinstance(trace_id, str):  # a SkyWalking segment's: text, not a number
        return trace_id
    return f"{span.get_span_context().trace_id:032x}"


def _head(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A getter of the request head (None before there is one, or for a TCP session)."""
    def get(s: Any) -> Any:
        head = s.request
        return read(head) if head is not None else None
    return get


def rpc_call(head: Any) -> tuple[str, str] | None:
    """(service, method) of an RPC call (its head's authority and method) or of a
    gRPC request (its path, ``/service/method``); None for any other request."""
    if head.frame is not None:
        return head.authority, head.method
    path = head.path
    if path.count("/") == 2 and "grpc" in (head.headers.get("content-type") or ""):
        service, _, method = path[1:].partition("/")
        return service, method
    return None


def _rpc_part(index: int) -> Callable[[Any], Any]:
    def get(head: Any) -> str | None:
        call = rpc_call(head)
        return (call[index] or None) if call is not None else None
    return _head(get)


_NO_UPSTREAM_FLAGS = {"UF": "connection_failure", "UO": "overflow"}
"""A try that never got a connection (Envoy's flags) has no reset reason of its own."""


def _upstream_failure(s: Any) -> str | None:
    upstream = s.upstream
    reason = upstream.reset_reason if upstream is not None else None
    if reason is not None:
        return reason.value
    for flag in s.response_flags:
        if flag in _NO_UPSTREAM_FLAGS:
            return _NO_UPSTREAM_FLAGS[flag]
    return None


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
    "downstream_local_address": Variable(lambda s: address_text(s.conn.local_address),
                                         "the listener address the client reached"),
    "downstream_remote_address": Variable(lambda s: address_text(s.conn.remote_address),
                                          "the client's address"),
    "downstream_remote_address_without_port": Variable(
        lambda s: s.conn.remote_address[0] if isinstance(s.conn.remote_address, tuple)
        else None, "the client's IP address (Envoy's DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT)"),
    "upstream_host": Variable(lambda s: str(s.host) if s.host is not None else None,
                              "the upstream host's address (the last try's)"),
    "upstream_cluster": Variable(lambda s: s.cluster.name if s.cluster is not None else None,
                                 "the cluster the route chose"),
    "request_method": Variable(_head(lambda h: h.method),
                               "the request method (RPC: the method header)"),
    "request_path": Variable(_head(lambda h: h.path),
                             "the request target with its query (RPC: empty)"),
    "request_uri": Variable(_head(lambda h: h.path), "the same as request_path (MOSN's name)"),
    "request_path_original": Variable(_head(lambda h: h.path.partition("?")[0]),
                                      "the request's path without the query"),
    "request_scheme": Variable(_head(lambda h: h.scheme), "http or https"),
    "request_arg": Variable(_head(lambda h: h.path.partition("?")[2] or None),
                            "the query string"),
    "x-mosn-method": Variable(_head(lambda h: h.method), "MOSN's name of the request method"),
    "x-mosn-host": Variable(_head(lambda h: h.authority or None),
                            "the request's host (Host, :authority)"),
    "authority": Variable(_head(lambda h: h.authority or None), "the same as x-mosn-host"),
    "x-mosn-path": Variable(_head(lambda h: h.path.partition("?")[0]),
                            "the request's path without the query"),
    "x-mosn-path-original": Variable(_head(lambda h: h.path.partition("?")[0]),
                                     "the same as x-mosn-path (mosn does not unescape)"),
    "x-mosn-querystring": Variable(_head(lambda h: h.path.partition("?")[2] or None),
                                   "the query string"),
    "x-mosn-scheme": Variable(_head(lambda h: h.scheme), "http or https"),
    "x-mosn-rpc-service": Variable(_rpc_part(0),
                                   "an RPC call's service (gRPC: the path's service)"),
    "x-mosn-rpc-method": Variable(_rpc_part(1),
                                  "an RPC call's method (gRPC: the path's method)"),
    "upstream_transport_failure_reason": Variable(
        _upstream_failure, "why the upstream ended the try without a whole response"),
    "trace_id": Variable(_trace_id, "mosn's own: the stream's trace id when tracing is on"),
}
"""Every variable by name (the prefix variables are made by :func:`variable`): the
one registry the access log, routing, header values and the stream filters read."""


def register_variable(name: str, get: Callable[[Any], Any], meaning: str,
                      duration: bool = False) -> None:
    """Add a variable (at import time of the feature that has it); a name taken by
    another is refused."""
    if name in VARIABLES and VARIABLES[name].get is not get:
        raise ValueError(f"variable %{name}% is registered already")
    VARIABLES[name] = Variable(get, meaning, duration)


def _header(name: str, headers_of: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A header variable: the lower-case name (HTTP), else the name as written (an
    RPC header map keeps its keys' case)."""
    lowered = name.lower()

    def get(s: Any) -> Any:
        headers = headers_of(s)
        if headers is None:
            return None
        value = headers.get(lowered)
        return headers.get(name) if value is None else value

    return get


def _request_headers(s: Any) -> Any:
    return s.request.headers if s.request is not None else None


def _response_headers(s: Any) -> Any:
    return s.response_headers


def _query_arg(name: str) -> Callable[[Any], Any]:
    def get(head: Any) -> str | None:
        query = head.path.partition("?")[2]
        if not query:
            return None
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key == name:
                return value
        return None
    return _head(get)


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``cookie`` header's value, or None."""
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')  # Envoy quotes the cookies it makes
    return None


def _cookie(name: str) -> Callable[[Any], Any]:
    return _head(lambda head: cookie_value(head.headers.get("cookie"), name))


_PREFIXES: tuple[tuple[str, Callable[[str], Callable[[Any], Any]], str], ...] = (
    (REQUEST_HEADER_PREFIX, lambda n: _header(n, _request_headers), "the request header"),
    (RESPONSE_HEADER_PREFIX, lambda n: _header(n, _response_headers), "the response header"),
    (REQUEST_ARG_PREFIX, _query_arg, "the query parameter"),
    (COOKIE_PREFIX, _cookie, "the request cookie"),
)


def variable(name: str) -> Variable:
    """The variable ``name`` (registered, or a prefix one); ValueError if unknown."""
    known = VARIABLES.get(name)
    if known is not None:
        return known
    for prefix, make, what in _PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            rest = name[len(prefix):]
            return Variable(make(rest), f"{what} {rest}")
    raise ValueError(f"unknown variable %{name}% (known: "
                     f"{', '.join(f'%{n}%' for n in VARIABLES)}, "
                     + ", ".join(f"%{p}NAME%" for p, _, _ in _PREFIXES) + ")")


def variable_names(text: str) -> list[str]:
    """The ``%name%`` variables a template names, in order."""
    return [m.group(1) for m in VARIABLE_PATTERN.finditer(text)]


class Template:
    """Text with ``%variable%`` in it, compiled once: ``template(stream)`` is the
    text with each variable's value (a variable with no value reads as ``""``).
    ValueError at construction naming an unknown variable."""

    __slots__ = ("text", "parts", "constant")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[str | Callable[[Any], Any]] = []
        pos = 0
        for m in VARIABLE_PATTERN.finditer(text):
            if m.start() > pos:
                parts.append(text[pos:m.start()])
            parts.append(variable(m.group(1)).get)
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        self.parts = tuple(parts)
        self.constant = all(isinstance(p, str) for p in parts)
        """No variable in it: the text is the value for every stream."""

    def __call__(self, stream: Any) -> str:
        if self.constant:
            return self.text
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = part(stream)
                out.append("" if value is None else str(value))
        return "".join(out)


def check_template(text: str) -> str:
    """Validate a template (a pydantic validator's body): an unknown variable is an
    error naming it."""
    for name in variable_names(text):
        variable(name)
    return text


__all__ = ["COOKIE_PREFIX", "REQUEST_ARG_PREFIX", "REQUEST_HEADER_PREFIX",
           "RESPONSE_HEADER_PREFIX", "VARIABLES", "VARIABLE_PATTERN", "Template", "Variable",
           "address_text", "check_template", "cookie_value", "rpc_call", "register_variable", "variable", "variable_names"]
