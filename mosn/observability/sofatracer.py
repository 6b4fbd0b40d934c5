"""MOSN's ``SOFATracer`` driver: one JSON digest line per request in SOFATracer's
format (MOSN's ``pkg/trace/sofa``), in ``rpc-server-digest.log`` for a listener of
``type: ingress`` (span.kind server) and ``rpc-client-digest.log`` for ``type:
egress`` (span.kind client), under ``log_path`` (MOSN's default:
``~/logs/tracelog/mosn/``). A listener without a type writes none, as in MOSN.

The context is SOFA's: ``SOFA-TraceId`` / ``SOFA-RpcId`` HTTP headers, and
``rpc_trace_context.sofaTraceId`` / ``sofaRpcId`` in an RPC frame's header map; a
request without one gets a new trace id and rpc id ``0``. As MOSN's driver, it adds
nothing to the request sent upstream (the caller's keys pass through as they are).

The lines go through the access log's writer (a queue and a thread per file, reopened
on SIGUSR1 and rotated by ``global_log_roller`` like the access logs).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mosn.observability.accesslog import AccessLogs
from mosn.variables import VARIABLES, address_text
from mosn.proxy.observer import StreamObserver

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream

SERVER_DIGEST = "rpc-server-digest.log"
CLIENT_DIGEST = "rpc-client-digest.log"
"""MOSN's digest log names (``pkg/trace/sofa/xprotocol``)."""
DEFAULT_LOG_ROOT = "~/logs/tracelog/mosn/"
"""MOSN's default folder of the digest logs (the user's home)."""
HTTP_TRACE_ID, HTTP_RPC_ID = "sofa-traceid", "sofa-rpcid"
"""MOSN's ``SOFA-TraceId`` and ``SOFA-RpcId`` HTTP headers (lower-cased as mosn keeps
header names)."""
RPC_TRACE_ID = "rpc_trace_context.sofaTraceId"
RPC_ID = "rpc_trace_context.sofaRpcId"
CALLER_APP = "rpc_trace_context.sofaCallerApp"
BAGGAGE = "rpc_trace_context.sofaPenAttrs"
SERVICE = "service"
METHOD = "sofa_head_method_name"
"""SOFA's keys (MOSN's ``pkg/trace/sofa/types.go``), in HTTP headers and frame maps."""
ROOT_RPC_ID = "0"
RESULT_CODES = {200: "00", 504: "03", 404: "04", 502: "04"}
"""MOSN's ``result.code``: success, timeout, no route or no healthy upstream; any other
status is ``02``."""
OTHER_RESULT = "02"
INGRESS, EGRESS = "ingress", "egress"


class SofaTraceIds:
    """SOFATracer's trace ids: the IP in 8 hex digits, the time in ms, a 4-digit
    sequence, and the process id (``TraceIdGenerator``)."""

    def __init__(self) -> None:
        try:
            ip = socket.inet_aton(socket.gethostbyname(socket.gethostname()))
        except OSError:
            ip = socket.inet_aton("127.0.0.1")
        self.prefix = ip.hex()
        self.sequence = itertools.cycle(range(1000, 10000))

    def new(self) -> str:
        return f"{self.prefix}{int(time.time() * 1000)}{next(self.sequence)}{os.getpid()}"


class SofaTracer(StreamObserver):
    """A listener's digest lines (``kind``: ingress or egress)."""

    __slots__ = ("kind", "writer", "ids")

    def __init__(self, kind: str, writer: Any, ids: SofaTraceIds) -> None:
        self.kind = kind
        self.writer = writer
        self.ids = ids

    def on_stream_end(self, stream: "DownstreamStream") -> None:
        head = stream.request
        if head is None:
            return
        headers = head.headers
        rpc = head.frame is not None
        trace_id = headers.get(RPC_TRACE_ID if rpc else HTTP_TRACE_ID) or self.ids.new()
        span_id = headers.get(RPC_ID if rpc else HTTP_RPC_ID) or ROOT_RPC_ID
        end = time.time()
        elapsed = str(int(((stream.end_monotonic or time.monotonic())
                           - stream.start_monotonic) * 1000))
        line: dict[str, str] = {
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end))
                         + f".{int(end * 1000) % 1000:03d}",
            "traceId": trace_id,
            "spanId": span_id,
            "service": headers.get(SERVICE) or (head.authority if rpc else "") or "",
            "method": headers.get(METHOD) or (head.method if rpc else "") or "",
            "protocol": stream.protocol if rpc else "HTTP",
            "resp.size": str(stream.bytes_sent),
            "req.size": str(VARIABLES["bytes_received"].get(stream)),
            "baggage": headers.get(BAGGAGE) or "",
            "result.code": RESULT_CODES.get(stream.response_code, OTHER_RESULT),
        }
        remote = address_text(stream.conn.remote_address) or ""
        if self.kind == INGRESS:
            line.update({"span.kind": "server", "remote.ip": remote,
                         "remote.app": "", "local.app": "", "server.duration": elapsed})
        else:
            ip, _, port = remote.rpartition(":")
            line.update({"span.kind": "client", "invoke.type": "sync", "router.record": "",
                         "remote.ip": str(stream.host.address) if stream.host else "",
                         "local.client.ip": ip, "local.client.port": port,
                         "client.elapse.time": elapsed})
        self.writer.append(json.dumps(line, separators=(",", ":")) + "\n")


def log_root(log_path: str) -> Path:
    return Path(os.path.expanduser(log_path or DEFAULT_LOG_ROOT))


def sofa_tracer(kind: str, log_path: str, logs: AccessLogs, ids: SofaTraceIds) -> SofaTracer:
    """The observer of a listener of ``kind``; raises OSError if its log cannot be opened."""
    root = log_root(log_path)
    root.mkdir(parents=True, exist_ok=True)
    name = SERVER_DIGEST if kind == INGRESS else CLIENT_DIGEST
    return SofaTracer(kind, logs.writer(str(root / name)), ids)


__all__ = ["CLIENT_DIGEST", "SERVER_DIGEST", "SofaTraceIds", "SofaTracer", "sofa_tracer"]
