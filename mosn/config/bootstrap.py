"""Envoy v3 bootstrap sections for a control plane: ``node`` and ``dynamic_resources``.

They sit beside MOSN's own sections in one config file, in Envoy's shape
(``envoy.config.bootstrap.v3.Bootstrap``), so the same blocks of an Envoy bootstrap
load unchanged. Every key is checked: one that mosn does not know is an error with its
path, and a field mosn cannot honour is refused with the reason (docs/xds.md).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from mosn.config.base import Model, Unsupported
from mosn.config.types import Duration

API_TYPES = ("GRPC", "DELTA_GRPC", "REST")
"""Envoy's ``ApiConfigSource.ApiType`` values mosn speaks (the old ``AGGREGATED_*``
names are Envoy's internal ones and refused)."""
DEFAULT_REFRESH_DELAY = 1.0  # seconds between REST polls (Envoy's default refresh_delay)
DEFAULT_REQUEST_TIMEOUT = 1.0  # seconds a REST poll may take (Envoy's default request_timeout)
DEFAULT_INITIAL_FETCH_TIMEOUT = 15.0
"""Seconds mosn waits for the first resources of a type before it serves without them
(Envoy's default ``initial_fetch_timeout``)."""


class StrictSection(Model):
    """Envoy's shape: an unknown key is an error with its path (an Envoy field mosn
    does not know would otherwise pass unnoticed)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LocalityConfig(StrictSection):
    region: str = ""
    zone: str = ""
    sub_zone: str = ""


class NodeConfig(StrictSection):
    """Envoy's ``Node``: who this proxy is, sent to the control plane."""

    id: str = ""
    cluster: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    locality: LocalityConfig | None = None
    user_agent_name: str = ""
    """Default: ``mosn``."""
    user_agent_version: str = ""
    """Default: mosn's version."""


class EnvoyGrpcConfig(StrictSection):
    cluster_name: str = Field(min_length=1)
    """A cluster of ``cluster_manager.clusters`` with the control plane's address."""
    authority: str = ""


class GoogleGrpcConfig(StrictSection):
    target_uri: str = Field(min_length=1)
    """``host:port`` of the control plane (plaintext)."""
    stat_prefix: str = ""
    channel_credentials: Unsupported = None
    call_credentials: Unsupported = None


class HeaderValueConfig(StrictSection):
    key: str = Field(min_length=1)
    value: str = ""


class GrpcServiceConfig(StrictSection):
    envoy_grpc: EnvoyGrpcConfig | None = None
    google_grpc: GoogleGrpcConfig | None = None
    timeout: Duration | None = None
    initial_metadata: list[HeaderValueConfig] = Field(default_factory=list)
    retry_policy: Unsupported = None

    @model_validator(mode="after")
    def _one(self) -> "GrpcServiceConfig":
        if (self.envoy_grpc is None) == (self.google_grpc is None):
            raise ValueError("set one of envoy_grpc or google_grpc")
        return self


def _api_type(value: Any) -> Any:
    if isinstance(value, str) and value.upper() in API_TYPES:
        return value.upper()
    raise ValueError(f"api_type {value!r}: use one of {', '.join(API_TYPES)}")


def _v3(value: Any) -> Any:
    if value not in ("", None, "V3", "AUTO"):
        raise ValueError(f"{value!r}: mosn speaks the v3 xDS API only (V3)")
    return value


class ApiConfigSourceConfig(StrictSection):
    """Envoy's ``ApiConfigSource``: where a type's resources come from."""

    api_type: str
    transport_api_version: str = "V3"
    grpc_services: list[GrpcServiceConfig] = Field(default_factory=list, max_length=1)
    cluster_names: list[str] = Field(default_factory=list, max_length=1)
    """REST: the cluster of the control plane's HTTP address."""
    refresh_delay: Duration = DEFAULT_REFRESH_DELAY
    request_timeout: Duration = DEFAULT_REQUEST_TIMEOUT
    set_node_on_first_message_only: bool = False
    rate_limit_settings: Unsupported = None
    config_validators: Unsupported = None

    _check_type = field_validator("api_type", mode="before")(lambda cls, v: _api_type(v))
    _check_version = field_validator("transport_api_version", mode="before")(
        lambda cls, v: _v3(v))

    @model_validator(mode="after")
    def _source(self) -> "ApiConfigSourceConfig":
        if self.api_type == "REST":
            if len(self.cluster_names) != 1 or self.grpc_services:
                raise ValueError("api_type REST takes one cluster in cluster_names "
                                 "(and no grpc_services)")
        elif len(self.grpc_services) != 1 or self.cluster_names:
            raise ValueError(f"api_type {self.api_type} takes one grpc_services entry "
                             "(and no cluster_names)")
        if self.refresh_delay <= 0 or self.request_timeout <= 0:
            raise ValueError("refresh_delay and request_timeout must be more than 0s")
        return self


class ConfigSourceConfig(StrictSection):
    """Envoy's ``ConfigSource`` for ``lds_config`` / ``cds_config``: ``ads: {}`` (over
    ``ads_config``) or an ``api_config_source``."""

    ads: dict[str, Any] | None = None
    api_config_source: ApiConfigSourceConfig | None = None
    resource_api_version: str = "V3"
    initial_fetch_timeout: Duration = DEFAULT_INITIAL_FETCH_TIMEOUT
    path: Unsupported = None
    path_config_source: Unsupported = None
    self_config_source: Unsupported = None
    authorities: Unsupported = None

    _check_version = field_validator("resource_api_version", mode="before")(
        lambda cls, v: _v3(v))

    @field_validator("ads")
    @classmethod
    def _empty_ads(cls, value: Any) -> Any:
        if value:
            raise ValueError("ads is an empty mapping: ads: {}")
        return value

    @model_validator(mode="after")
    def _one(self) -> "ConfigSourceConfig":
        if (self.ads is None) == (self.api_config_source is None):
            raise ValueError("set one of ads: {} or api_config_source")
        return self


class DynamicResourcesConfig(StrictSection):
    """Envoy's ``dynamic_resources``."""

    lds_config: ConfigSourceConfig | None = None
    cds_config: ConfigSourceConfig | None = None
    ads_config: ApiConfigSourceConfig | None = None
    lds_resources_locator: Unsupported = None
    cds_resources_locator: Unsupported = None

    @model_validator(mode="after")
    def _ads_needed(self) -> "DynamicResourcesConfig":
        for name in ("lds_config", "cds_config"):
            source = getattr(self, name)
            if source is not None and source.ads is not None and self.ads_config is None:
                raise ValueError(f"{name} uses ads: {{}} but there is no ads_config")
            if (source is not None and source.api_config_source is not None
                    and source.api_config_source.api_type != "REST"):
                raise ValueError(f"{name}.api_config_source: mosn speaks gRPC over one "
                                 "aggregated stream (ads_config with ads: {}); an "
                                 "api_config_source is api_type REST")
        if self.ads_config is not None and self.ads_config.api_type == "REST":
            raise ValueError("ads_config: aggregated discovery is gRPC (GRPC or DELTA_GRPC)")
        if self.lds_config is None and self.cds_config is None:
            raise ValueError("set lds_config, cds_config or both")
        sources = {self.source_key(s) for s in (self.lds_config, self.cds_config) if s}
        if len(sources) > 1:
            raise ValueError("mosn takes lds_config and cds_config from one control plane "
                             "(both ads: {}, or both REST from the same cluster)")
        return self

    def source_key(self, source: ConfigSourceConfig) -> str:
        if source.ads is not None:
            return "ads"
        api = source.api_config_source
        assert api is not None
        return f"{api.api_type}:{','.join(api.cluster_names)}"

    def api(self) -> ApiConfigSourceConfig:
        """Where the resources come from: the ADS config, or the one REST source."""
        for source in (self.lds_config, self.cds_config):
            if source is not None and source.api_config_source is not None:
                return source.api_config_source
        assert self.ads_config is not None
        return self.ads_config

    def clusters_named(self) -> list[tuple[str, str]]:
        """``(path, cluster name)`` of each cluster the sources name."""
        out = []
        for name in ("ads_config", "lds_config", "cds_config"):
            source = getattr(self, name)
            api = source if isinstance(source, ApiConfigSourceConfig) else (
                source.api_config_source if source is not None else None)
            if api is None:
                continue
            base = name if name == "ads_config" else f"{name}.api_config_source"
            for i, service in enumerate(api.grpc_services):
                if service.envoy_grpc is not None:
                    out.append((f"{base}.grpc_services[{i}].envoy_grpc.cluster_name",
                                service.envoy_grpc.cluster_name))
            for i, cluster in enumerate(api.cluster_names):
                out.append((f"{base}.cluster_names[{i}]", cluster))
        return out
