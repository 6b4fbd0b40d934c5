"""Pydantic models of MOSN's config shape.

The shape and field names are MOSN's (``pkg/config/v2``) so an existing MOSN JSON
config loads unchanged. Like MOSN's Go decoder, keys match field names without
regard to case (``"Name"`` is ``name``); unlike it, nothing is silently ignored: an
unknown key is refused with its path (:mod:`mosn.config.base`), a MOSN field that
only MOSN's Go runtime uses is accepted with a warning (``mosn_runtime_fields``), and
a field whose feature mosn does not run yet is refused when set (``Unsupported``).
docs/compat.md lists them all.

A filter's ``config`` stays a plain mapping here; :mod:`mosn.config.loader` validates
it with the model its plugin registered.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Iterator, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from mosn.config.base import ExtraKey, Model, Unsupported, extra_keys_in
from mosn.config.bootstrap import DynamicResourcesConfig, NodeConfig
from mosn.config.logroller import Roller, parse_roller
from mosn.config.metrics import MetricsConfig
from mosn.config.routers import RouterConfiguration
from mosn.config.tls import TlsContextConfig
from mosn.config.types import Address, AddressField, Duration, unix_path

DEFAULT_ADMIN_PORT = 34901  # MOSN's admin port
DEFAULT_CONNECT_TIMEOUT = 3.0  # seconds; MOSN's default for upstream connects
DEFAULT_GRACEFUL_TIMEOUT = 30.0  # seconds to drain connections on shutdown (MOSN: 30s)
DEFAULT_MAX_REQUEST_PER_CONN = 1024  # MOSN's default
MAX_HOST_WEIGHT = 128  # MOSN's bound for a host weight (pkg/config/v2 MaxHostWeight)
DEFAULT_HEALTH_CHECKER = "tcp"  # MOSN's: a TCP connect when no protocol checker applies
DEFAULT_HEALTH_CHECK_TIMEOUT = 1.0  # MOSN's DefaultTimeout
DEFAULT_HEALTH_CHECK_INTERVAL = 15.0  # MOSN's DefaultInterval
DEFAULT_HEALTH_CHECK_JITTER = 0.005  # MOSN's DefaultIntervalJitter
DEFAULT_HEALTH_CHECK_INITIAL_DELAY = 1.0  # MOSN's first check after 1s
DEFAULT_DNS_REFRESH_RATE = 5.0  # MOSN's DefaultRefreshInterval for STRICT_DNS
DEFAULT_MAX_HOSTS = 64
"""Host slots reserved per cluster when ``max_hosts`` is not set (and the config lists
fewer hosts): room for a discovered service of a few dozen instances; each slot costs
a few dozen bytes per worker."""
MAX_HOSTS_LIMIT = 65536  # a sanity bound on max_hosts
DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024
"""Bytes a worker may hold in buffers before the overload manager acts: a sidecar's
memory is counted in hundreds of MiB, and healthy traffic buffers far less (a write
buffer of 1 MiB per slow peer, frames of up to 16 MiB while they arrive)."""
MIN_MAX_BUFFERED_BYTES = 1024 * 1024  # below one connection's write buffer: no sense
DEFAULT_STOP_ACCEPTING = 0.8  # of the budget: accepting pauses first ...
DEFAULT_SHED = 0.95  # ... and the connections holding the most are closed last
DEFAULT_OVERLOAD_REFRESH = 0.25  # seconds; the refresh_interval of Envoy's examples
MAX_OVERLOAD_REFRESH = 60.0  # a sanity bound: a budget read less often protects nothing
DEFAULT_LISTENER_FILTERS_TIMEOUT = 15.0
"""Seconds the listener filters may wait for the first bytes before the connection
is closed (Envoy's default ``listener_filters_timeout``)."""
ORIGINAL_DST_TYPES = ("redirect", "tproxy")
"""MOSN's ``OriginalDstType``: how a listener's connections were intercepted (an
iptables REDIRECT, read back with ``SO_ORIGINAL_DST``; or TPROXY, which keeps it)."""
NETWORKS = ("tcp", "unix", "udp")
UDP_PROXY = "udp_proxy"  # the network filter of a udp listener
CONNECTION_MANAGER = "connection_manager"
"""MOSN's older network filter whose ``config`` is a router configuration, registered
as if it were under ``servers[].routers`` (MOSN's ``ParseRouterConfiguration``)."""
SOURCE_TYPES = ("ANY", "SAME_IP_OR_LOOPBACK", "EXTERNAL")
"""Envoy's ``filter_chain_match.source_type``."""
TRANSPORT_PROTOCOLS = ("tls", "raw_buffer")
"""The transport protocols a listener filter detects (Envoy's names)."""
DEFAULT_MAX_DATAGRAM_SIZE = 64 * 1024
"""Bytes of a UDP datagram a listener takes (MOSN's ``UdpPacketMaxSize``: any datagram
IPv4 can carry); a larger one is dropped and counted."""
DEFAULT_ORIGINAL_DST_CLEANUP = 5.0
"""Seconds after which an ``ORIGINAL_DST`` cluster forgets a destination no
connection used since the last sweep (Envoy's default ``cleanup_interval``)."""
MAX_SOCKET_MARK = 0xFFFFFFFF  # SO_MARK is a 32-bit value


class StrictModel(Model):
    """A model of mosn's own (not MOSN's shape): an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- servers and listeners ------------------------------------------------------------


class FilterConfig(Model):
    """``{type: NAME, config: {...}}``: an extension and its plugin-validated config."""

    type: str
    config: dict[str, Any] = Field(default_factory=dict)
    _parsed: Any = PrivateAttr(default=None)

    @property
    def parsed(self) -> Any:
        """``config`` validated by the plugin's model (set by the loader)."""
        return self._parsed

    def set_parsed(self, parsed: Any) -> None:
        """Keep ``config`` as validated by the plugin's model (the loader's job)."""
        self._parsed = parsed

    def extra_keys(self, path: str = "") -> Iterator[ExtraKey]:
        yield from super().extra_keys(path)
        yield from extra_keys_in(self._parsed, f"{path}.config" if path else "config")


class CidrRangeConfig(StrictModel):
    """Envoy's ``CidrRange``: ``{address_prefix: 10.0.0.0, prefix_len: 8}``."""

    address_prefix: str
    prefix_len: int = Field(ge=0, le=128)

    @model_validator(mode="after")
    def _check(self) -> "CidrRangeConfig":
        self.network()  # a bad address or a length past the family's is refused here
        return self

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        try:
            return ipaddress.ip_network(f"{self.address_prefix}/{self.prefix_len}", strict=False)
        except ValueError as exc:
            raise ValueError(f"{self.address_prefix}/{self.prefix_len}: {exc}") from None


class FilterChainMatch(StrictModel):
    """Envoy's ``filter_chain_match``: which connections a filter chain takes. An
    empty field matches any connection; the most specific match of each field wins,
    in Envoy's order (docs/interception.md, "Several filter chains")."""

    destination_port: int | None = Field(default=None, ge=1, le=65535)
    prefix_ranges: list[CidrRangeConfig] = Field(default_factory=list)
    """Of the destination (the original destination when there is one)."""
    server_names: list[str] = Field(default_factory=list)
    """The TLS SNI: exact names, or ``*.example.com`` wildcards."""
    transport_protocol: str = ""
    application_protocols: list[str] = Field(default_factory=list)
    """ALPN ids from the ClientHello, or what the HTTP inspector found (``h2c``,
    ``http/1.1``, ``http/1.0``)."""
    direct_source_prefix_ranges: list[CidrRangeConfig] = Field(default_factory=list)
    """Of the peer of the socket (a load balancer, before the PROXY protocol)."""
    source_type: str = "ANY"
    source_prefix_ranges: list[CidrRangeConfig] = Field(default_factory=list)
    source_ports: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "FilterChainMatch":
        if self.source_type not in SOURCE_TYPES:
            raise ValueError(f"source_type {self.source_type!r}: use one of "
                             f"{', '.join(SOURCE_TYPES)}")
        if self.transport_protocol not in ("", *TRANSPORT_PROTOCOLS):
            raise ValueError(f"transport_protocol {self.transport_protocol!r}: use "
                             f"{' or '.join(TRANSPORT_PROTOCOLS)} (or leave it out)")
        if any(not 0 < p < 65536 for p in self.source_ports):
            raise ValueError("source_ports: each is a port from 1 to 65535")
        for name in self.server_names:
            if not name or "*" in name[1:] or (name.startswith("*") and not name.startswith("*.")):
                raise ValueError(f"server_names: {name!r} is not a name or a '*.suffix' wildcard")
        return self

    def key(self) -> str:
        """The same for two matches that take the same connections."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


class FilterChainConfig(Model):
    match: str = ""
    name: str = ""
    """Envoy's: shown in logs."""
    filter_chain_match: FilterChainMatch | None = None
    """Envoy's: the connections this chain takes (none: any)."""
    tls_context: TlsContextConfig | None = None
    tls_context_set: list[TlsContextConfig] = Field(default_factory=list)
    """Several certificates, chosen by the SNI of each handshake (the first is the
    default); takes the place of ``tls_context``."""
    filters: list[FilterConfig] = Field(min_length=1)

    @field_validator("tls_context", mode="before")
    @classmethod
    def _empty_tls(cls, value: Any) -> Any:
        return None if value == {} else value

    @field_validator("tls_context_set", mode="before")
    @classmethod
    def _null_set(cls, value: Any) -> Any:
        return [] if value is None else value

    @model_validator(mode="after")
    def _one_tls(self) -> "FilterChainConfig":
        if self.tls_context_set and self.tls_context is not None and self.tls_context.status:
            raise ValueError("set tls_context or tls_context_set, not both")
        return self

    def server_contexts(self) -> list[TlsContextConfig]:
        """The chain's certificates: the set, else the one context (if any)."""
        if self.tls_context_set:
            return list(self.tls_context_set)
        return [self.tls_context] if self.tls_context is not None else []

    def enabled_tls(self) -> list[TlsContextConfig]:
        """The chain's certificates whose ``status`` is on (none: plaintext)."""
        return [t for t in self.server_contexts() if t.status]


class AccessLogConfig(Model):
    """MOSN's ``AccessLog``: a listener's access log file and format."""

    log_path: str = Field(min_length=1)
    """A file (appended to, created if missing), or ``stdout`` / ``/dev/stdout``."""
    log_format: str = ""
    """MOSN's ``%variable%`` template (empty: MOSN's default format), or ``json``."""
    json_format: dict[str, str] | None = None
    """mosn's own: one JSON object a line, each key's value a template."""

    @field_validator("log_format")
    @classmethod
    def _known_variables(cls, value: str) -> str:
        from mosn.observability.accesslog import compile_format

        compile_format(value)  # an unknown variable is refused, with this field's path
        return value

    @field_validator("json_format")
    @classmethod
    def _known_json_variables(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        from mosn.observability.accesslog import compile_format

        if value:
            compile_format("", value)
        return value


class ListenerConfig(Model):
    mosn_runtime_fields = {
        "default_read_buffer_size": "the first read size of MOSN's Go connections; "
                                    "mosn's reads are sized by its network layer",
        "log_path": "an old MOSN listener field MOSN itself no longer reads (the "
                    "server's default_log_path holds the log)",
        "log_level": "an old MOSN listener field MOSN itself no longer reads (the "
                     "server's default_log_level sets the level)",
    }

    name: str = ""
    type: Literal["", "ingress", "egress"] = ""
    """MOSN's listener type: which digest log the SOFATracer driver writes (server or
    client); mosn's OpenTelemetry spans do not depend on it."""
    address: AddressField
    network: str = "tcp"
    bind_port: bool | None = None
    """False: a virtual listener, bound to no socket, that takes the connections a
    ``use_original_dst`` listener hands over by their original destination."""
    reuseport: bool = False
    use_original_dst: str = ""
    """MOSN's ``redirect`` or ``tproxy``: this listener takes intercepted connections
    (``tproxy``: its socket is transparent), recovers where each was going (the
    ``original_dst`` listener filter, added when not listed) and hands each to the
    listener of that address, if there is one."""
    access_logs: list[AccessLogConfig] = Field(default_factory=list)
    inspector: bool = False
    """MOSN's: TLS and plaintext clients share the port (the TLS inspector tells them
    apart by the first byte); without it a TLS chain takes TLS only."""
    listener_filters: list[FilterConfig] = Field(default_factory=list)
    listener_filters_timeout: Duration = DEFAULT_LISTENER_FILTERS_TIMEOUT
    """Envoy's: how long the listener filters (the TLS inspector) may wait for the
    first bytes before the connection is closed."""
    continue_on_listener_filters_timeout: bool = False
    """Envoy's: when the listener filters time out, choose the filter chain with what
    they found so far instead of closing (a client that waits for the server to speak)."""
    filter_chains: list[FilterChainConfig] = Field(min_length=1)
    stream_filters: list[FilterConfig] = Field(default_factory=list)
    connection_idle_timeout: Duration | None = None
    max_connections: int | None = Field(default=None, ge=1)
    """mosn's own: accepted connections beyond this are closed at once (Envoy's overflow)."""
    per_connection_buffer_limit_bytes: int | None = Field(default=None, ge=1024)
    max_datagram_size: int = Field(default=DEFAULT_MAX_DATAGRAM_SIZE, ge=1,
                                   le=DEFAULT_MAX_DATAGRAM_SIZE)
    """mosn's own, UDP: a larger datagram is dropped (``downstream_rx_datagram_dropped``)."""

    @model_validator(mode="before")
    @classmethod
    def _unix_network(cls, data: Any) -> Any:
        if isinstance(data, dict):
            lowered = {k.lower(): k for k in data if isinstance(k, str)}
            if "address" in lowered and "network" in lowered:
                key = lowered["address"]
                data = {**data, key: unix_path(data[key], data[lowered["network"]])}
        return data

    @model_validator(mode="after")
    def _check(self) -> "ListenerConfig":
        self.network = self.network.lower()
        if self.network not in NETWORKS:
            raise ValueError(f"network {self.network!r} is not supported; use one of "
                             f"{', '.join(NETWORKS)}")
        if self.use_original_dst not in ("", *ORIGINAL_DST_TYPES):
            raise ValueError(f"use_original_dst {self.use_original_dst!r}: use "
                             f"{' or '.join(ORIGINAL_DST_TYPES)} (or leave it out)")
        if self.use_original_dst and self.network != "tcp":
            raise ValueError("use_original_dst is for tcp listeners")
        if self.use_original_dst and self.bind_port is False:
            raise ValueError("use_original_dst on a listener with bind_port: false: a "
                             "virtual listener takes connections, it does not hand them on")
        if self.network == "udp":
            self._check_udp()
        elif any(f.type == UDP_PROXY for fc in self.filter_chains for f in fc.filters):
            raise ValueError(f"{UDP_PROXY} is for a listener with network: udp")
        keys: dict[str, int] = {}
        for i, chain in enumerate(self.filter_chains):
            key = (chain.filter_chain_match or FilterChainMatch()).key()
            if key in keys:
                raise ValueError(f"filter_chains[{i}]: the same filter_chain_match as "
                                 f"filter_chains[{keys[key]}] (which one takes a connection?)")
            keys[key] = i
        return self

    def _check_udp(self) -> None:
        if len(self.filter_chains) != 1 or self.filter_chains[0].filter_chain_match:
            raise ValueError("a udp listener has one filter chain, without filter_chain_match")
        if self.filter_chains[0].enabled_tls() or self.inspector or self.listener_filters:
            raise ValueError("a udp listener has no TLS and no listener filters")
        if [f.type for f in self.filter_chains[0].filters] != [UDP_PROXY]:
            raise ValueError(f"a udp listener's filter chain is one {UDP_PROXY} filter "
                             "(the filter that serves datagrams)")
        if self.bind_port is False:
            raise ValueError("a udp listener binds its port (bind_port: false is for tcp)")

    @property
    def is_virtual(self) -> bool:
        """Bound to no socket: it serves connections other listeners hand over."""
        return self.bind_port is False


def _roller(value: Any) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("a roller is MOSN's text: 'time=24' or 'size=100 age=10 keep=10'")
    return parse_roller(value)


class ServerConfig(Model):
    mosn_runtime_fields = {
        "processor": "GOMAXPROCS of MOSN's Go runtime; mosn runs one process per "
                     "worker (scripts/start --workers)",
        "use_netpoll_mode": "a Go network poller mode of MOSN; mosn runs on asyncio",
    }

    mosn_server_name: str = ""
    default_log_path: str = ""
    default_log_level: str = ""
    global_log_roller: Annotated[Roller | None, BeforeValidator(_roller)] = None
    """MOSN's log rotation (``"time=24"``, ``"size=100 age=10 keep=10 compress=on"``)
    of the access logs (docs/access_log.md)."""
    graceful_timeout: Duration = DEFAULT_GRACEFUL_TIMEOUT
    listeners: list[ListenerConfig] = Field(default_factory=list)
    routers: list[RouterConfiguration] = Field(default_factory=list)


# -- upstream ------------------------------------------------------------------------------


class HostConfig(Model):
    address: AddressField
    hostname: str = ""
    weight: int = Field(default=1, ge=1, le=MAX_HOST_WEIGHT)
    metadata: dict[str, Any] = Field(default_factory=dict)
    """MOSN's ``{"filter_metadata": {"mosn.lb": {...}}}``; also a plain mapping."""
    tls_disable: bool = False

    @classmethod
    def checked(cls, address: Address, hostname: str = "", weight: int = 1,
                metadata: dict[str, Any] | None = None) -> HostConfig:
        """An entry whose fields its maker checked as validation checks them (an xDS
        endpoint, read field by field), made as ``model_construct`` makes one (the
        attributes it sets, set here) without its pass over every field and its
        defaults: some 1.5 us on the benchmark machine, against some 3 us for a
        ``model_copy`` of one entry and 5-9 us for ``model_construct``; an endpoint
        push makes thousands."""
        entry = cls.__new__(cls)
        setattr_ = object.__setattr__  # pydantic's own __setattr__ would validate
        setattr_(entry, "__dict__", {"address": address, "hostname": hostname, "weight": weight,
                                     "metadata": {} if metadata is None else metadata,
                                     "tls_disable": False})
        # Every field is set: one set for every such entry (pydantic adds a field's
        # name to it when one is assigned, which leaves a set holding all as it is), and
        # one object fewer per entry for the garbage collector's passes to walk.
        setattr_(entry, "__pydantic_fields_set__", _HOST_FIELDS_SET)
        setattr_(entry, "__pydantic_extra__", {})
        setattr_(entry, "__pydantic_private__", None)
        return entry

    @property
    def lb_metadata(self) -> dict[str, Any]:
        nested = self.metadata.get("filter_metadata", {}).get("mosn.lb")
        return dict(nested) if isinstance(nested, dict) else dict(self.metadata)


_HOST_FIELDS_SET = set(HostConfig.model_fields)


class ThresholdsConfig(Model):
    """One circuit breaker threshold set (MOSN's ``Thresholds``); 0 means no limit (MOSN's)."""

    max_connections: int = Field(default=0, ge=0)
    max_pending_requests: int = Field(default=0, ge=0)
    max_requests: int = Field(default=0, ge=0)
    max_retries: int = Field(default=0, ge=0)


class CircuitBreakersConfig(Model):
    """MOSN writes ``circuit_breakers`` as the list of thresholds itself; Envoy as
    ``{thresholds: [...]}``. Both are accepted; like MOSN, only the first set is used
    (there are no priorities)."""

    thresholds: list[ThresholdsConfig] = Field(default_factory=list, max_length=1)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        if data is None:
            return {}
        return {"thresholds": data} if isinstance(data, list) else data

    @property
    def limits(self) -> ThresholdsConfig:
        return self.thresholds[0] if self.thresholds else ThresholdsConfig()


class HealthCheckConfig(Model):
    """MOSN's ``HealthCheckConfig``; a 0 or empty field takes MOSN's default."""

    protocol: str = ""
    """The health checker (a ``mosn_health_checkers`` extension); empty: ``tcp``."""
    timeout: Duration = DEFAULT_HEALTH_CHECK_TIMEOUT
    interval: Duration = DEFAULT_HEALTH_CHECK_INTERVAL
    interval_jitter: Duration = DEFAULT_HEALTH_CHECK_JITTER
    initial_delay_seconds: Duration = DEFAULT_HEALTH_CHECK_INITIAL_DELAY
    """A duration, despite its name (MOSN's ``DurationConfig``)."""
    healthy_threshold: int = Field(default=1, ge=0)
    unhealthy_threshold: int = Field(default=1, ge=0)
    service_name: str = ""
    check_config: dict[str, Any] = Field(default_factory=dict)
    """The checker's own settings, validated by its plugin's model."""
    event_log_path: Unsupported = None
    common_callbacks: Unsupported = None
    _parsed: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _mosn_defaults(self) -> "HealthCheckConfig":
        self.protocol = self.protocol or DEFAULT_HEALTH_CHECKER
        if not self.timeout:
            self.timeout = DEFAULT_HEALTH_CHECK_TIMEOUT
        if not self.interval:
            self.interval = DEFAULT_HEALTH_CHECK_INTERVAL
        if not self.interval_jitter:
            self.interval_jitter = DEFAULT_HEALTH_CHECK_JITTER
        if not self.initial_delay_seconds:
            self.initial_delay_seconds = DEFAULT_HEALTH_CHECK_INITIAL_DELAY
        self.healthy_threshold = self.healthy_threshold or 1
        self.unhealthy_threshold = self.unhealthy_threshold or 1
        return self

    @property
    def parsed(self) -> Any:
        """``check_config`` validated by the checker's model (set by the loader)."""
        return self._parsed

    def set_parsed(self, parsed: Any) -> None:
        """Keep ``check_config`` as validated by the checker's model (the loader's job)."""
        self._parsed = parsed

    def extra_keys(self, path: str = "") -> Iterator[ExtraKey]:
        yield from super().extra_keys(path)
        yield from extra_keys_in(self._parsed, f"{path}.check_config" if path else "check_config")


FALLBACK_POLICIES = ("NO_FALLBACK", "ANY_ENDPOINT", "DEFAULT_SUBSET")
"""MOSN's ``fall_back_policy`` numbers 0, 1, 2 are these (Envoy's names)."""


class LbSubsetConfig(Model):
    """MOSN's ``lb_subset_config``: subsets of hosts by metadata, picked by a route's
    ``metadata_match``."""

    fall_back_policy: str = "NO_FALLBACK"
    default_subset: dict[str, str] = Field(default_factory=dict)
    subset_selectors: list[list[str]] = Field(default_factory=list)

    @field_validator("fall_back_policy", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 3:
            return FALLBACK_POLICIES[value]
        if isinstance(value, str) and value.upper() in FALLBACK_POLICIES:
            return value.upper()
        raise ValueError(f"fall_back_policy is 0, 1, 2 or one of {', '.join(FALLBACK_POLICIES)}")

    @field_validator("subset_selectors")
    @classmethod
    def _selectors(cls, value: list[list[str]]) -> list[list[str]]:
        if any(not keys for keys in value):
            raise ValueError("a subset selector needs at least one key")
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.subset_selectors) or self.fall_back_policy != "NO_FALLBACK"


class SlowStartConfig(Model):
    """MOSN's ``slow_start``: a new (or newly healthy) host's weight ramps up over
    ``slow_start_duration`` as ``max(min_weight_percent, (t/duration) ** (1/aggression))``."""

    mode: str = ""
    """``duration`` turns it on; empty: off."""
    slow_start_duration: Duration = 0.0
    aggression: float = 1.0
    min_weight_percent: float = Field(default=0.10, ge=0, le=1)
    """A fraction, as in MOSN (0.10 is 10%)."""

    @model_validator(mode="after")
    def _check(self) -> "SlowStartConfig":
        if self.mode not in ("", "duration"):
            raise ValueError(f"mode {self.mode!r}: only 'duration' (or empty) is known")
        if self.aggression <= 0:
            self.aggression = 1.0  # MOSN: a non-positive aggression means the default
        if not self.min_weight_percent:
            self.min_weight_percent = 0.10
        return self

    @property
    def enabled(self) -> bool:
        return self.mode == "duration" and self.slow_start_duration > 0


class LbConfig(Model):
    """MOSN's ``lbconfig`` (least request) and Envoy's ring hash sizes."""

    choice_count: int = Field(default=2, ge=1)
    """Hosts sampled per pick by ``LB_LEAST_REQUEST`` (power of two choices)."""
    active_request_bias: float = Field(default=1.0, ge=0)
    """How strongly active requests lower a host's weight when weights differ."""
    minimum_ring_size: int = Field(default=1024, ge=1, le=8 * 1024 * 1024)
    maximum_ring_size: int = Field(default=8 * 1024 * 1024, ge=1, le=8 * 1024 * 1024)
    client_error_bias: float = Field(default=1.0, ge=0)
    """``LB_PEAK_EWMA``: how strongly 4xx responses raise a host's cost (MOSN's)."""
    server_error_bias: float = Field(default=1.0, ge=0)
    """``LB_PEAK_EWMA``: how strongly 5xx responses and failures raise a host's cost."""


class OutlierDetectionConfig(Model):
    """Envoy's ``outlier_detection`` (passive health checking), mosn's own key on a cluster."""

    consecutive_5xx: int = Field(default=5, ge=0)
    consecutive_gateway_failure: int = Field(default=5, ge=0)
    interval: Duration = 10.0
    base_ejection_time: Duration = 30.0
    max_ejection_time: Duration = 300.0
    max_ejection_percent: int = Field(default=10, ge=0, le=100)
    enforcing_consecutive_5xx: int = Field(default=100, ge=0, le=100)
    enforcing_consecutive_gateway_failure: int = Field(default=0, ge=0, le=100)
    enforcing_success_rate: int = Field(default=100, ge=0, le=100)
    success_rate_minimum_hosts: int = Field(default=5, ge=1)
    success_rate_request_volume: int = Field(default=100, ge=1)
    success_rate_stdev_factor: int = Field(default=1900, ge=0)
    """Hosts below mean - stdev * factor / 1000 are ejected (Envoy's)."""


class DnsResolversConfig(Model):
    """MOSN's ``dns_resolvers``: the DNS servers a ``STRICT_DNS`` cluster asks."""

    servers: list[str] = Field(default_factory=list)
    port: str = "53"
    timeout: int = Field(default=5, ge=0)
    """Seconds per query (MOSN's)."""
    attempts: int = Field(default=2, ge=0)
    search: Unsupported = None
    ndots: Unsupported = None

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        text = str(value) if value not in (None, "") else "53"
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ValueError(f"port {value!r} is not a port number")
        return text


ORIGINAL_DST = "ORIGINAL_DST"
LB_ORIGINAL_DST = "LB_ORIGINAL_DST"


class OriginalDstLbConfig(Model):
    """MOSN's ``original_dst_lb_config`` of an ``ORIGINAL_DST`` cluster."""

    use_header: bool = False
    """HTTP: connect to the address in a request header, when the request has it."""
    header_name: str = ""
    """The header (empty: ``host``, MOSN's default); its value is ``ip:port`` or an IP
    (port 80)."""
    replace_local: bool = False
    """Connect to 127.0.0.1 at the destination's port (a sidecar's inbound side: the
    application listens on the loopback)."""


DEFAULT_KEEPALIVE_TIMEOUT = 1.0
"""Seconds a keepalive heartbeat waits for its reply when ``timeout`` is not set
(MOSN's default)."""


class KeepAliveConfig(Model):
    """MOSN's cluster ``keepalive``: a heartbeat on each RPC connection every
    ``interval``; after 6 in a row unanswered within ``timeout`` the connection is
    closed (MOSN's xprotocol keepalive)."""

    interval: Duration = 0.0
    timeout: Duration = DEFAULT_KEEPALIVE_TIMEOUT

    @model_validator(mode="after")
    def _check(self) -> "KeepAliveConfig":
        if self.interval <= 0:
            raise ValueError("interval: set it (more than 0s) or leave keepalive out")
        if not self.timeout:
            self.timeout = DEFAULT_KEEPALIVE_TIMEOUT
        return self


class ClusterConfig(Model):
    mosn_runtime_fields = {
        "sub_type": "MOSN's own comment on it: \"not used yet\"",
    }

    name: str = Field(min_length=1)
    type: str = "SIMPLE"
    lb_type: str = "LB_ROUNDROBIN"
    hosts: list[HostConfig] = Field(default_factory=list)
    connect_timeout: Duration = DEFAULT_CONNECT_TIMEOUT
    conn_buffer_limit_bytes: int | None = Field(default=None, ge=1024)
    max_request_per_conn: int = Field(default=DEFAULT_MAX_REQUEST_PER_CONN, ge=1)
    """Requests in flight on one connection of a multiplexed protocol (MOSN's)."""
    connections_per_host: int = Field(default=1, ge=1, le=1024)
    """mosn's own: connections a multiplexed protocol's pool spreads requests over."""
    idle_timeout: Duration | None = None
    """Close an upstream connection unused for this long (default 1h, Envoy's)."""
    circuit_breakers: CircuitBreakersConfig = Field(default_factory=CircuitBreakersConfig)
    health_check: HealthCheckConfig | None = None
    lb_subset_config: LbSubsetConfig = Field(default_factory=LbSubsetConfig)
    slow_start: SlowStartConfig = Field(default_factory=SlowStartConfig)
    lbconfig: LbConfig = Field(default_factory=LbConfig)
    outlier_detection: OutlierDetectionConfig | None = None
    """mosn's own (Envoy's shape): passive health checking; absent: off."""
    max_hosts: int | None = Field(default=None, ge=1, le=MAX_HOSTS_LIMIT)
    """mosn's own: hosts the cluster can hold at once (slots for their stats and
    health, reserved in shared memory before the workers start)."""
    dns_refresh_rate: Duration = DEFAULT_DNS_REFRESH_RATE
    respect_dns_ttl: bool = False
    dns_lookup_family: str = ""
    dns_resolvers: DnsResolversConfig = Field(default_factory=DnsResolversConfig)
    dns_resolver_file: str = ""
    dns_resolver_port: str = ""
    tls_context: TlsContextConfig | None = None
    """Upstream TLS (per host: ``tls_disable``)."""
    cluster_config: dict[str, Any] | None = None
    """The cluster type's own config, validated by the type's model (a plugin's
    ``zookeeper`` takes ``{address, services}`` here)."""
    _parsed_cluster_config: Any = PrivateAttr(default=None)

    @property
    def parsed_cluster_config(self) -> Any:
        """``cluster_config`` validated by the cluster type's model (set by the loader;
        None when the type takes none)."""
        return self._parsed_cluster_config

    def set_parsed_cluster_config(self, parsed: Any) -> None:
        """Keep ``cluster_config`` as validated by the cluster type's model."""
        self._parsed_cluster_config = parsed

    def extra_keys(self, path: str = "") -> Iterator[ExtraKey]:
        yield from super().extra_keys(path)
        yield from extra_keys_in(self._parsed_cluster_config,
                               f"{path}.cluster_config" if path else "cluster_config")
    mark: int = Field(default=0, ge=0, le=MAX_SOCKET_MARK)
    """MOSN's: the ``SO_MARK`` of every connection to the cluster's hosts (0: none), so
    that iptables rules can leave mosn's own connections alone."""
    original_dst_lb_config: OriginalDstLbConfig = Field(default_factory=OriginalDstLbConfig)
    keepalive: KeepAliveConfig | None = None
    cluster_pool_enable: bool = False
    """MOSN's: a cluster's hosts get connection pools of their own, not shared with
    another cluster's host of the same address. mosn keeps every cluster's pools
    apart in any case (docs/compat.md)."""
    cluster_manager_tls: Unsupported = None
    """MOSN's: take the cluster manager's ``tls_context`` (which is refused too)."""
    spec: Unsupported = None
    """MOSN's ``ClusterSpecInfo``: subscriptions to a service registry."""
    cleanup_interval: Duration = DEFAULT_ORIGINAL_DST_CLEANUP
    """Envoy's, ``ORIGINAL_DST``: how often destinations unused since the last sweep
    are forgotten."""

    @field_validator("health_check", "outlier_detection", "tls_context", "keepalive",
                     mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # MOSN writes an unset struct as {} (or leaves it out).
        return None if value == {} else value

    @field_validator("circuit_breakers", "lb_subset_config", "slow_start", "lbconfig",
                     "dns_resolvers", "original_dst_lb_config", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _check(self) -> "ClusterConfig":
        if self.dns_lookup_family not in ("", "V4_ONLY", "V6_ONLY", "ALL"):
            raise ValueError("dns_lookup_family is V4_ONLY, V6_ONLY or ALL")
        if self.max_hosts is not None and self.max_hosts < len(self.hosts):
            raise ValueError(f"max_hosts {self.max_hosts} is less than the {len(self.hosts)} hosts listed")
        if not self.dns_refresh_rate:
            self.dns_refresh_rate = DEFAULT_DNS_REFRESH_RATE
        if (self.type == ORIGINAL_DST) != (self.lb_type == LB_ORIGINAL_DST):
            raise ValueError(f"type {ORIGINAL_DST} goes with lb_type {LB_ORIGINAL_DST}, and "
                             "only with it (its hosts are the connections' destinations)")
        if self.type == ORIGINAL_DST:
            self._check_original_dst()
        return self

    def _check_original_dst(self) -> None:
        if self.hosts:
            raise ValueError(f"an {ORIGINAL_DST} cluster lists no hosts (its hosts are "
                             "the connections' original destinations)")
        if self.health_check is not None or self.outlier_detection is not None:
            raise ValueError(f"an {ORIGINAL_DST} cluster has no health_check or "
                             "outlier_detection (its hosts come and go with connections)")
        if self.lb_subset_config.enabled:
            raise ValueError(f"an {ORIGINAL_DST} cluster has no lb_subset_config")
        if self.cleanup_interval <= 0:
            raise ValueError("cleanup_interval must be more than 0s")

    @property
    def host_slots(self) -> int:
        """Hosts reserved in shared memory for this cluster."""
        if self.max_hosts is not None:
            return self.max_hosts
        return max(len(self.hosts), DEFAULT_MAX_HOSTS)


class ClusterManagerConfig(Model):
    clusters: list[ClusterConfig] = Field(default_factory=list)
    tls_context: Unsupported = None


# -- admin, plugins, root ---------------------------------------------------------------


class SocketAddress(Model):
    address: str = "127.0.0.1"
    port_value: int = Field(default=DEFAULT_ADMIN_PORT, ge=0, le=65535)


class AdminAddress(Model):
    socket_address: SocketAddress = Field(default_factory=SocketAddress)


def _redact_key(key: str) -> str:
    if not re.search(r"[A-Za-z0-9]", key):
        raise ValueError(f"{key!r} has no letter or digit to match a key by")
    return key


class AdminConfig(Model):
    address: AdminAddress = Field(default_factory=AdminAddress)
    access_log_path: Unsupported = None
    """Envoy's: a log of the admin API's requests."""
    redact_keys: list[Annotated[str, AfterValidator(_redact_key)]] = Field(default_factory=list)
    """mosn's own: more key names whose values the admin API shows as ``[redacted]``,
    besides its built-in list (:mod:`mosn.admin.redact`)."""

    @property
    def bind(self) -> Address:
        sa = self.address.socket_address
        return Address(host=sa.address, port=sa.port_value)


class UpgradeConfig(StrictModel):
    """mosn's own: where the upgrade socket lives (docs/upgrade.md)."""

    run_dir: str = ""
    """The directory of the Unix socket a new mosn takes over through (empty: one that
    follows from the config file's path; ``--run-dir`` wins over this)."""


class PluginsConfig(Model):
    """mosn's own: which installed plugins to load (see :mod:`mosn.plugins`)."""

    enable: list[str] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)


OTEL_DRIVERS = ("opentelemetry", "otel")
"""``tracing.driver`` names of the OpenTelemetry tracer (case does not matter)."""
ZIPKIN_DRIVER, JAEGER_DRIVER, SOFA_DRIVER = "zipkin", "jaeger", "sofatracer"
SKYWALKING_DRIVER = "skywalking"
PLUGIN_DRIVER = "plugindriver"
"""MOSN's driver that loads a tracer from a Go plugin: refused."""
SKYWALKING_KEYS = ("reporter", "backend_service", "service_name", "max_send_queue_size",
                   "authentication", "tls")
"""The config keys of MOSN's SkyWalking driver (``SkyWalkingTraceConfig``)."""
SKYWALKING_REPORTERS = ("log", "grpc")
"""MOSN's ``reporter``: ``log`` (its default) or ``gRPC`` (case does not matter)."""
"""MOSN's Zipkin and Jaeger drivers: the same tracer, with Zipkin's exporter and B3
headers, or OTLP (which Jaeger takes) and Jaeger's ``uber-trace-id``."""
TRACE_EXPORTERS = ("otlp", "otlp_grpc", "zipkin", "console", "none")
TRACE_PROPAGATION = ("tracecontext", "b3multi", "b3", "jaeger")
"""The trace context formats read from requests and written upstream (HTTP): W3C's
``traceparent``, B3's ``X-B3-*`` headers or its single ``b3`` header, Jaeger's
``uber-trace-id``."""
DEFAULT_OTLP_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
"""The OTLP/HTTP traces endpoint of a collector on this host (OpenTelemetry's default;
Jaeger takes OTLP on the same port)."""
DEFAULT_OTLP_GRPC_ENDPOINT = "http://127.0.0.1:4317"
"""A collector's OTLP/gRPC port on this host (OpenTelemetry's default; ``http://`` is
plaintext, ``https://`` TLS)."""
DEFAULT_ZIPKIN_ENDPOINT = "http://127.0.0.1:9411/api/v2/spans"
"""Zipkin's span endpoint on this host (its default port)."""
DRIVER_DEFAULTS: dict[str, dict[str, Any]] = {
    ZIPKIN_DRIVER: {"exporter": "zipkin", "endpoint": DEFAULT_ZIPKIN_ENDPOINT,
                    "propagation": ["b3multi"]},
    JAEGER_DRIVER: {"propagation": ["jaeger"]},
}
"""What a driver changes in the OpenTelemetry config's defaults (what is set wins)."""
DEFAULT_BATCH_DELAY = 5.0
"""Seconds between span exports (OpenTelemetry's ``OTEL_BSP_SCHEDULE_DELAY``)."""
DEFAULT_EXPORT_TIMEOUT = 10.0
"""Seconds an export may take (OpenTelemetry's ``OTEL_EXPORTER_OTLP_TIMEOUT``)."""


class SkyWalkingTlsConfig(Model):
    """MOSN's ``SkyWalkingTraceTLSConfig``: TLS to the OAP when ``cert_file`` is set."""

    cert_file: str = ""
    """The CA certificate (PEM) the OAP's certificate must chain to (relative to the
    config file's folder)."""
    server_name_override: str = ""
    """The name the OAP's certificate must hold, instead of ``backend_service``'s host."""


class OpenTelemetryConfig(Model):
    """mosn's OpenTelemetry tracer, the ``config`` of ``tracing``."""

    service_name: str = "mosn"
    exporter: str = "otlp"
    """``otlp`` (OTLP over HTTP/protobuf), ``otlp_grpc`` (OTLP over gRPC), ``zipkin``
    (Zipkin's JSON v2), ``console`` (JSON on stdout) or ``none``."""
    endpoint: str = DEFAULT_OTLP_ENDPOINT
    """Where spans go (``otlp_grpc``'s default is :data:`DEFAULT_OTLP_GRPC_ENDPOINT`)."""
    propagation: list[str] = Field(default_factory=lambda: ["tracecontext"])
    """The trace context formats of HTTP requests, read in this order (the first one
    found is the parent) and all written upstream."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every OTLP export (an API key ...)."""
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    """The share of new traces recorded (by trace id, as ``TraceIdRatioBased``)."""
    parent_based: bool = True
    """A request with a parent follows the parent's sampled flag; the ratio applies
    to requests that start a trace."""
    batch_delay: Duration = DEFAULT_BATCH_DELAY
    export_timeout: Duration = DEFAULT_EXPORT_TIMEOUT
    log_path: str = ""
    """The SOFATracer driver's only key: the folder of its digest logs (MOSN's
    default ``~/logs/tracelog/mosn/``)."""
    reporter: str = "log"
    """The SkyWalking driver's: ``log`` (segments in mosn's log) or ``gRPC`` (to the
    OAP at ``backend_service``)."""
    backend_service: str = ""
    """The SkyWalking driver's: the OAP's gRPC address (``host:port``)."""
    max_send_queue_size: int = Field(default=0, ge=0)
    """The SkyWalking driver's: segments queued for the OAP (0: go2sky's 30,000)."""
    authentication: str = ""
    """The SkyWalking driver's: the OAP's token, sent as ``authentication`` metadata."""
    tls: SkyWalkingTlsConfig | None = None
    """The SkyWalking driver's TLS to the OAP."""

    @model_validator(mode="after")
    def _check(self) -> "OpenTelemetryConfig":
        self.exporter = self.exporter.lower()
        if self.exporter not in TRACE_EXPORTERS:
            raise ValueError(f"exporter {self.exporter!r}: use one of {', '.join(TRACE_EXPORTERS)}")
        if self.exporter == "otlp_grpc" and "endpoint" not in self.model_fields_set:
            self.endpoint = DEFAULT_OTLP_GRPC_ENDPOINT
        self.propagation = [p.lower() for p in self.propagation]
        bad = [p for p in self.propagation if p not in TRACE_PROPAGATION]
        if bad or not self.propagation:
            raise ValueError(f"propagation {bad[0] if bad else '[]'!r}: a list of "
                             f"{', '.join(TRACE_PROPAGATION)}")
        return self


class TracingConfig(Model):
    """MOSN's ``TracingConfig``: ``{enable, driver, config}``."""

    enable: bool = False
    driver: str = "opentelemetry"
    tracer: Unsupported = None
    """MOSN's deprecated name for ``driver``."""
    config: OpenTelemetryConfig = Field(default_factory=OpenTelemetryConfig)

    @model_validator(mode="before")
    @classmethod
    def _driver_defaults(cls, data: Any) -> Any:
        """``config: null`` is the default config; a driver's defaults go under what
        the config sets."""
        if not isinstance(data, dict):
            return data
        data = {str(k).lower(): v for k, v in data.items()}
        config = data.get("config")
        config = {} if config is None else config
        driver = data.get("driver")
        defaults = DRIVER_DEFAULTS.get(driver.lower(), {}) if isinstance(driver, str) else {}
        if isinstance(config, dict) and defaults:
            config = {**defaults, **config}
        if isinstance(driver, str) and driver.lower() == SOFA_DRIVER and isinstance(config, dict):
            others = sorted(str(k) for k in config if str(k).lower() != "log_path")
            if others:
                raise ValueError(f"config.{others[0]}: the SOFATracer driver takes "
                                 "log_path only")
        if isinstance(driver, str) and driver.lower() == SKYWALKING_DRIVER \
                and isinstance(config, dict):
            others = sorted(str(k) for k in config if str(k) not in SKYWALKING_KEYS)
            if others:
                raise ValueError(f"config.{others[0]}: the SkyWalking driver takes "
                                 f"{', '.join(SKYWALKING_KEYS)}")
        data["config"] = config
        return data

    @model_validator(mode="after")
    def _check(self) -> "TracingConfig":
        if self.enable:
            known = (*OTEL_DRIVERS, ZIPKIN_DRIVER, JAEGER_DRIVER, SOFA_DRIVER,
                     SKYWALKING_DRIVER)
            driver = self.driver.lower()
            if driver == PLUGIN_DRIVER:
                raise ValueError(f"driver {self.driver!r} is not supported: it loads a "
                                 "tracer built as a Go plugin (.so); mosn's drivers are "
                                 "OpenTelemetry (Zipkin, Jaeger), SkyWalking and SOFATracer")
            if driver not in known:
                raise ValueError(f"driver {self.driver!r} is not supported; mosn traces with "
                                 "OpenTelemetry (driver: opentelemetry, Zipkin or Jaeger), "
                                 "SkyWalking, or writes SOFATracer's digest logs (SOFATracer)")
            if driver == SOFA_DRIVER:
                return self
            if driver == SKYWALKING_DRIVER:
                return self._check_skywalking()
            c = self.config
            mine = [k for k in ("reporter", "backend_service", "max_send_queue_size",
                                "authentication", "tls") if k in c.model_fields_set]
            if mine:
                raise ValueError(f"config.{mine[0]}: the SkyWalking driver's key; this "
                                 "driver is OpenTelemetry's")
            if self.config.log_path:
                raise ValueError("config.log_path: the SOFATracer driver's key; this "
                                 "driver exports spans")
            from mosn.observability.tracing import check_installed

            check_installed(self.config)
        return self

    def _check_skywalking(self) -> "TracingConfig":
        c = self.config
        if c.reporter.lower() not in SKYWALKING_REPORTERS:
            raise ValueError(f"config.reporter: {c.reporter!r}: the SkyWalking driver "
                             "reports to its log or over gRPC (log, gRPC)")
        if c.reporter.lower() != "log" and not c.backend_service:
            raise ValueError("config.backend_service: the SkyWalking driver's gRPC "
                             "reporter needs the OAP's address (host:port)")
        from mosn.observability.skywalking import check_installed

        check_installed()
        return self


class OverloadActionsConfig(StrictModel):
    """Each action's threshold, a fraction of ``max_buffered_bytes`` (Envoy's action names)."""

    stop_accepting_connections: float = Field(default=DEFAULT_STOP_ACCEPTING, gt=0, le=1)
    shed_high_memory_connections: float = Field(default=DEFAULT_SHED, gt=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> "OverloadActionsConfig":
        if self.shed_high_memory_connections < self.stop_accepting_connections:
            raise ValueError("shed_high_memory_connections must be at least "
                             "stop_accepting_connections (shedding is the last resort)")
        return self


class OverloadManagerConfig(StrictModel):
    """The buffer budget of each worker and what is done as it fills
    (docs/operations.md, "Overload and limits")."""

    refresh_interval: Duration = DEFAULT_OVERLOAD_REFRESH
    max_buffered_bytes: int = Field(default=DEFAULT_MAX_BUFFERED_BYTES,
                                    ge=MIN_MAX_BUFFERED_BYTES)
    actions: OverloadActionsConfig = Field(default_factory=OverloadActionsConfig)

    @field_validator("refresh_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not 0 < value <= MAX_OVERLOAD_REFRESH:
            raise ValueError(f"refresh_interval must be more than 0s and at most "
                             f"{MAX_OVERLOAD_REFRESH:g}s")
        return value


class MosnConfig(Model):
    mosn_runtime_fields = {
        "pprof": "Go's profiler endpoint; profile mosn with py-spy or bench/ "
                 "(docs/benchmarks.md)",
        "plugin": "log_base, the log folder of MOSN's Go plugins; mosn's plugins are "
                  "Python packages and log with mosn",
        "uds_dir": "where MOSN's Go runtime puts its Unix sockets for a smooth upgrade",
    }

    servers: list[ServerConfig] = Field(default_factory=list)
    cluster_manager: ClusterManagerConfig = Field(default_factory=ClusterManagerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    pid: str = ""
    node: NodeConfig | None = None
    """Envoy's: who this proxy is to a control plane (docs/xds.md)."""
    dynamic_resources: DynamicResourcesConfig | None = None
    """Envoy's: listeners and clusters from a control plane (docs/xds.md)."""
    disable_upgrade: bool = False
    """MOSN's: start without taking listeners and connections over from a mosn already
    serving the same run directory (docs/upgrade.md)."""
    close_graceful: bool = False
    """MOSN's deprecated name for ``disable_upgrade``."""
    static_resources: Unsupported = None
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    overload_manager: OverloadManagerConfig = Field(default_factory=OverloadManagerConfig)
    upgrade: UpgradeConfig = Field(default_factory=UpgradeConfig)
    third_part_codec: Unsupported = None
    wasm_global_plugins: Unsupported = None
    inherit_old_mosnconfig: Unsupported = None
    """MOSN's: take the config of the process being upgraded from."""
    metrics: MetricsConfig | None = None
    """MOSN's: its Prometheus sink and ``stats_matcher`` (:mod:`mosn.config.metrics`)."""
    extends: list[FilterConfig] = Field(default_factory=list)
    """MOSN's extensions' configs, ``{type, config}`` each, validated by the plugin
    registering the type (:func:`mosn.hookspecs.mosn_extends`): the Dubbo plugin's
    ``dubbo_registry``."""
    layered_runtime: Unsupported = None
    """Envoy's runtime layers."""

    @field_validator("tracing", mode="before")
    @classmethod
    def _no_tracing(cls, value: Any) -> Any:
        return {} if value is None else value

    def routers(self) -> Iterator[tuple[str, RouterConfiguration]]:
        """Every router configuration with its config path: ``servers[].routers``,
        then those of ``connection_manager`` filters (once the loader parsed them)."""
        for si, server in enumerate(self.servers):
            for ri, router in enumerate(server.routers):
                yield f"servers[{si}].routers[{ri}]", router
        for path, flt in self.connection_managers():
            if isinstance(flt.parsed, RouterConfiguration):
                yield f"{path}.config", flt.parsed

    def connection_managers(self) -> Iterator[tuple[str, FilterConfig]]:
        """Every ``connection_manager`` network filter with its config path."""
        for lpath, listener in self.listeners():
            for ci, chain in enumerate(listener.filter_chains):
                for fi, flt in enumerate(chain.filters):
                    if flt.type == CONNECTION_MANAGER:
                        yield f"{lpath}.filter_chains[{ci}].filters[{fi}]", flt

    def listeners(self) -> Iterator[tuple[str, ListenerConfig]]:
        """Every listener with its config path."""
        for si, server in enumerate(self.servers):
            for li, listener in enumerate(server.listeners):
                yield f"servers[{si}].listeners[{li}]", listener
