"""MOSN's ``metrics`` block at run time: ``stats_matcher`` as a filter over stat
names (applied to every view of the stats: the sinks, ``/stats``,
``/stats/prometheus``, ``/api/v1/stats``), and the Prometheus sink's answer.

The stats themselves are always counted (circuit breakers and load balancers read
them); a stat the matcher rejects is only never shown, which is what a scraper of
MOSN's or Envoy's sees of a rejected stat too."""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from mosn.admin.stat_names import StatNames
from mosn.config.metrics import PrometheusSinkConfig, StatsMatcherConfig
from mosn.router.match import string_test

__all__ = ["StatsFilter", "runtime_collectors"]


class StatsFilter:
    """Whether a stat (by its full name, ``cluster.backend.upstream_rq_total``) is shown."""

    def __init__(self, matcher: StatsMatcherConfig | None, names: StatNames) -> None:
        self.names = names
        self.keep: Callable[[str], bool] | None = None
        """None: every stat is shown."""
        if matcher is None:
            return
        if matcher.reject_all:
            self.keep = lambda name: False
            return
        include = [string_test(m) for m in matcher.inclusion_list.patterns] \
            if matcher.inclusion_list else None
        exclude = [string_test(m) for m in matcher.exclusion_list.patterns] \
            if matcher.exclusion_list else []
        keys = frozenset(matcher.exclusion_keys)
        labels = frozenset(matcher.exclusion_labels)
        if include is None and not exclude and not keys and not labels:
            return

        def keep(name: str) -> bool:
            if include is not None and not any(t(name) for t in include):
                return False
            if any(t(name) for t in exclude):
                return False
            if keys or labels:
                split = self.names.split(name)
                if split.stat in keys or any(k in labels for k, _ in split.labels):
                    return False
            return True

        self.keep = keep

    def values(self, found: dict[str, Any]) -> dict[str, Any]:
        keep = self.keep
        return found if keep is None else {k: v for k, v in found.items() if keep(k)}


def runtime_collectors(sink: PrometheusSinkConfig) -> tuple[Any, ...]:
    """The process and Python runtime collectors the sink adds (MOSN's process and Go
    ones), each left out when the sink's ``disable_collect_*`` says so."""
    aside = CollectorRegistry()  # each registers itself somewhere; each scrape registers it again
    found: list[Any] = []
    if not sink.disable_collect_process:
        found.append(ProcessCollector(registry=aside))
    if not sink.disable_collect_go:
        found += [GCCollector(registry=aside), PlatformCollector(registry=aside)]
    return tuple(found)
