"""MOSN's older ``connection_manager`` network filter: a router configuration written
in a listener's filter chain (``router_config_name``, ``virtual_hosts`` ...) rather
than under ``servers[].routers``. MOSN still takes it (``ParseRouterConfiguration``)
and registers the router configuration as if it were under ``servers[].routers``;
the filter itself does nothing to a connection (MOSN's factory returns none).

The config loader parses the router configuration (its errors carry the filter's
path) and :meth:`mosn.config.models.MosnConfig.routers` lists it with the others, so
a name used twice is refused with both paths.
"""

from __future__ import annotations

from typing import Any

from mosn.config.models import CONNECTION_MANAGER
from mosn.plugins import BuildContext, Extension, hookimpl


def _nothing(conn: Any) -> None:
    """The filter's part in a connection: none (its router configuration is served by
    the ``proxy`` filter that names it)."""


def build(config: Any, context: BuildContext) -> Any:
    return _nothing


@hookimpl
def mosn_network_filters() -> list[Extension]:
    # No config model here: the loader parses the router configuration itself, before
    # the proxy filters that name it are checked.
    return [Extension(CONNECTION_MANAGER, build, None,
                      description="MOSN's older place for a router configuration")]
