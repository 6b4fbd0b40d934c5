"""Every config snippet in docs/ is loaded: each ```yaml block is a whole config that
validates, or a part of one that validates in its place in a small config (the
table below says where), or is loaded by the test named for it. A block added to the
docs fails here until it loads or is placed."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT
from mosn.config import validate
from mosn.config.models import MosnConfig

DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```yaml([^\n]*)\n(.*?)^```", re.S | re.M)


def base() -> dict[str, Any]:
    """A config with one listener and the clusters the docs' snippets name."""
    clusters = ["backend", "blue", "green", "internal", "api", "far", "orders", "vip",
                "far_mosn", "echo", "rpc"]
    return {
        "servers": [{
            "routers": [{"router_config_name": "main", "virtual_hosts": [{
                "domains": ["*"], "routers": [{"route": {"cluster_name": "backend"}}]}]}],
            "listeners": [{"name": "main", "address": "127.0.0.1:2045", "filter_chains": [
                {"filters": [{"type": "proxy", "config": {"router_config_name": "main"}}]}]}],
        }],
        "cluster_manager": {"clusters": [
            {"name": n, "hosts": [{"address": "127.0.0.1:8080"}]} for n in clusters]},
    }


def at_top(part: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys beside the base's listener; clusters join the base's."""
    config = {**base(), **part}
    if "cluster_manager" in part:
        mine = part["cluster_manager"].get("clusters", [])
        names = {c["name"] for c in mine}
        config["cluster_manager"] = {**part["cluster_manager"], "clusters": mine + [
            c for c in base()["cluster_manager"]["clusters"] if c["name"] not in names]}
    return config


def as_listeners(part: list[dict[str, Any]]) -> dict[str, Any]:
    config = base()
    config["servers"][0]["listeners"] = part
    return config


def as_server(part: dict[str, Any]) -> dict[str, Any]:
    config = base()
    config["servers"][0].update(part)
    return config


def as_filters(part: Any) -> dict[str, Any]:
    config = base()
    filters = part["filters"] if isinstance(part, dict) else part
    config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"] = filters
    return config


def as_access_log(part: dict[str, Any]) -> dict[str, Any]:
    config = base()
    config["servers"][0]["listeners"][0]["access_logs"] = [{"log_path": "stdout", **part}]
    return config


def as_route(part: dict[str, Any]) -> dict[str, Any]:
    config = base()
    config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"] = [
        {"match": {"prefix": "/"}, **part}]
    return config


PLACED = {
    ("access_log.md", 1): as_access_log,
    ("config.md", 1): as_filters,
    ("http2.md", 0): as_filters,
    ("upstream.md", 1): as_route,
    ("upstream.md", 2): as_route,
    ("rpc.md", 0): as_server,
}
"""Parts of a config, each with where it goes."""

ELSEWHERE = {
    "tls.md": "tests/test_tls_docs.py (with the certificates the blocks name)",
    "interception.md": "tests/test_interception_docs.py (with the certificates)",
    "plugins.md": "tests/test_plugins_tutorial.py (the tutorial, run as written)",
    "xprotocol.md": "plugins/xprotocol/tests/test_xprotocol_docs.py (with the codecs "
                    "the examples declare)",
}
"""Docs whose blocks need files or plugins that the test named builds first."""

NOT_MOSN = {
    ("stats.md", 0): "Prometheus' scrape config",
    ("tracing.md", 5): "the OpenTelemetry Collector's config",
}


def blocks() -> list[tuple[str, int, str, str]]:
    found = []
    for doc in sorted(DOCS.glob("*.md")):
        for i, (info, text) in enumerate(BLOCK.findall(doc.read_text())):
            found.append((doc.name, i, info.strip(), text))
    return found


BLOCKS = blocks()
TOP_KEYS = {info.alias or name for name, info in MosnConfig.model_fields.items()}


def test_there_are_blocks_in_every_doc_that_has_configs():
    assert len(BLOCKS) >= 50
    assert {doc for doc, *_ in BLOCKS} >= {"config.md", "l7.md", "rpc.md", "upstream.md",
                                           "tracing.md", "access_log.md", "xprotocol.md"}


@pytest.mark.parametrize("doc, index, info, text", BLOCKS,
                         ids=[f"{d}[{i}]" for d, i, *_ in BLOCKS])
def test_block_loads(doc: str, index: int, info: str, text: str) -> None:
    if doc in ELSEWHERE:
        test = ROOT / ELSEWHERE[doc].split(" ", 1)[0]
        assert test.exists() and doc in test.read_text(), ELSEWHERE[doc]
        return
    part = yaml.safe_load(text)  # every block is YAML
    if (doc, index) in NOT_MOSN:
        return
    place = PLACED.get((doc, index))
    if place is not None:
        config = place(copy.deepcopy(part))
    else:
        assert isinstance(part, dict) and set(part) <= TOP_KEYS, (
            f"{doc} block {index} is neither a whole config nor placed in PLACED")
        config = part if "servers" in part else at_top(part)
    loaded = validate(config, base_dir=Path(DOCS))
    for warning in loaded.warnings:
        assert warning.startswith("admin.address.socket_address.address: "), warning
