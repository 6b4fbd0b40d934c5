"""MOSN's ``mirror`` stream filter (``pkg/filter/stream/mirror``): the route's
``request_mirror_policies`` send ``amplification`` copies of each sampled request
to the mirror cluster (each to a host its balancer chooses), or with ``broadcast``
one copy to every healthy host of it, the client then answered 200 by mosn without
the route's own cluster (MOSN's hijack reply with its success code).

Without this filter a route's mirror policy sends one copy (Envoy's behaviour); the
filter changes how many. The copies' responses are dropped, and a copy that cannot
keep up is abandoned (the route mirroring's rules). A broadcast request whose body
has not all arrived when it is routed goes on to the route's cluster as well (its
copies need the whole body, and mosn does not hold a request to wait for it); it is
counted in ``mirror.broadcast_forwarded``.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import Field

from mosn.config.base import Model
from mosn.filters.common import FilterStats
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter

MAX_AMPLIFICATION = 1000
"""Copies of one request at most: a bound on what one request may cost the mirror
cluster and this proxy's connection pools (MOSN has none; its samples use 10-20)."""
STATS = ("mirrored", "broadcast", "broadcast_forwarded")


class MirrorConfig(Model):
    """MOSN's keys: ``amplification`` (copies per mirrored request; MOSN takes
    values below 1 as 1) and ``broadcast``."""

    amplification: int = Field(default=1, le=MAX_AMPLIFICATION)
    broadcast: bool = False


class Mirror(StreamFilter):
    """Stateless: one instance for every stream of a listener. After routing (MOSN's
    phase), so the route's policies are known."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: MirrorConfig, stats: FilterStats) -> None:
        self.copies = max(1, config.amplification)
        self.broadcast = config.broadcast
        self.stats = stats

    def on_request(self, stream: Any) -> FilterStatus:
        route = stream.route
        if route is None or not route.mirror_policies or stream.upgrade:
            return FilterStatus.CONTINUE
        count = self.stats.count
        count("mirrored")
        if not self.broadcast:
            stream.mirror_copies = self.copies  # sent as the request goes upstream
            return FilterStatus.CONTINUE
        stream.mirror_every_host = True
        count("broadcast")
        if not stream.request_complete:
            count("broadcast_forwarded")
            return FilterStatus.CONTINUE
        stream.start_mirrors()
        stream.send_local_reply(200, "")
        return FilterStatus.STOP


def build(config: MirrorConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = Mirror(config, FilterStats(context.stats, "mirror", STATS))
    return lambda: flt


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("mirror", build, MirrorConfig,
                      description="MOSN's request mirroring with amplification")]
