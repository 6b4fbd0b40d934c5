"""The ``healthcheck`` stream filter: health checks answered by the proxy itself
(MOSN's ``healthcheck``, Envoy's ``envoy.filters.http.health_check``).

On an RPC listener (MOSN's sofarpc sample puts it there with ``{}``) the protocol's
heartbeats are what a caller's health check sends: mosn's RPC engine answers them
locally, before any stream exists, so the filter has nothing more to do there. On an
HTTP listener a request to ``path`` (or matching ``headers``) is answered here:
``200 OK``, or ``503`` when a cluster named in ``cluster_min_healthy_percentages``
has fewer healthy hosts than its share; with ``pass_through_mode`` it goes on to the
upstream like any request.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import Field

from mosn.filters.common import HeaderMatcher, ProtoModel, PseudoHeaders
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter

HEALTHY = 200
UNHEALTHY = 503


class Percent(ProtoModel):
    value: float = Field(ge=0, le=100)


class HealthCheckConfig(ProtoModel):
    """MOSN's ``healthcheck`` (its sofarpc sample: ``{}``) in Envoy's ``HealthCheck``
    shape, plus mosn's ``path``."""

    path: str = ""
    """mosn's: the request path health checks use (``/healthz``); the same as a
    ``headers`` entry matching ``:path`` exactly."""
    headers: list[HeaderMatcher] = Field(default_factory=list)
    pass_through_mode: bool = False
    cluster_min_healthy_percentages: dict[str, Percent] = Field(default_factory=dict)

    def cross_check(self, root: Any, plugins: Any) -> list[tuple[str, str]]:
        names = {c.name for c in root.cluster_manager.clusters}
        return [(f"cluster_min_healthy_percentages.{n}", f"no cluster named {n!r}")
                for n in self.cluster_min_healthy_percentages if n not in names]


class HealthCheck(StreamFilter):
    phase = Phase.BEFORE_ROUTE

    def __init__(self, config: HealthCheckConfig, context: BuildContext) -> None:
        self.path = config.path
        self.tests = [h.compile() for h in config.headers]
        self.pass_through = config.pass_through_mode
        self.clusters = context.cluster_manager
        self.minimums = {n: p.value for n, p in config.cluster_min_healthy_percentages.items()}

    def _is_check(self, head: Any) -> bool:
        if head.frame is not None or not (self.path or self.tests):
            return False
        if self.path and head.path.partition("?")[0] != self.path:
            return False
        return all(t(PseudoHeaders(head)) for t in self.tests)

    def _healthy(self) -> bool:
        for name, minimum in self.minimums.items():
            cluster = self.clusters.get(name) if self.clusters is not None else None
            hosts = cluster.hosts if cluster is not None else []
            if not hosts:
                return False
            healthy = sum(1 for h in hosts if h.healthy)
            if healthy * 100 < minimum * len(hosts):
                return False
        return True

    def on_request(self, stream: Any) -> FilterStatus:
        if self.pass_through or not self._is_check(stream.request):
            return FilterStatus.CONTINUE
        if self._healthy():
            stream.send_local_reply(HEALTHY, "OK\n")
        else:
            stream.send_local_reply(UNHEALTHY, "unhealthy\n")
        return FilterStatus.STOP


def build(config: HealthCheckConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    flt = HealthCheck(config, context)
    return lambda: flt


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("healthcheck", build, HealthCheckConfig,
                      description="health checks answered by the proxy (MOSN's, Envoy's)")]
