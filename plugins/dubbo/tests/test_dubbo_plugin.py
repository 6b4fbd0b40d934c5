"""Status mapping, the matcher, and the plugin as the plugin host sees it."""

from __future__ import annotations

import pytest

from mosn.plugins import PluginHost
from mosn.stream.types import MatchResult
from mosn_dubbo import DubboCodec, Status, error_status, http_status, match
from mosn_dubbo.config import DubboConfig


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


def test_config_limits() -> None:
    with pytest.raises(ValueError):
        DubboConfig(max_body_size=10)
