"""Pydantic models of MOSN's config shape.

The shape and field names are MOSN's (``pkg/config/v2``) so an existing MOSN JSON
config loads unchanged. Like MOSN's Go decoder, keys match field names without
regard to case (``"Name"`` is ``name``) and unknown keys are ignored, but here each
ignored key is reported as a warning with its path. Fields MOSN has whose feature
mosn does not run yet are refused when set (``Unsupported``), never silently dropped.

A filter's ``config`` stays a plain mapping here; :mod:`mosn.config.loader` validates
it with the model its plugin registered.
"""

from __future__ import annotations

from typing import Any, Iterator

from pydantic import Field, PrivateAttr, model_validator

from mosn.config.base import Model, Unsupported
from mosn.config.routers import RouterConfiguration
from mosn.config.types import Address, AddressField, Duration, unix_path

DEFAULT_ADMIN_PORT = 34901  # MOSN's admin port
DEFAULT_CONNECT_TIMEOUT = 3.0  # seconds; MOSN's default for upstream connects
DEFAULT_GRACEFUL_TIMEOUT = 30.0  # seconds to drain connections on shutdown (MOSN: 30s)
DEFAULT_MAX_REQUEST_PER_CONN = 1024  # MOSN's default
MAX_HOST_WEIGHT = 128  # MOSN's bound for a host weight (pkg/config/v2 MaxHostWeight)


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


class FilterChainConfig(Model):
    match: str = ""
    tls_context: Unsupported = None
    tls_context_set: Unsupported = None
    filters: list[FilterConfig] = Field(min_length=1)


class ListenerConfig(Model):
    name: str = ""
    address: AddressField
    network: str = "tcp"
    bind_port: bool | None = None
    reuseport: bool = False
    use_original_dst: Unsupported = None
    access_logs: Unsupported = None
    inspector: Unsupported = None
    listener_filters: list[FilterConfig] = Field(default_factory=list)
    filter_chains: list[FilterChainConfig] = Field(min_length=1, max_length=1)
    stream_filters: list[FilterConfig] = Field(default_factory=list)
    connection_idle_timeout: Duration | None = None
    max_connections: int | None = Field(default=None, ge=1)
    """mosn's own: accepted connections beyond this are closed at once (Envoy's overflow)."""
    per_connection_buffer_limit_bytes: int | None = Field(default=None, ge=1024)

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
        if self.network not in ("tcp", "unix"):
            raise ValueError(f"network {self.network!r} is not supported; use 'tcp' or 'unix'")
        if self.bind_port is False:
            raise ValueError("bind_port: false (a virtual listener) is not supported by mosn yet")
        return self


class ServerConfig(Model):
    mosn_server_name: str = ""
    default_log_path: str = ""
    default_log_level: str = ""
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

    @property
    def lb_metadata(self) -> dict[str, Any]:
        nested = self.metadata.get("filter_metadata", {}).get("mosn.lb")
        return dict(nested) if isinstance(nested, dict) else dict(self.metadata)


class ClusterConfig(Model):
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
    circuit_breakers: Unsupported = None
    health_check: Unsupported = None
    lb_subset_config: Unsupported = None
    tls_context: Unsupported = None


class ClusterManagerConfig(Model):
    clusters: list[ClusterConfig] = Field(default_factory=list)
    tls_context: Unsupported = None


# -- admin, plugins, root ---------------------------------------------------------------


class SocketAddress(Model):
    address: str = "127.0.0.1"
    port_value: int = Field(default=DEFAULT_ADMIN_PORT, ge=0, le=65535)


class AdminAddress(Model):
    socket_address: SocketAddress = Field(default_factory=SocketAddress)


class AdminConfig(Model):
    address: AdminAddress = Field(default_factory=AdminAddress)

    @property
    def bind(self) -> Address:
        sa = self.address.socket_address
        return Address(host=sa.address, port=sa.port_value)


class PluginsConfig(Model):
    """mosn's own: which installed plugins to load (see :mod:`mosn.plugins`)."""

    enable: list[str] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)


class MosnConfig(Model):
    servers: list[ServerConfig] = Field(default_factory=list)
    cluster_manager: ClusterManagerConfig = Field(default_factory=ClusterManagerConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    pid: str = ""
    dynamic_resources: Unsupported = None
    static_resources: Unsupported = None
    tracing: Unsupported = None
    third_part_codec: Unsupported = None
    wasm_global_plugins: Unsupported = None

    def routers(self) -> Iterator[tuple[str, RouterConfiguration]]:
        """Every router configuration with its config path."""
        for si, server in enumerate(self.servers):
            for ri, router in enumerate(server.routers):
                yield f"servers[{si}].routers[{ri}]", router

    def listeners(self) -> Iterator[tuple[str, ListenerConfig]]:
        """Every listener with its config path."""
        for si, server in enumerate(self.servers):
            for li, listener in enumerate(server.listeners):
                yield f"servers[{si}].listeners[{li}]", listener
