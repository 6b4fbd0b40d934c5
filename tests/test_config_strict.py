"""Nothing in a config is silently ignored: an unknown key is an error with its path
and a hint, a MOSN field only MOSN's Go runtime uses is accepted with one warning, and
a config that would serve nothing is refused."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest
import yaml

from conftest import tcp_proxy_config
from mosn.config import ConfigError, validate


def base() -> dict[str, Any]:
    return tcp_proxy_config(2045, ["127.0.0.1:8080"])


def bolt_proxy(extend_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "servers": [{
            "listeners": [{"address": "127.0.0.1:2045", "filter_chains": [{"filters": [{
                "type": "proxy",
                "config": {"downstream_protocol": "bolt", "router_config_name": "r",
                           "extend_config": extend_config}}]}]}],
            "routers": [{"router_config_name": "r", "virtual_hosts": [{
                "domains": ["*"], "routers": [{"route": {"cluster_name": "c"}}]}]}],
        }],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]},
    }


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(raw)
    return info.value.errors


def test_a_misspelt_key_is_an_error_with_the_field_it_is_closest_to():
    raw = base()
    raw["cluster_manager"]["clusters"][0]["conect_timeout"] = "1s"
    assert errors_of(raw) == [
        "cluster_manager.clusters[0].conect_timeout: unknown field; did you mean "
        "'connect_timeout'?"]


def test_a_key_at_the_wrong_level_says_where_it_belongs():
    raw = base()
    raw["servers"][0]["listeners"][0]["lb_type"] = "LB_RANDOM"
    assert errors_of(raw) == [
        "servers[0].listeners[0].lb_type: unknown field here; 'lb_type' belongs at "
        "cluster_manager.clusters[].lb_type"]


def test_listeners_at_the_top_level_serve_nothing_and_are_refused():
    raw = base()
    raw["listeners"] = raw.pop("servers")[0]["listeners"]
    assert errors_of(raw) == [
        "servers: no listener: mosn would start and serve nothing (listeners go under "
        "servers[].listeners)",
        "listeners: unknown field here; 'listeners' belongs at servers[].listeners",
    ]


def test_an_unknown_key_far_from_any_field_lists_the_known_ones():
    raw = base()
    raw["admin"] = {"address": {"socket_address": {"address": "127.0.0.1"}}, "zzz": 1}
    [error] = errors_of(raw)
    assert error.startswith("admin.zzz: unknown field (known here: access_log_path, address")


def test_a_misspelt_key_inside_a_protocol_config_is_an_error():
    # Without the check a misspelt max_frame_size would silently leave the limit at
    # its default.
    raw = bolt_proxy({"bolt": {"max_frame_sise": 65536}})
    assert errors_of(raw) == [
        "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config.bolt."
        "max_frame_sise: unknown field; did you mean 'max_frame_size'?"]


def test_a_misspelt_extend_config_key_is_an_error():
    raw = bolt_proxy({"sub_protocl": "bolt"})
    assert errors_of(raw) == [
        "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config."
        "sub_protocl: neither a protocol nor a MOSN key; did you mean 'sub_protocol'?"]


def test_a_protocol_name_in_the_wrong_case_is_an_error():
    raw = bolt_proxy({"BOLT": {"max_frame_size": 65536}})
    [error] = errors_of(raw)
    assert error.endswith("extend_config.BOLT: neither a protocol nor a MOSN key; did "
                          "you mean 'bolt'?")


def test_a_correct_protocol_config_loads_without_a_word():
    loaded = validate(bolt_proxy({"bolt": {"max_frame_size": 65536}}))
    assert loaded.warnings == []


@pytest.mark.parametrize("where, key, value", [
    ((), "pprof", {"debug": True, "port_value": 34902}),
    ((), "plugin", {"log_base": "/tmp/mosn/"}),
    (("servers", 0), "processor", 4),
    (("servers", 0, "listeners", 0), "default_read_buffer_size", 4096),
    (("cluster_manager", "clusters", 0), "sub_type", "x"),
])
def test_a_mosn_go_runtime_field_is_accepted_with_one_warning(where, key, value):
    raw = base()
    node = raw
    for part in where:
        node = node[part]
    node[key] = value
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in (*where, key))
    [warning] = validate(raw).warnings
    assert warning.startswith(f"{path.lstrip('.')}: accepted and not used: ")
    assert warning.endswith("(docs/compat.md)")


def test_a_go_runtime_field_left_empty_says_nothing():
    raw = base()
    raw["pprof"] = {"debug": False, "port_value": 0}
    assert validate(raw).warnings == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r["cluster_manager"]["clusters"][0].update(cluster_manager_tls=True),
     "cluster_manager.clusters[0].cluster_manager_tls: not supported by mosn yet"),
    (lambda r: r.update(inherit_old_mosnconfig=True),
     "inherit_old_mosnconfig: not supported by mosn yet"),
    (lambda r: r.update(extends=[{"type": "tunnel_agent", "config": {}}]),
     "extends[0].type: unknown extends type 'tunnel_agent'"),
])
def test_a_mosn_field_mosn_does_not_run_is_refused(mutate, expected):
    raw = base()
    mutate(raw)
    errors = errors_of(raw)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


def test_per_filter_config_of_a_filter_without_per_route_config_is_refused():
    raw = bolt_proxy({})
    vhost = raw["servers"][0]["routers"][0]["virtual_hosts"][0]
    vhost["routers"][0]["per_filter_config"] = {"payload_limit": {}}
    assert errors_of(raw) == [
        "servers[0].routers[0].virtual_hosts[0].routers[0].per_filter_config.payload_limit: "
        "the payload_limit filter takes no per-route config"]


def test_a_misspelt_key_in_a_per_route_filter_config_is_an_error_with_its_path():
    raw = bolt_proxy({})
    vhost = raw["servers"][0]["routers"][0]["virtual_hosts"][0]
    vhost["per_filter_config"] = {"rbac": {"rbacc": {}}}
    assert errors_of(raw) == [
        "servers[0].routers[0].virtual_hosts[0].per_filter_config.rbac.rbacc: "
        "unknown field; did you mean 'rbac'?"]


def test_a_key_inside_an_empty_message_is_an_error_with_its_path():
    raw = bolt_proxy({})
    route = raw["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["route"]
    route["hash_policy"] = [{"source_ip": {"enabled": True}}]
    errors = errors_of(raw)
    assert errors == ["servers[0].routers[0].virtual_hosts[0].routers[0].route."
                      "hash_policy[0].source_ip.enabled: unknown field (this takes no keys)"]


def test_router_handler_name_takes_mosn_s_default_handler_only():
    raw = bolt_proxy({})
    proxy = raw["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
    proxy["router_handler_name"] = "default"
    validate(copy.deepcopy(raw))
    proxy["router_handler_name"] = "mine"
    [error] = errors_of(raw)
    assert error == ("servers[0].listeners[0].filter_chains[0].filters[0].config: "
                     "router_handler_name 'mine': mosn has MOSN's 'default' router "
                     "handler only")


def test_validate_cli_shows_the_hint(tmp_path):
    raw = base()
    raw["servers"][0]["listeners"][0]["adress"] = "127.0.0.1:1"
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = subprocess.run([sys.executable, "-m", "mosn", "validate", "-c", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert ("servers[0].listeners[0].adress: unknown field; did you mean 'address'?"
            in out.stderr)


def test_a_protocol_of_a_disabled_plugin_is_named_as_disabled_not_unknown():
    raw = bolt_proxy({})
    raw["plugins"] = {"disable": ["sofarpc"]}
    assert errors_of(raw) == [
        "servers[0].listeners[0].filter_chains[0].filters[0].config.downstream_protocol: "
        "unknown protocol 'bolt': plugin 'sofarpc' registers it, and is installed but "
        "disabled (plugins.disable, or plugins.enable with autoload off)"]


def test_a_health_checker_of_a_disabled_plugin_is_named_as_disabled():
    raw = base()
    raw["plugins"] = {"disable": ["sofarpc"]}
    raw["cluster_manager"]["clusters"][0]["health_check"] = {"protocol": "bolt"}
    [error] = errors_of(raw)
    assert error.startswith("cluster_manager.clusters[0].health_check.protocol: unknown "
                            "health checker 'bolt': plugin 'sofarpc' registers it")


def test_auto_host_rewrite_and_host_rewrite_together_are_refused():
    raw = bolt_proxy({})
    route = raw["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["route"]
    route.update(auto_host_rewrite=True, host_rewrite="a.example")
    errors = errors_of(raw)
    assert len(errors) == 1 and errors[0].startswith(
        "servers[0].routers[0].virtual_hosts[0].routers[0].route: set one of host_rewrite, "
        "auto_host_rewrite"), errors
