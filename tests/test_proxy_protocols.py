"""MOSN's ways to name the protocols of a ``proxy`` filter, end to end: ``Auto`` with
``extend_config.sub_protocol``, lists (``bolt,dubbo``; ``X`` with several
sub-protocols), ``upstream_protocol: Auto``, and ``fallback_for_unknown_protocol``
handing a connection no protocol claims to the next network filter (MOSN's
proxy-fallback-example and configs/ rpc samples, under tests/data/mosn_samples/)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from mosn.config import ConfigError, validate
from mosn.proxy import ProxyConfig
from mosn.testing.process import rpc_proxy_config
from mosn.testing.traffic import HttpBackend, http_request, rpc_request
from mosn_dubbo import DubboCodec
from mosn_sofarpc import BoltCodec, BoltV2Codec

SAMPLES = Path(__file__).parent / "data" / "mosn_samples"
SERVICE = "com.example.EchoService:1.0"
TIMEOUT = 5.0


def closed_without_reply(port: int, data: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        try:
            return sock.recv(65536) == b""
        except ConnectionResetError:
            return True


def rpc_config(port: int, backend: str, **proxy: Any) -> dict[str, Any]:
    protocol = proxy.pop("downstream_protocol")
    return rpc_proxy_config(port, protocol, [backend], proxy_fields=proxy)


# -- fallback_for_unknown_protocol ---------------------------------------------------


def fallback_sample(port: int, http_backend: str, tcp_backend: str) -> dict[str, Any]:
    """MOSN's proxy-fallback-example with the addresses made free ports."""
    config = json.loads((SAMPLES / "proxy-fallback-example" / "config.json").read_text())
    config["servers"][0]["listeners"][0]["address"] = f"127.0.0.1:{port}"
    http, tcp = config["cluster_manager"]["clusters"]
    http["hosts"][0]["address"] = http_backend
    tcp["hosts"][0]["address"] = tcp_backend
    return config


def test_fallback_sample(start_mosn: Any, echo_server: int) -> None:
    backend = HttpBackend()
    try:
        port = free_port()
        start_mosn(fallback_sample(port, backend.address, f"127.0.0.1:{echo_server}"))
        assert http_request("1.1", port, "/").status == 200
        assert backend.requests == 1
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"\x00not a protocol mosn knows\n")
            got = b""
            while len(got) < 27:
                chunk = sock.recv(65536)
                assert chunk, "closed instead of falling back to tcp_proxy"
                got += chunk
        assert got == b"\x00not a protocol mosn knows\n"  # echoed by the TCP backend
        assert backend.requests == 1
    finally:
        backend.stop()


def test_without_fallback_unknown_bytes_close(start_mosn: Any, echo_server: int) -> None:
    port = free_port()
    config = fallback_sample(port, f"127.0.0.1:{free_port()}", f"127.0.0.1:{echo_server}")
    proxy = config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
    proxy["fallback_for_unknown_protocol"] = False
    start_mosn(config)
    assert closed_without_reply(port, b"\x00not a protocol mosn knows\n")


def test_fallback_with_a_fixed_protocol_is_refused() -> None:
    config = rpc_proxy_config(free_port(), "bolt", ["127.0.0.1:1"],
                              proxy_fields={"fallback_for_unknown_protocol": True})
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert any("fallback_for_unknown_protocol" in e and "Auto" in e for e in info.value.errors)


# -- Auto with sub_protocol, lists, X --------------------------------------------------


def test_auto_with_sub_protocol_detects_http_and_those_rpc_protocols(
        start_mosn: Any, mock_rpc_server: Any) -> None:
    bolt = mock_rpc_server(BoltCodec())
    port = free_port()
    start_mosn(rpc_config(port, bolt.address, downstream_protocol="Auto",
                          upstream_protocol="Auto", extend_config={"sub_protocol": "bolt"}))
    assert rpc_request(BoltCodec(), port, SERVICE).http_status == 200
    assert http_request("1.1", port, "/").status == 404  # HTTP detected; no route for it
    assert closed_without_reply(port, DubboCodec().request(SERVICE, "echo", b"x"))


def test_a_list_of_protocols_detects_among_them(start_mosn: Any, mock_rpc_server: Any) -> None:
    bolt = mock_rpc_server(BoltCodec())
    port = free_port()
    start_mosn(rpc_config(port, bolt.address, downstream_protocol="bolt,boltv2",
                          upstream_protocol="bolt"))
    assert rpc_request(BoltCodec(), port, SERVICE).http_status == 200
    assert rpc_request(BoltV2Codec(), port, SERVICE).http_status == 200
    assert closed_without_reply(port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")


def test_x_with_several_sub_protocols(start_mosn: Any, mock_rpc_server: Any) -> None:
    bolt = mock_rpc_server(BoltCodec())
    dubbo = mock_rpc_server(DubboCodec())
    port = free_port()
    config = rpc_config(port, bolt.address, downstream_protocol="X", upstream_protocol="X",
                        extend_config={"sub_protocol": "bolt,dubbo"})
    routes = config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"]
    routes.insert(0, {"match": {"headers": [{"name": "dubbo", "value": ".+", "regex": True}]},
                      "route": {"cluster_name": "dubbo"}})
    config["cluster_manager"]["clusters"].append(
        {"name": "dubbo", "hosts": [{"address": dubbo.address}]})
    start_mosn(config)
    assert rpc_request(BoltCodec(), port, SERVICE).http_status == 200
    assert rpc_request(DubboCodec(), port, SERVICE).http_status == 200  # upstream: as spoken


@pytest.mark.parametrize(("fields", "path"), [
    ({"downstream_protocol": "X"}, "downstream_protocol"),
    ({"downstream_protocol": "bolt", "extend_config": {"sub_protocol": "bolt"}},
     "extend_config.sub_protocol"),
    ({"downstream_protocol": "Auto", "extend_config": {"sub_protocol": "nosuch"}},
     "extend_config.sub_protocol"),
    ({"downstream_protocol": "bolt,nosuch"}, "downstream_protocol"),
    ({"downstream_protocol": "Auto", "extend_config": {"sub_protocol": ""}},
     "extend_config.sub_protocol"),
])
def test_bad_protocol_names_are_refused_with_their_path(fields: dict[str, Any],
                                                        path: str) -> None:
    protocol = fields.pop("downstream_protocol")
    config = rpc_proxy_config(free_port(), protocol, ["127.0.0.1:1"], proxy_fields=fields)
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert any(path in e for e in info.value.errors), info.value.errors


# -- MOSN's rpc samples ------------------------------------------------------------------


@pytest.mark.parametrize(("sample", "missing", "protocols"), [
    ("mosn_rpc_config_bolt.json", set(), [("Auto", ("bolt",)), ("Auto", ("bolt",))]),
    ("mosn_rpc_config.json", set(), [("Auto", ()), ("Auto", ())]),
    ("mosn_config_mirror.json", set(),
     [("dubbo", ()), ("Http1", ()), ("Http1", ())]),  # X + dubbo
])
def test_mosn_rpc_samples_need_only_the_stream_filters_mosn_lacks(
        sample: str, missing: set[str], protocols: list[tuple[str, tuple[str, ...]]]) -> None:
    """MOSN's configs/ samples with X-protocol forms load; what one is refused for is
    only a stream filter mosn lacks (``mirror``), with its path."""
    config = json.loads((SAMPLES / "configs" / sample).read_text())
    if missing:
        with pytest.raises(ConfigError) as info:
            validate(config)
        assert all(".stream_filters[" in e and "unknown stream filter" in e
                   for e in info.value.errors), info.value.errors
        assert {e.split("'")[1] for e in info.value.errors} == missing
        for listener in config["servers"][0]["listeners"]:
            listener["stream_filters"] = [f for f in listener.get("stream_filters", [])
                                          if f["type"] not in missing]
    loaded = validate(config)
    proxies = [ProxyConfig.model_validate(listener.filter_chains[0].filters[0].config)
               for listener in loaded.config.servers[0].listeners]
    assert [(p.downstream_protocol, p.rpc_only) for p in proxies] == protocols
