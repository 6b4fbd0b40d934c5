"""The ``fault`` stream filter: inject delays and aborts (MOSN's StreamFaultInject,
Envoy's fault filter), for testing how services cope with a failing dependency.

Runs after routing, so ``upstream_cluster`` can limit it to one cluster; ``headers``
limit it to matching requests. A delayed request is held, then goes on; an aborted
one is answered with ``abort.status`` at once. A route's (or its virtual host's)
``per_filter_config.fault`` replaces the filter's own config for that route, as
Envoy's per-route ``HTTPFault`` does.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Callable, ClassVar

from pydantic import Field

from mosn.config.base import Model
from mosn.config.routers import HeaderMatcherConfig
from mosn.config.types import Duration
from mosn.filters.common import PerRoute
from mosn.network.filter import FilterStatus
from mosn.plugins import BuildContext, Extension, hookimpl
from mosn.proxy.stream_filter import Phase, StreamFilter
from mosn.router.match import HeaderMatcher

DELAY_INJECTED = "DI"
FAULT_INJECTED = "FI"
ABORT_BODY = "fault filter abort"
"""Envoy's body for an aborted request."""


class DelayConfig(Model):
    fixed_delay: Duration
    percentage: int = Field(default=100, ge=0, le=100)


class AbortConfig(Model):
    status: int = Field(ge=200, le=599)
    percentage: int = Field(default=100, ge=0, le=100)


class FaultConfig(Model):
    per_route: ClassVar[type[Model]]
    """A route's config is a whole one: it replaces the filter's own (Envoy's rule)."""

    delay: DelayConfig | None = None
    abort: AbortConfig | None = None
    upstream_cluster: str = ""
    headers: list[HeaderMatcherConfig] = Field(default_factory=list)


FaultConfig.per_route = FaultConfig


class Injection:
    """One config's faults: the filter's own, or a route's."""

    __slots__ = ("delay", "abort", "cluster", "matchers")

    def __init__(self, config: FaultConfig) -> None:
        self.delay = config.delay
        self.abort = config.abort
        self.cluster = config.upstream_cluster
        self.matchers = tuple(HeaderMatcher(h) for h in config.headers)

    def on_request(self, stream: Any) -> FilterStatus:
        if self.cluster and (stream.cluster is None or stream.cluster.name != self.cluster):
            return FilterStatus.CONTINUE
        head = stream.request
        for m in self.matchers:  # a loop, not all() over a generator made per request
            if not m.matches(head.headers, head.method):
                return FilterStatus.CONTINUE
        if self.delay is not None and _chosen(self.delay.percentage):
            stream.response_flags.append(DELAY_INJECTED)
            asyncio.get_running_loop().call_later(
                self.delay.fixed_delay, self._after_delay, stream)
            return FilterStatus.STOP
        return self._maybe_abort(stream)

    def _after_delay(self, stream: Any) -> None:
        if not stream.done and self._maybe_abort(stream) is FilterStatus.CONTINUE:
            stream.continue_request()

    def _maybe_abort(self, stream: Any) -> FilterStatus:
        if self.abort is not None and _chosen(self.abort.percentage):
            stream.response_flags.append(FAULT_INJECTED)
            stream.send_local_reply(self.abort.status, ABORT_BODY)
            return FilterStatus.STOP
        return FilterStatus.CONTINUE


def _chosen(percentage: int) -> bool:
    return percentage >= 100 or random.random() * 100 < percentage


class Fault(StreamFilter):
    """Stateless: one instance serves every stream of a listener."""

    phase = Phase.AFTER_ROUTE

    def __init__(self, config: FaultConfig) -> None:
        self.routes: PerRoute[Injection] = PerRoute(
            "fault", FaultConfig, lambda per, _: Injection(per), Injection(config))

    def on_request(self, stream: Any) -> FilterStatus:
        return self.routes.get(stream).on_request(stream)


def build(config: FaultConfig, context: BuildContext) -> Callable[[], StreamFilter]:
    fault = Fault(config)
    return lambda: fault


@hookimpl
def mosn_stream_filters() -> list[Extension]:
    return [Extension("fault", build, FaultConfig, description="inject delays and aborts")]
