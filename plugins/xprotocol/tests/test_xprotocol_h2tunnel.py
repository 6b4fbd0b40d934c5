"""No-unpack tunnels over HTTP/2 (``over: http2``): the ACME protocol carried as opaque
bytes, each client connection a CONNECT stream of one shared HTTP/2 connection between
two mosn instances, the far one forwarding each stream to the cluster it names."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from mosn.config import ConfigError, validate
from mosn.testing import free_port
from test_xprotocol_tunnel import (  # noqa: F401 (backends: a pytest fixture)
    acme_calls,
    backend_of,
    backends,
    cluster,
    listener,
    mosn_config,
)
from xprotocol_examples import ACME_RESPONSE

HERE = Path(__file__).parent
CLIENTS = 20
TIMEOUT = 10.0


def start_pair(start_mosn: Any, backends: dict[str, int]) -> tuple[int, int, Any]:
    near_orders, near_vip, near_denied, far = (free_port() for _ in range(4))
    far_mosn = start_mosn(mosn_config(
        [listener("tunnels", far, "tunnel_exit", {"clusters": ["orders", "vip"],
                                                  "over": "http2"})],
        [cluster("orders", [backends["a"]]), cluster("vip", [backends["vip"]]),
         cluster("secret", [backends["vip"]])]))
    start_mosn(mosn_config(
        [listener("orders", near_orders, "tunnel_entry",
                  {"cluster": "far", "destination": "orders", "over": "http2"}),
         listener("vip", near_vip, "tunnel_entry",
                  {"cluster": "far", "destination": "vip", "over": "http2"}),
         listener("denied", near_denied, "tunnel_entry",
                  {"cluster": "far", "destination": "secret", "over": "http2"})],
        [cluster("far", [far])]))
    return near_orders, near_vip, (far_mosn, near_denied)


def test_many_connections_over_one_http2_connection(start_mosn: Any,
                                                    backends: dict[str, int]) -> None:
    orders, vip, (far_mosn, _) = start_pair(start_mosn, backends)

    async def go() -> list[list[dict[str, Any]]]:
        calls = [acme_calls(orders, 30, f"o{i}") for i in range(CLIENTS)]
        calls += [acme_calls(vip, 30, f"v{i}") for i in range(CLIENTS)]
        return await asyncio.gather(*calls)

    results = asyncio.run(go())
    for i, replies in enumerate(results):
        tag = f"o{i}" if i < CLIENTS else f"v{i - CLIENTS}"
        assert all(r["kind"] == ACME_RESPONSE for r in replies)
        assert {backend_of(r) for r in replies} == {"a" if i < CLIENTS else "vip"}
        assert [r["body"].split(b":", 1)[1] for r in replies] == [
            b"%s-%d" % (tag.encode(), n) for n in range(1, 31)]
    stats = far_mosn.stats()
    # 40 client connections became one HTTP/2 connection per entry listener
    assert stats["listener.tunnels.downstream_cx_total"] == 2


def test_a_cluster_the_far_side_does_not_allow_is_closed(start_mosn: Any,
                                                         backends: dict[str, int]) -> None:
    _, _, (_, denied) = start_pair(start_mosn, backends)
    with socket.create_connection(("127.0.0.1", denied), timeout=TIMEOUT) as sock:
        sock.sendall(b"hello")
        try:
            assert sock.recv(65536) == b""
        except ConnectionResetError:
            pass


def test_large_transfer_keeps_order_under_flow_control(start_mosn: Any,
                                                       backends: dict[str, int]) -> None:
    orders, _, _ = start_pair(start_mosn, backends)
    replies = asyncio.run(acme_calls(orders, 2000, "big"))  # ~80 KiB each way, windows refill
    assert [r["body"].split(b":", 1)[1] for r in replies] == [
        b"big-%d" % n for n in range(1, 2001)]


@pytest.mark.parametrize(("filter_type", "config", "field"), [
    ("tunnel_exit", {"clusters": ["orders"], "handshake_timeout": "3s"}, "handshake_timeout"),
    ("tunnel_entry", {"cluster": "orders", "destination": "x", "max_connect_attempts": 2},
     "max_connect_attempts"),
])
def test_tcp_only_fields_are_refused_over_http2(filter_type: str, config: dict[str, Any],
                                                field: str) -> None:
    raw = mosn_config([listener("t", free_port(), filter_type, {**config, "over": "http2"})],
                      [cluster("orders", [free_port()])])
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert any(field in e for e in info.value.errors), info.value.errors


def test_the_docs_snippets_validate() -> None:
    """docs/xprotocol.md's two ``over: http2`` listeners, each in a config with the
    clusters it names."""
    docs = (HERE.parents[2] / "docs" / "xprotocol.md").read_text()
    snippets = [s for s in re.findall(r"```yaml listeners\n(.*?)```", docs, re.S)
                if "over: http2" in s]
    assert len(snippets) == 2
    clusters = [cluster(name, [free_port()]) for name in ("far_mosn", "orders", "vip")]
    for snippet in snippets:
        loaded = validate(mosn_config(yaml.safe_load(snippet), clusters))
        assert not loaded.warnings
