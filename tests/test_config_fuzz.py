"""The config loader under random input: random YAML and JSON documents, valid configs
with parts replaced, and config text with bytes changed. Whatever it reads, it
answers with a config or a :class:`ConfigError`, never another exception; and what it
accepts, the admin API can show."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, tcp_proxy_config
from mosn.admin.redact import Redactor, json_pieces
from mosn.config import ConfigError, dump, load
from mosn.plugins import PluginHost
from mosn.testing.process import rpc_proxy_config
from test_admin_security import secret_config

EXAMPLES = 80
"""Hypothesis examples per test: the whole module runs in about fifteen seconds."""
PLUGINS = PluginHost().load()
"""Loaded once: each example validates against the installed plugins."""
_WORK = tempfile.TemporaryDirectory(prefix="mosn-config-fuzz-")  # removed at exit
WORKDIR = Path(_WORK.name)
"""Where each example's config file is written (one file per suffix, overwritten)."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

VALID = [
    tcp_proxy_config(2045, ["127.0.0.1:8080", "127.0.0.1:8081"]),
    rpc_proxy_config(2046, "bolt", ["127.0.0.1:12200"], cluster={
        "health_check": {"protocol": "tcp", "interval": "5s"},
        "lb_subset_config": {"subset_selectors": [["zone"]]}}),
    secret_config(2047, 8080),
    yaml.safe_load((ROOT / "configs" / "example.yaml").read_text()),
    json.loads((ROOT / "tests" / "data" / "mosn_tcpproxy.json").read_text()),
]
"""Valid configs of several shapes, the mutation fuzzer's seeds."""

KEYS = st.sampled_from(sorted({
    "servers", "listeners", "routers", "cluster_manager", "clusters", "hosts", "address",
    "name", "type", "config", "filter_chains", "filters", "virtual_hosts", "domains",
    "match", "route", "cluster_name", "weight", "metadata", "admin", "plugins",
    "health_check", "timeout", "lb_type", "Name", "ADDRESS", "tracing", "pid",
    "redact_keys", "socket_address", "port_value", "<<"})) | st.text(max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers(-2**63, 2**64)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=24)
           | st.sampled_from(["127.0.0.1:80", "15s", "LB_RANDOM", "tcp_proxy", "proxy",
                              "Http1", "bolt", "", "0", "-1", "1e999", "unix:/tmp/x"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS, inner, max_size=5), max_leaves=25)


def check_file(text: str, suffix: str) -> None:
    """Load ``text`` as a config file: a config or a ConfigError, and a config that
    loads is one the admin API can write as JSON."""
    path = WORKDIR / f"c{suffix}"
    path.write_text(text)
    try:
        loaded = load(path, PLUGINS)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        return
    dumped = dump(loaded.config)
    written = "".join(json_pieces(dumped, Redactor(loaded.config.admin.redact_keys)))
    assert isinstance(json.loads(written), dict)
    assert json.loads("".join(json_pieces(dumped))) == _finite(dumped)


def _finite(value: Any) -> Any:
    """``value`` as json_pieces writes it: a float JSON cannot say becomes a string."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _both(data: Any) -> None:
    check_file(yaml.safe_dump(data), ".yaml")
    check_file(json.dumps(data), ".json")


@SETTINGS
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_random_documents(data: dict[str, Any]) -> None:
    _both(data)


@SETTINGS
@given(VALUES)
def test_random_top_levels(data: Any) -> None:
    _both(data)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, path + (i,))


def _replace(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(value[head], rest, new, delete)
    return copy


@SETTINGS
@given(st.sampled_from(VALID), st.data())
def test_valid_configs_with_parts_replaced(config: dict[str, Any], data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(config))
        path = data.draw(st.sampled_from(paths))
        delete = bool(path) and data.draw(st.booleans())
        config = _replace(config, path, None if delete else data.draw(VALUES), delete)
    _both(config)


YAML_PIECES = st.sampled_from([
    "&a ", "*a", "<<: *a", ": ", "- ", "[", "]", "{", "}", ",", "!!binary ", "!!set ",
    "!!python/object:os.system ", "? ", "\t", "\n", "  ", "'", '"', "#", "%YAML 1.1\n",
    "---\n", "...\n", "|\n", ">\n", "~", "\\u0000", "\x00", "\ufeff", "&b [*a, *a]",
])
JSON_PIECES = st.sampled_from(['"', "{", "}", "[", "]", ",", ":", "\\", "\\u12", "null",
                               '"a": 1', "1e999", "-", "\n", " "])


def _mutated(text: str, data: st.DataObject, pieces: st.SearchStrategy[str]) -> str:
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 4))
        text = text[:at] + data.draw(pieces | st.text(max_size=3)) + text[at + cut:]
    return text


@SETTINGS
@given(st.sampled_from(VALID), st.data())
def test_config_text_with_bytes_changed(config: dict[str, Any], data: st.DataObject) -> None:
    check_file(_mutated(yaml.safe_dump(config), data, YAML_PIECES), ".yaml")
    check_file(_mutated(json.dumps(config, indent=1), data, JSON_PIECES), ".json")


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    check_file(text, ".yaml")
    check_file(text, ".json")
