"""MOSN's ``metrics`` block (``pkg/config/v2`` ``MetricsConfig``): its Prometheus sink
on a port of its own and ``stats_matcher``, the stats the sinks and the admin API
show. MOSN's shared-memory and flush settings are its Go runtime's (accepted with a
warning: mosn's stats live in its own shared memory, summed per scrape)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from mosn.config.base import Model, Unsupported
from mosn.config.routers import StringMatcherConfig
from mosn.config.types import Address, parse_address

PROMETHEUS_SINK = "prometheus"
"""MOSN's Prometheus sink, the only sink type mosn has."""
DEFAULT_SINK_ADDRESS = "0.0.0.0"
"""MOSN's Prometheus sink listens on every address (``":" + port``)."""
DEFAULT_SINK_ENDPOINT = "/metrics"
"""MOSN's default path of the Prometheus sink."""


class PrometheusSinkConfig(Model):
    """MOSN's ``promConfig``: the stats in Prometheus' text format at ``endpoint`` on
    ``port``."""

    port: int = Field(ge=1, le=65535)
    address: str = DEFAULT_SINK_ADDRESS
    """mosn's own: the address the sink listens on (MOSN's: every address)."""
    endpoint: str = DEFAULT_SINK_ENDPOINT
    percentiles: list[int] = Field(default_factory=list)
    """Each histogram's estimated percentiles too, as gauges
    ``<histogram>_percentile{percentile="99"}`` (MOSN writes them as a summary's
    quantiles; the histograms stay Prometheus histograms here)."""
    disable_collect_process: bool = False
    """No ``process_*`` metrics (CPU seconds, memory, open descriptors)."""
    disable_collect_go: bool = False
    """MOSN's Go runtime metrics; here the Python runtime's (``python_gc_*``,
    ``python_info``)."""
    export_url: Unsupported = None
    """MOSN's push mode (to a Pushgateway): not run yet."""

    mosn_runtime_fields = {
        "disable_passive_flush": "MOSN flushes its Go metrics on each scrape unless set; "
                                 "mosn reads its shared memory on each scrape",
    }

    @property
    def bind(self) -> Address:
        return parse_address(f"{self.address}:{self.port}")

    @model_validator(mode="after")
    def _check(self) -> "PrometheusSinkConfig":
        try:
            self.bind
        except ValueError as exc:
            raise ValueError(f"address {self.address!r}: {exc}") from None
        if not self.endpoint.startswith("/"):
            raise ValueError(f"endpoint {self.endpoint!r}: a path, starting with '/'")
        bad = [p for p in self.percentiles if not 0 < p <= 100]
        if bad:
            raise ValueError(f"percentiles: {bad[0]} is not in (0, 100]")
        return self


class MetricsSinkConfig(Model):
    type: str
    config: PrometheusSinkConfig

    @model_validator(mode="before")
    @classmethod
    def _known_type(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kind = next((v for k, v in data.items() if str(k).lower() == "type"), None)
            if kind is not None and kind != PROMETHEUS_SINK:
                raise ValueError(f"sink type {kind!r}: mosn has MOSN's "
                                 f"{PROMETHEUS_SINK!r} sink only")
        return data


class ListStringMatcherConfig(Model):
    """Envoy's ``ListStringMatcher``."""

    patterns: list[StringMatcherConfig] = Field(min_length=1)


class StatsMatcherConfig(Model):
    """Which stats are shown: MOSN's ``reject_all``, ``exclusion_keys`` (stat names,
    ``upstream_rq_total``) and ``exclusion_labels`` (a stat with any of these labels:
    ``listener``, ``protocol``, ``cluster``, ``host``); Envoy's ``inclusion_list`` and
    ``exclusion_list`` (matchers on the whole name, ``cluster.backend.upstream_rq_total``)."""

    reject_all: bool = False
    exclusion_keys: list[str] = Field(default_factory=list)
    exclusion_labels: list[str] = Field(default_factory=list)
    inclusion_list: ListStringMatcherConfig | None = None
    exclusion_list: ListStringMatcherConfig | None = None

    @model_validator(mode="after")
    def _one_of_envoy_s(self) -> "StatsMatcherConfig":
        envoy = [k for k in ("reject_all", "inclusion_list", "exclusion_list")
                 if getattr(self, k)]
        if len(envoy) > 1:
            raise ValueError(f"set one of {', '.join(envoy)} (Envoy's oneof)")
        return self


class MetricsConfig(Model):
    sinks: list[MetricsSinkConfig] = Field(default_factory=list)
    stats_matcher: StatsMatcherConfig | None = None

    mosn_runtime_fields = {
        "shm_zone": "the shared memory zone of MOSN's Go metrics; mosn's stats have "
                    "their own shared memory",
        "shm_size": "the size of MOSN's metrics shared memory; mosn sizes its own",
        "flush_interval": "the flush period of MOSN's push sinks (console); the "
                          "Prometheus sink is read when scraped",
        "flush_mosn": "MOSN's own Go runtime metrics in the flush",
        "lazy_flush": "MOSN's flush of metrics not yet used",
        "sample": "MOSN's histogram sampling of its Go metrics",
    }

    @model_validator(mode="after")
    def _ports_differ(self) -> "MetricsConfig":
        ports = [(s.config.address, s.config.port) for s in self.sinks]
        if len(set(ports)) != len(ports):
            raise ValueError("sinks: two sinks on one port")
        return self
