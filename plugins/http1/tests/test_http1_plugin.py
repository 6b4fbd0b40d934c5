"""The plugin as mosn loads it: an installed distribution with an entry point."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mosn.plugins import PluginHost
from mosn.stream.types import MatchResult
from mosn_http1 import Http1Config, Http1Protocol


def test_registered_through_the_entry_point():
    host = PluginHost().load()
    ext = host.get("protocol", "Http1")
    assert ext is not None and ext.config_model is Http1Config
    info = next(p for p in host.plugins if p.name == "http1")
    assert info.distribution == "mosn-plugin-http1" and info.registers == {"protocol": ["Http1"]}


def test_factory_builds_the_protocol_from_config():
    ext = PluginHost().load().get("protocol", "Http1")
    protocol = ext.factory(Http1Config.model_validate(
        {"Max_Request_Headers_KB": 8, "max_pipelined_requests": 4}))
    assert isinstance(protocol, Http1Protocol) and protocol.name == "Http1"
    assert protocol.limits.max_request_head_bytes == 8 * 1024
    assert protocol.limits.max_pipelined_requests == 4
    assert protocol.match(b"GET ") is MatchResult.MATCH


def test_defaults():
    limits = Http1Config().limits()
    assert limits.max_request_head_bytes == 60 * 1024
    assert limits.max_headers_count == 100


def test_bad_config_refused():
    with pytest.raises(ValidationError):
        Http1Config.model_validate({"max_request_headers_kb": 0})
