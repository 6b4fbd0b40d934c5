"""A declared protocol in a mosn config: checked by ``mosn validate`` with the path of
every error, before anything listens."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mosn.config import ConfigError
from mosn.config.loader import validate
from mosn.testing import rpc_proxy_config
from xprotocol_examples import ACME

FILTER = "servers[0].listeners[0].filter_chains[0].filters[0].config"


def config(proxy: dict[str, Any]) -> dict[str, Any]:
    return rpc_proxy_config(0, "Auto", ["127.0.0.1:1"], proxy_fields=proxy)


def errors(proxy: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        validate(config(proxy))
    return refused.value.errors


def test_a_declared_protocol_is_accepted() -> None:
    validate(config({"downstream_protocol": "xprotocol",
                     "extend_config": {"xprotocol": {"codec": yaml.safe_load(ACME)}}}))


def test_xprotocol_without_a_codec_is_refused() -> None:
    assert errors({"downstream_protocol": "xprotocol"}) == [
        f"{FILTER}.extend_config.xprotocol.codec: describe the protocol: a proxy speaking "
        "xprotocol needs extend_config.xprotocol.codec"]


def test_a_bad_codec_is_refused_with_its_path() -> None:
    codec = yaml.safe_load(ACME)
    codec["request_id"]["size"] = 3
    del codec["status"]
    found = errors({"downstream_protocol": "xprotocol",
                    "extend_config": {"xprotocol": {"codec": codec}}})
    assert f"{FILTER}.extend_config.xprotocol.codec.request_id.size: Input should be 1, 2, 4 or 8" in found
    assert f"{FILTER}.extend_config.xprotocol.codec.status: Field required" in found


def test_a_bad_codec_is_refused_even_when_another_protocol_is_spoken() -> None:
    """The proxy builds every protocol from extend_config: a bad one would fail later."""
    found = errors({"downstream_protocol": "Auto",
                    "extend_config": {"xprotocol": {"codec": {"header_size": 0}}}})
    assert any(e.startswith(f"{FILTER}.extend_config.xprotocol.codec.header_size") for e in found)


def test_other_proxies_are_not_bothered() -> None:
    validate(config({"downstream_protocol": "Auto"}))
