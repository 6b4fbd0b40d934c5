"""Status mapping, the matcher, and the plugin as the plugin host sees it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mosn.config import ConfigError, validate
from mosn import server
from mosn.plugins import PluginHost
from mosn.stream.types import MatchResult
from mosn_dubbo import DubboCodec, Status, error_status, http_status, match
from mosn_dubbo.config import DubboConfig
from mosn_dubbo.extend import BadRequest, parse_request


@pytest.mark.parametrize("http, flags, status", [
    (404, ("NR",), Status.SERVICE_NOT_FOUND),
    (503, ("UH",), Status.SERVICE_NOT_FOUND),
    (503, ("UF",), Status.SERVICE_NOT_FOUND),
    (503, ("UO",), Status.SERVER_THREADPOOL_EXHAUSTED),
    (503, ("OM",), Status.SERVER_THREADPOOL_EXHAUSTED),  # shed by the overload manager
    (504, ("UT",), Status.SERVER_TIMEOUT),
    (502, ("UC",), Status.SERVER_ERROR),
    (400, (), Status.BAD_REQUEST),
    (418, (), Status.SERVICE_ERROR),
])
def test_error_status(http: int, flags: tuple[str, ...], status: Status) -> None:
    assert error_status(http, flags) == status


@pytest.mark.parametrize("status, http", [
    (20, 200), (30, 504), (31, 504), (40, 400), (50, 502), (60, 404), (70, 500), (80, 500),
    (90, 500), (100, 503), (7, 500)])
def test_http_status(status: int, http: int) -> None:
    assert http_status(status) == http


@pytest.mark.parametrize("data, result", [
    (b"", MatchResult.NEED_MORE),
    (b"\xda", MatchResult.NEED_MORE),
    (b"\xda\xbb", MatchResult.NEED_MORE),
    (b"\xda\xbb\xc2", MatchResult.MATCH),
    (b"\xda\xbb\xe2", MatchResult.MATCH),
    (b"\xda\xbb\x02", MatchResult.NO_MATCH),  # a response never opens a connection
    (b"\xdb", MatchResult.NO_MATCH),
    (b"GET /", MatchResult.NO_MATCH),
    (b"\x01\x01\x00\x01", MatchResult.NO_MATCH),  # bolt
])
def test_match(data: bytes, result: MatchResult) -> None:
    assert match(data) is result


def test_plugin_registers_codec_protocol_and_cluster_type() -> None:
    host = PluginHost(autoload=True).load()
    assert not [e for e in host.errors if "dubbo" in e]
    codec = host.get("xprotocol_codec", "dubbo")
    assert codec is not None
    made = codec.factory(DubboConfig(max_body_size=100000, attachments=False))
    assert isinstance(made, DubboCodec)
    assert (made.max_body_size, made.attachments) == (100000, False)
    protocol = host.get("protocol", "dubbo").factory(DubboConfig())
    assert protocol.name == "dubbo" and protocol.multiplexed
    assert host.get("cluster_type", "zookeeper") is not None
    assert host.get("extends_type", "dubbo_registry") is not None


def test_config_limits() -> None:
    with pytest.raises(ValueError):
        DubboConfig(max_body_size=10)


# -- the dubbo_registry extends entry --------------------------------------------------


def registry_entry(**config: Any) -> dict[str, Any]:
    proxy = {"type": "tcp_proxy", "config": {"cluster": "c"}}
    return {
        "servers": [{"listeners": [{"name": "in", "address": "127.0.0.1:20880",
                                    "filter_chains": [{"filters": [proxy]}]}]}],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": [{"address": "127.0.0.1:1"}]}]},
        "extends": [{"type": "dubbo_registry", "config": config}],
    }


def test_a_registry_entry_loads_and_log_path_is_a_warning() -> None:
    loaded = validate(registry_entry(enable=True, server_port=20880, api_port=22223,
                                     log_path="/tmp"))
    (entry,) = loaded.config.extends
    assert (entry.parsed.server_port, entry.parsed.api_port) == (20880, 22223)
    assert entry.parsed.listener_host == "127.0.0.1"
    assert [w.split(":")[0] for w in loaded.warnings] == ["extends[0].config.log_path"]


def test_registry_entry_errors_have_their_paths() -> None:
    config = registry_entry(enable=True, server_port=20881, api_prot=1)
    config["extends"].append({"type": "tunnel_agent", "config": {}})
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert sorted(info.value.errors) == [
        "extends[0].config.api_prot: unknown field; did you mean 'api_port'?",
        "extends[0].config.server_port: no listener on port 20881: a published provider "
        "points consumers at mosn's listener there",
        "extends[1].type: unknown extends type 'tunnel_agent' (known: dubbo_registry)"]


def test_extends_with_workers_is_refused_before_anything_listens() -> None:
    loaded = validate(registry_entry(enable=True, server_port=20880))
    with pytest.raises(server.StartError, match="extends: .*run without --workers"):
        server.run(loaded, workers=2)


def test_a_disabled_registry_entry_is_only_checked() -> None:
    validate(registry_entry(enable=False, server_port=1))


@pytest.mark.parametrize("body, reasons", [
    (b"", ["the body is a JSON object"]),
    (b"[1]", ["the body is a JSON object"]),
    (b'{"registry": {"type": "nacos", "addr": "h:1"}, "service": {"interface": "a.B", '
     b'"methods": ["m"]}}', ["registry.type: registry type 'nacos': only 'zookeeper'"]),
    (b'{"registry": {"type": "zookeeper", "addr": "h"}, "service": {"interface": "a/B", '
     b'"methods": [], "grop": "x"}, "x": 1}',
     ["registry.addr: 'h' is not host:port", "service.interface: 'a/B' is not a Java",
      "service.methods: List should have at least 1 item", "x: unknown field (known here: "
      "registry, service)", "service.grop: unknown field; did you mean 'group'?"]),
    (b'{"registry": {"type": "zookeeper", "addr": "h:1"}, "service": {"interface": "a.B", '
     b'"methods": ["m"], "version": "1&x=2"}}', ["service.version: '1&x=2': letters"]),
])
def test_registry_api_bodies_are_checked(body: bytes, reasons: list[str]) -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(body)
    for reason in reasons:
        assert reason in str(info.value)


def test_a_registry_api_body_as_mosn_sends_it() -> None:
    request = parse_request(json.dumps({
        "registry": {"addr": "127.0.0.1:2181", "type": "zookeeper"},
        "service": {"group": "", "interface": "com.ikurento.user",
                    "methods": ["GetUser", "GetProfile", "kkk"], "name": "UserProvider",
                    "port": "20000", "version": ""}}).encode())
    assert request.service.methods == ["GetUser", "GetProfile", "kkk"]
