"""The ``tls_inspector`` listener filter (Envoy's ``envoy.filters.listener.tls_inspector``,
MOSN's ``inspector: true``): tells a TLS client from a plaintext one by its first
byte, and notes the ClientHello's server name and ALPN list on the connection."""

from __future__ import annotations

from typing import Any, Callable

from mosn.network.filter import FilterStatus, ListenerFilter
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.tls import Verdict, inspect

TLS = "tls"
RAW_BUFFER = "raw_buffer"
"""Envoy's transport protocol names."""


class TlsInspector(ListenerFilter):
    __slots__ = ()

    def on_accept(self, conn: Any) -> FilterStatus:
        return FilterStatus.STOP  # it needs the first bytes

    def on_data(self, conn: Any, data: bytes) -> FilterStatus:
        hello = inspect(data)
        if hello.verdict is Verdict.NEED_MORE:
            return FilterStatus.STOP
        if hello.verdict is Verdict.NOT_TLS:
            conn.detected_transport = RAW_BUFFER
            return FilterStatus.CONTINUE
        conn.detected_transport = TLS
        conn.requested_server_name = hello.server_name
        conn.requested_alpn = hello.alpn
        return FilterStatus.CONTINUE


_INSPECTOR = TlsInspector()


def build(config: Any, context: BuildContext | None = None) -> Callable[[], ListenerFilter]:
    return lambda: _INSPECTOR  # it keeps no state of its own: one serves every connection


@hookimpl
def mosn_listener_filters() -> list[Extension]:
    return [Extension("tls_inspector", build,
                      description="TLS or plaintext by the first bytes; SNI and ALPN noted")]
