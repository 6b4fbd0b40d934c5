"""Config models and the loader (YAML or JSON in MOSN's shape)."""

from mosn.config.base import Empty, ExtraKey, Unsupported
from mosn.config.loader import ConfigError, LoadedConfig, dump, load, read_file, validate
from mosn.config.models import (
    MAX_HOST_WEIGHT,
    ClusterConfig,
    FilterConfig,
    HostConfig,
    ListenerConfig,
    Model,
    MosnConfig,
)
from mosn.config.routers import RouterConfiguration
from mosn.config.types import Address, Duration, parse_address, parse_duration

__all__ = [
    "MAX_HOST_WEIGHT",
    "Address",
    "ClusterConfig",
    "ConfigError",
    "Duration",
    "Empty",
    "ExtraKey",
    "FilterConfig",
    "HostConfig",
    "ListenerConfig",
    "LoadedConfig",
    "Model",
    "MosnConfig",
    "RouterConfiguration",
    "Unsupported",
    "dump",
    "load",
    "parse_address",
    "parse_duration",
    "read_file",
    "validate",
]
