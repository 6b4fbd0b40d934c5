"""``/stats/prometheus``: the summed stats in Prometheus' text exposition format,
written by prometheus-client from a collector over a snapshot taken per scrape.

Names are ``mosn_<scope>_<stat>`` with the scope's owner as labels, as Envoy's
``envoy_cluster_upstream_rq_total{envoy_cluster_name="x"}``:
``mosn_listener_downstream_rq_2xx{listener="http"}``,
``mosn_cluster_upstream_rq_total{cluster="backend"}``,
``mosn_host_rq_total{cluster="backend",host="127.0.0.1:8080"}``,
``mosn_protocol_downstream_rq_total{protocol="bolt"}``. Dots and other characters
Prometheus does not allow become ``_``. Counters get prometheus-client's ``_total``
suffix on their sample (``downstream_rq_2xx`` is sampled as
``mosn_listener_downstream_rq_2xx_total``); the request time histograms are
Prometheus histograms in milliseconds (``_bucket{le=...}``, ``_sum``, ``_count``).
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from mosn.admin.stat_names import StatNames
from mosn.observability.stats import StatsStore, is_gauge

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus server reads (``generate_latest``
writes it)."""
PREFIX = "mosn"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(kind: str, stat: str) -> str:
    return _INVALID.sub("_", "_".join(p for p in (PREFIX, kind, stat) if p))


class StatsCollector:
    """A prometheus-client collector over a stats store (``collect`` is called per
    scrape by ``generate_latest``)."""

    def __init__(self, store: StatsStore, names: StatNames) -> None:
        self.store = store
        self.names = names

    def collect(self) -> Iterator[Metric]:
        names = self.names
        families: dict[str, Any] = {}
        for full, value in sorted(self.store.snapshot().items()):
            split = names.split(full)
            name = metric_name(split.kind, split.stat)
            family = families.get(name)
            if family is None:
                kind = GaugeMetricFamily if is_gauge(split.stat) else CounterMetricFamily
                family = families[name] = kind(name, f"{split.stat} per {split.kind or 'mosn'}",
                                               labels=[k for k, _ in split.labels])
            family.add_metric([v for _, v in split.labels], value)
        for full, h in sorted(self.store.histogram_totals().items()):
            split = names.split(full)
            name = metric_name(split.kind, split.stat)
            family = families.get(name)
            if family is None:
                family = families[name] = HistogramMetricFamily(
                    name, f"{split.stat} in milliseconds per {split.kind or 'mosn'}",
                    labels=[k for k, _ in split.labels])
            buckets = [("+Inf" if le is None else f"{le:g}", count) for le, count in h["buckets"]]
            family.add_metric([v for _, v in split.labels], buckets, h["sum_ms"])
        yield from families.values()


def exposition(store: StatsStore, names: StatNames) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(store, names))  # type: ignore[arg-type]
    return generate_latest(registry)
