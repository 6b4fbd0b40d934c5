"""The HSF stub refuses every use with the reason, and stays out of everything else."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from mosn.config import ConfigError
from mosn.config.loader import validate
from mosn.plugins import PluginHost
from mosn.stream.types import MatchResult
from mosn.testing import rpc_proxy_config
from mosn_hsf import NOT_PUBLIC

FILTER = "servers[0].listeners[0].filter_chains[0].filters[0].config"


def config(proxy: dict[str, Any]) -> dict[str, Any]:
    return rpc_proxy_config(0, "Auto", ["127.0.0.1:1"], proxy_fields=proxy)


@pytest.mark.parametrize("field", ["downstream_protocol", "upstream_protocol"])
def test_a_proxy_naming_hsf_is_refused_with_the_reason(field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        validate(config({field: "hsf"}))
    assert refused.value.errors == [f"{FILTER}.{field}: {NOT_PUBLIC}"]


def test_mosn_validate_says_why(tmp_path) -> None:
    path = tmp_path / "hsf.yaml"
    path.write_text(yaml.safe_dump(config({"downstream_protocol": "hsf"})))
    done = subprocess.run([sys.executable, "-m", "mosn", "validate", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "HSF's wire format is not publicly specified" in done.stderr


def test_other_proxies_are_not_bothered() -> None:
    validate(config({"downstream_protocol": "Auto"}))


def test_auto_never_takes_a_connection_for_hsf() -> None:
    ext = PluginHost().load().get("protocol", "hsf")
    protocol = ext.factory(ext.config_model())
    for opening in (b"\x00\x01\x02\x03", b"GET / HTTP/1.1\r\n", b""):
        assert protocol.match(opening) is MatchResult.NO_MATCH


def test_the_tools_refuse_too() -> None:
    done = subprocess.run([sys.executable, "-m", "mosn", "mock", "client", "--protocol", "hsf",
                           "--target", "127.0.0.1:1", "--service", "x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "HSF's wire format is not publicly specified" in done.stderr
