"""Fixtures that start real servers on 127.0.0.1: the example echo upstream (mosn
itself through the ``start_mosn`` fixture of :mod:`mosn.testing`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from mosn.server import raise_fd_limit
from mosn.testing.process import MosnProcess, free_port, serving, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
ECHO = ROOT / "examples" / "echo_upstream.py"
raise_fd_limit()  # the tests open a thousand connections at once


# One way to do it: the plugin author's kit (mosn.testing, loaded by pytest through
# its pytest11 entry point) gives free ports, the mosn process and the `start_mosn`
# fixture; these names are the ones the tests here import.
Mosn = MosnProcess
stop = stop_process


SLOW_FILES = (
    "tests/test_upgrade.py", "tests/test_xds_proxy.py", "tests/test_plugins_tutorial.py",
    "tests/test_plugin_new.py", "tests/test_soak.py", "tests/test_tls.py",
    "tests/test_conformance_kit.py", "tests/test_plugins.py", "tests/test_mock_client.py",
    "plugins/xprotocol/tests/test_xprotocol_mesh.py",
    "plugins/xprotocol/tests/test_xprotocol_tunnel.py",
    "plugins/http2/tests/test_http2_streams.py", "plugins/dubbo/tests/test_dubbo_zookeeper.py",
    "tests/test_kit_upstream.py", "tests/test_upstream_e2e.py", "tests/test_http_proxy.py",
)
"""The files that take minutes, slowest first. A parallel run (scripts/test: a file
whole on one worker) hands them out first, so none starts last and runs on alone."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its order is the queue's
        rank = {name: i for i, name in enumerate(SLOW_FILES)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture
def echo_server() -> Iterator[int]:
    """The example echo upstream on a free port; yields the port."""
    with serving(lambda port: [sys.executable, str(ECHO), "--address", f"127.0.0.1:{port}"],
                 stdout=subprocess.DEVNULL) as port:
        yield port


def tcp_proxy_config(listen_port: int, hosts: list[str], *, cluster: str = "backend",
                     filter_config: dict[str, Any] | None = None,
                     listener: dict[str, Any] | None = None,
                     cluster_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-listener tcp_proxy config in MOSN's shape."""
    return {
        "servers": [{
            "graceful_timeout": "2s",
            "listeners": [{
                "name": "proxy",
                "address": f"127.0.0.1:{listen_port}",
                "bind_port": True,
                "filter_chains": [{"filters": [{
                    "type": "tcp_proxy",
                    "config": {"cluster": cluster, **(filter_config or {})},
                }]}],
                **(listener or {}),
            }],
        }],
        "cluster_manager": {"clusters": [{
            "name": cluster,
            "type": "SIMPLE",
            "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": h} for h in hosts],
            **(cluster_extra or {}),
        }]},
    }
