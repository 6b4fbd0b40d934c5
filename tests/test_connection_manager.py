"""MOSN's older ``connection_manager`` network filter: its router configuration is
registered as if it were under ``servers[].routers`` (MOSN's
``ParseRouterConfiguration``), served by the ``proxy`` filter that names it."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from conftest import free_port
from mosn.config import ConfigError, validate
from test_access_log import backend, http_config  # noqa: F401 (a fixture)

CHAIN = "servers[0].listeners[0].filter_chains[0]"


def with_connection_manager(config: dict[str, Any], first: bool = False) -> dict[str, Any]:
    """``config`` with its router configuration moved into a ``connection_manager``
    filter of the listener's chain (after the proxy filter, or before it)."""
    config = copy.deepcopy(config)
    (router,) = config["servers"][0].pop("routers")
    filters = config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"]
    filters.insert(0 if first else len(filters), {"type": "connection_manager", "config": router})
    return config


@pytest.mark.parametrize("first", [False, True])
def test_its_router_configuration_is_registered(first):
    loaded = validate(with_connection_manager(http_config(free_port(), 1, []), first))
    filters = 0 if first else 1
    ((path, router),) = loaded.config.routers()
    assert path == f"{CHAIN}.filters[{filters}].config"
    assert router.router_config_name == "main"
    assert [r.match.prefix for r in router.virtual_hosts[0].routers][:2] == ["/slow/", "/dead/"]


def test_a_name_also_under_routers_is_refused_with_both_paths():
    config = http_config(free_port(), 1, [])
    config = with_connection_manager(config) | {}
    config["servers"][0]["routers"] = [{"router_config_name": "main", "virtual_hosts": []}]
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert info.value.errors == [
        f"{CHAIN}.filters[1].config.router_config_name: 'main' is already used by "
        "servers[0].routers[0]"]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda r: r.update(virtual_hosts="x"),
     f"{CHAIN}.filters[1].config.virtual_hosts: Input should be a valid list"),
    (lambda r: r.update(virtual_hsots=[]),
     f"{CHAIN}.filters[1].config.virtual_hsots: unknown field; did you mean 'virtual_hosts'?"),
    (lambda r: r["virtual_hosts"][0]["routers"][0]["route"].update(cluster_name="nowhere"),
     f"{CHAIN}.filters[1].config.virtual_hosts[0].routers[0].route.cluster_name: "
     "unknown cluster 'nowhere'"),
])
def test_a_bad_router_configuration_is_refused_with_its_path(change, expected):
    config = with_connection_manager(http_config(free_port(), 1, []))
    change(config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][1]["config"])
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_the_proxy_serves_its_routes(start_mosn, backend):  # noqa: F811
    port = free_port()
    start_mosn(with_connection_manager(http_config(port, backend, [])))
    with httpx.Client(timeout=5) as client:
        ok = client.get(f"http://127.0.0.1:{port}/ok/echo")
        unrouted = client.get(f"http://127.0.0.1:{port}/none/")
    assert ok.status_code == 200 and ok.json()["path"] == "/echo"
    assert unrouted.status_code == 404
