"""The ``original_dst`` listener filter (MOSN's ``original_dst``, Envoy's
``envoy.filters.listener.original_dst``): notes where an intercepted connection was
going, as ``conn.original_destination``.

``type: redirect`` reads it back from the socket after an iptables REDIRECT
(``SO_ORIGINAL_DST``, IPv4 and IPv6); ``type: tproxy`` takes the connection's local
address, which TPROXY leaves as the client addressed it. A connection made to the
listener's own address has none. With it, a ``use_original_dst`` listener hands the
connection to the listener of that address, filter chains match on it, and an
``ORIGINAL_DST`` cluster connects to it.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import field_validator

from mosn.config.models import ORIGINAL_DST_TYPES, Model
from mosn.network.filter import FilterStatus, ListenerFilter
from mosn.plugins import BuildContext, Extension, hookimpl

LOCALHOST = "127.0.0.1"
"""MOSN's ``fallback_to_local`` address: a hand-over nobody at the exact address takes
goes to the listener of 127.0.0.1 at that port (an inbound sidecar's applications)."""


class OriginalDstConfig(Model):
    """MOSN's ``OriginalDstConfig``."""

    type: str = "redirect"
    fallback_to_local: bool = False

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        value = value or "redirect"  # MOSN: empty is redirect
        if value not in ORIGINAL_DST_TYPES:
            raise ValueError(f"type {value!r}: use {' or '.join(ORIGINAL_DST_TYPES)}")
        return value


class OriginalDst(ListenerFilter):
    __slots__ = ("tproxy", "fallback")

    def __init__(self, config: OriginalDstConfig) -> None:
        self.tproxy = config.type == "tproxy"
        self.fallback = LOCALHOST if config.fallback_to_local else ""

    def on_accept(self, conn: Any) -> FilterStatus:
        destination = conn.intercepted_destination(self.tproxy)
        if destination is not None:
            conn.original_destination = destination
            conn.hand_off_fallback = self.fallback
        return FilterStatus.CONTINUE


def build(config: OriginalDstConfig | None,
          context: BuildContext | None = None) -> Callable[[], ListenerFilter]:
    flt = OriginalDst(config or OriginalDstConfig())
    return lambda: flt  # it keeps no state of its own: one serves every connection


@hookimpl
def mosn_listener_filters() -> list[Extension]:
    return [Extension("original_dst", build, OriginalDstConfig,
                      description="where a REDIRECTed or TPROXYed connection was going")]
