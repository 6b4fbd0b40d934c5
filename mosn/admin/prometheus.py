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

import math
import re
from typing import Any, Callable, Iterator, Sequence

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

    def __init__(self, store: StatsStore, names: StatNames,
                 keep: Callable[[str], bool] | None = None,
                 percentiles: Sequence[int] = ()) -> None:
        self.store = store
        self.names = names
        self.keep = keep or (lambda name: True)
        self.percentiles = percentiles

    def collect(self) -> Iterator[Metric]:
        names, keep = self.names, self.keep
        families: dict[str, Any] = {}
        for full, value in sorted(self.store.snapshot().items()):
            if not keep(full):
                continue
            split = names.split(full)
            name = metric_name(split.kind, split.stat)
            family = families.get(name)
            if family is None:
                kind = GaugeMetricFamily if is_gauge(split.stat) else CounterMetricFamily
                family = families[name] = kind(name, f"{split.stat} per {split.kind or 'mosn'}",
                                               labels=[k for k, _ in split.labels])
            family.add_metric([v for _, v in split.labels], value)
        for full, h in sorted(self.store.histogram_totals().items()):
            if not keep(full):
                continue
            split = names.split(full)
            name = metric_name(split.kind, split.stat)
            family = families.get(name)
            if family is None:
                family = families[name] = HistogramMetricFamily(
                    name, f"{split.stat} in milliseconds per {split.kind or 'mosn'}",
                    labels=[k for k, _ in split.labels])
            buckets = [("+Inf" if le is None else f"{le:g}", count) for le, count in h["buckets"]]
            family.add_metric([v for _, v in split.labels], buckets, h["sum_ms"])
            if self.percentiles:
                self._add_percentiles(families, name, split, h)
        yield from families.values()

    def _add_percentiles(self, families: dict[str, Any], name: str, split: Any,
                         h: dict[str, Any]) -> None:
        """MOSN's sink ``percentiles``: each estimated from the buckets, in ms."""
        pname = f"{name}_percentile"
        family = families.get(pname)
        if family is None:
            family = families[pname] = GaugeMetricFamily(
                pname, f"{split.stat} percentiles in milliseconds (estimated from the "
                       "histogram's buckets)",
                labels=[k for k, _ in split.labels] + ["percentile"])
        for p in self.percentiles:
            value = quantile(h["buckets"], p / 100)
            family.add_metric([v for _, v in split.labels] + [str(p)],
                              math.nan if value is None else value)


def exposition(store: StatsStore, names: StatNames, keep: Callable[[str], bool] | None = None,
               percentiles: Sequence[int] = (), runtime: Sequence[Any] = ()) -> bytes:
    """The text a scrape gets: the stats ``keep`` keeps (all without it), with each
    histogram's ``percentiles`` as gauges, then the ``runtime`` collectors'
    metrics (prometheus-client's process and Python ones)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(store, names, keep, percentiles))  # type: ignore[arg-type]
    for collector in runtime:
        registry.register(collector)
    return generate_latest(registry)


def quantile(buckets: list[list[Any]], q: float) -> float | None:
    """The ``q`` quantile estimated from cumulative ``[upper bound, count]`` buckets,
    linearly within the bucket it falls in (as Prometheus' ``histogram_quantile``);
    the last finite bound if it falls in the overflow bucket; None without values."""
    total = buckets[-1][1]
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if bound is None:
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower
