"""Stream filters: per-request plugins that run at a phase of the proxy's work.

A ``mosn_stream_filters`` extension's factory is called once per listener as
``factory(config, context)`` and returns a callable that makes a filter for each
stream (a stateless filter may return the same object every time), or a tuple
of filters when one config acts at several phases (MOSN's ``dsl``).

``on_request(stream)`` runs at the filter's phase and returns
- ``FilterStatus.CONTINUE``: go on with the next filter and the request;
- ``FilterStatus.STOP``: the filter holds the request; it later calls
  ``stream.continue_request()`` or answers with ``stream.send_local_reply(...)``.
A filter may answer at once too: ``send_local_reply`` then return STOP.
``on_response(stream, head)`` may change a response's headers before they are sent.

A filter overridable per route reads its route's entry with
:func:`route_filter_config` (``per_filter_config.<filter type>`` of the route, or
of its virtual host when the route has none).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from mosn.network.filter import FilterStatus
from mosn.stream.types import ResponseHead

if TYPE_CHECKING:
    from mosn.proxy.stream import DownstreamStream


LB_METADATA_NAMESPACE = "envoy.lb"
"""The namespace of ``stream.dynamic_metadata`` whose string values join the route's
``metadata_match`` (subset load balancing) when the host is chosen, over the route's
own (Envoy's router reads the same namespace; MOSN's ``x-mosn-router-meta``)."""


class Phase(enum.IntEnum):
    BEFORE_ROUTE = 0
    """The request head is known; no route yet (may change what routing sees)."""
    AFTER_ROUTE = 1
    """``stream.route`` and ``stream.cluster`` are set."""
    AFTER_CHOOSE_HOST = 2
    """``stream.host`` is set, just before the request goes upstream."""


class StreamFilter:
    phase: Phase = Phase.BEFORE_ROUTE

    def on_request(self, stream: "DownstreamStream") -> FilterStatus:
        return FilterStatus.CONTINUE

    def on_response(self, stream: "DownstreamStream", head: ResponseHead) -> None:
        pass


def route_filter_config(stream: "DownstreamStream", name: str) -> Any:
    """The raw ``per_filter_config`` entry named ``name`` of the stream's route (the
    route's own, else its virtual host's), or None: no route yet (a filter before
    routing) or no entry. The same object for every request of that route (or of
    every route of that virtual host), so a filter may cache what it builds from it
    by ``id()``."""
    route = stream.route
    if route is None:
        return None
    return route.per_filter_config.get(name)


__all__ = ["LB_METADATA_NAMESPACE", "FilterStatus", "Phase", "StreamFilter", "route_filter_config"]
