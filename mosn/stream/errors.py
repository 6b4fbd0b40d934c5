"""A protocol's failures as counted and logged: bytes that break the protocol (the
peer's fault: counted, logged at debug level) and exceptions its codec raised (a bug
in the codec: counted, logged at most once per interval with the plugin's name).

The proxy makes one :class:`ProtocolErrors` per protocol from the plugin host (which
knows the plugin's name) and the stats store; stream connections report to it. The
way a failure is answered is the protocol's own (an error reply, a GOAWAY, a close);
this only tells of it.
"""

from __future__ import annotations

import logging
from typing import Any

from mosn.observability.ratelimit import RateLimitedLog

log = logging.getLogger("mosn.protocol")

PROTOCOL_STATS = ("codec_error", "downstream_cx_protocol_error", "upstream_cx_protocol_error")
"""Per protocol (``protocol.<name>.``): exceptions its codec raised, and connections
closed because the peer broke the protocol (Envoy's ``downstream_cx_protocol_error`` /
``upstream_cx_protocol_error``)."""


class ProtocolErrors:
    """One protocol's failures, for its stream connections to report."""

    __slots__ = ("protocol", "plugin", "_store", "_codec_error", "_downstream", "_upstream",
                 "_log")

    def __init__(self, protocol: str, plugin: str = "", store: Any = None) -> None:
        self.protocol = protocol
        self.plugin = plugin or "?"
        self._store = store
        """A :class:`mosn.observability.stats.StatsStore`, or None: counted nowhere."""
        if store is not None:
            self._codec_error, self._downstream, self._upstream = (
                store.register(f"protocol.{protocol}.{name}") for name in PROTOCOL_STATS)
        self._log = RateLimitedLog(log)

    def _count(self, index: int) -> None:
        store = self._store
        if store is not None and store.values is not None:
            store.values[index] += 1

    def codec_error(self, exc: BaseException, where: str, outcome: str) -> None:
        """The codec raised ``exc`` in ``where`` (``decode``, ``send_headers`` ...);
        ``outcome`` says what was done about it (for the log line)."""
        if self._store is not None:
            self._count(self._codec_error)
        self._log.log(logging.ERROR, "protocol %s (plugin %s): the codec raised %s in %s; %s",
                      self.protocol, self.plugin, type(exc).__name__, where, outcome,
                      exc_info=exc)

    def protocol_error(self, downstream: bool, reason: object) -> None:
        """A peer (a client if ``downstream``, else a host) sent bytes that break the
        protocol; its connection is answered and closed."""
        if self._store is not None:
            self._count(self._downstream if downstream else self._upstream)
        log.debug("protocol %s: %s broke the protocol: %s", self.protocol,
                  "a client" if downstream else "a host", reason)
