"""The ``http_inspector`` listener filter (Envoy's ``envoy.filters.listener.http_inspector``):
tells an HTTP client from others on a plaintext connection by its first bytes, and
notes the protocol as the connection's application protocol (``h2c`` for the HTTP/2
connection preface, ``http/1.1`` or ``http/1.0`` for a request line), so filter
chains can match on it with ``application_protocols``. A TLS connection (the TLS
inspector ran first) is left alone; bytes that cannot start an HTTP request end the
inspection at once, so other client-first protocols do not wait.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from mosn.config.models import StrictModel
from mosn.network.filter import FilterStatus, ListenerFilter
from mosn.plugins import BuildContext, Extension, hookimpl

MAX_INSPECT_SIZE = 8192
"""Bytes of a request line looked at (Envoy's inspector reads as many); a longer line
is not taken for HTTP."""
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 3.4
H2C, HTTP11, HTTP10 = "h2c", "http/1.1", "http/1.0"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
"""An HTTP method is a token (RFC 9110 5.6.2)."""
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [^ \r\n]+ HTTP/1\.([01])\r\n")


def detect(data: bytes) -> str | None:
    """The HTTP protocol ``data`` starts, "" when it is not HTTP, None when more bytes
    are needed to tell."""
    n = min(len(data), len(H2_PREFACE))
    if data[:n] == H2_PREFACE[:n]:
        return H2C if n == len(H2_PREFACE) else None
    end = data.find(b"\r\n", 0, MAX_INSPECT_SIZE)
    if end < 0:
        method = data.split(b" ", 1)[0]
        if _TOKEN.fullmatch(method) is None or len(data) >= MAX_INSPECT_SIZE \
                or b"\n" in data:
            return ""
        return None
    line = _REQUEST_LINE.fullmatch(data, 0, end + 2)
    if line is None:
        return ""
    return HTTP11 if line.group(1) == b"1" else HTTP10


class HttpInspectorConfig(StrictModel):
    """Envoy's ``HttpInspector`` config: nothing to set."""


class HttpInspector(ListenerFilter):
    __slots__ = ()

    def on_accept(self, conn: Any) -> FilterStatus:
        if conn.detected_transport == "tls":
            return FilterStatus.CONTINUE
        return FilterStatus.STOP

    def on_data(self, conn: Any, data: bytes) -> FilterStatus:
        protocol = detect(data)
        if protocol is None:
            return FilterStatus.STOP
        if protocol:
            conn.requested_alpn = (protocol,)
        return FilterStatus.CONTINUE


_INSPECTOR = HttpInspector()


def build(config: Any, context: BuildContext | None = None) -> Callable[[], ListenerFilter]:
    return lambda: _INSPECTOR  # it keeps no state of its own: one serves every connection


@hookimpl
def mosn_listener_filters() -> list[Extension]:
    return [Extension("http_inspector", build, HttpInspectorConfig,
                      description="HTTP/1 or HTTP/2 (h2c) by the first bytes, noted as the "
                                  "application protocol")]
