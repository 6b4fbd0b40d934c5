"""The L7 router: MOSN's ``routers`` config, compiled into tables matched per request.

Pure logic (no IO): ``Routers(parse_routers(raw))["name"].route(RouteRequest(...))``
gives the matched :class:`Route`, or None.
"""

from mosn.config.routers import (
    RouteConfig,
    RouterConfiguration,
    VirtualHostConfig,
    check_references,
    parse_routers,
)
from mosn.router.route import (
    DirectResponse,
    MirrorPolicy,
    Redirect,
    RetryPolicy,
    Route,
    RouteRequest,
)
from mosn.router.table import Routers, RouteTable, VirtualHost

__all__ = [
    "DirectResponse",
    "MirrorPolicy",
    "Redirect",
    "RetryPolicy",
    "Route",
    "RouteConfig",
    "RouteRequest",
    "RouteTable",
    "RouterConfiguration",
    "Routers",
    "VirtualHost",
    "VirtualHostConfig",
    "check_references",
    "parse_routers",
]
