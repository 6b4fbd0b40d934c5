"""Fixtures for the Http2 plugin's end-to-end tests: a real HTTP/2 upstream (hypercorn
serving the example app) and mosn configs in MOSN's shape. Imported by the test
modules that use them (a conftest.py here would take the name of tests/conftest.py,
which the core's tests import from)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from mosn.testing.process import free_port, stop_process, wait_for_port
from mosn_http2.engine import NATIVE, PYTHON, native_error

HERE = Path(__file__).resolve().parent
H2_UPSTREAM = HERE / "h2_upstream.py"

ENGINES = [
    pytest.param(NATIVE, marks=pytest.mark.skipif(
        native_error() is not None, reason=f"the nghttp2 engine cannot run: {native_error()}")),
    PYTHON,
]
"""Every Http2 test runs on both engines (test_native_engine_built checks the native
one is there wherever it can be built)."""


@pytest.fixture(scope="module", params=ENGINES)
def h2_engine(request: pytest.FixtureRequest) -> str:
    """The HTTP/2 engine mosn runs the test on (``extend_config.Http2.engine``)."""
    return request.param


def with_engine(extend_config: dict[str, Any] | None, engine: str) -> dict[str, Any]:
    """``extend_config`` with ``Http2.engine`` set."""
    extend = dict(extend_config or {})
    extend["Http2"] = {**extend.get("Http2", {}), "engine": engine}
    return extend


def start_upstream(name: str = "h2", max_streams: int = 100,
                   max_requests: int | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [sys.executable, str(H2_UPSTREAM), "--port", str(port), "--name", name,
            "--max-streams", str(max_streams)]
    if max_requests is not None:
        argv += ["--max-requests", str(max_requests)]
    proc = subprocess.Popen(argv)
    try:
        wait_for_port(port)
    except Exception:
        stop_process(proc)
        raise
    return proc, port


@pytest.fixture(scope="module")
def h2_upstream() -> Iterator[int]:
    """hypercorn on a free port (HTTP/2 cleartext and HTTP/1.1); yields the port."""
    proc, port = start_upstream()
    try:
        yield port
    finally:
        stop_process(proc)


def proxy_config(port: int, upstream_port: int, *, downstream: str = "Http2",
                 upstream: str = "", routes: list[dict[str, Any]] | None = None,
                 extend_config: dict[str, Any] | None = None,
                 cluster: dict[str, Any] | None = None, timeout: str = "15s",
                 graceful_timeout: str = "1s") -> dict[str, Any]:
    """One listener on ``port`` proxying everything to ``127.0.0.1:upstream_port``."""
    proxy: dict[str, Any] = {"downstream_protocol": downstream, "router_config_name": "main",
                             "timeout": timeout}
    if upstream:
        proxy["upstream_protocol"] = upstream
    if extend_config:
        proxy["extend_config"] = extend_config
    return {
        "servers": [{
            "graceful_timeout": graceful_timeout,
            "routers": [{"router_config_name": "main", "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routers": routes or [{"match": {"prefix": "/"},
                                       "route": {"cluster_name": "backend"}}]}]}],
            "listeners": [{
                "name": "h2", "address": f"127.0.0.1:{port}", "bind_port": True,
                "filter_chains": [{"filters": [{"type": "proxy", "config": proxy}]}],
            }],
        }],
        "cluster_manager": {"clusters": [{
            "name": "backend", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": f"127.0.0.1:{upstream_port}"}], **(cluster or {})}]},
    }


@pytest.fixture
def h2_proxy(start_mosn: Callable[..., Any], h2_engine: str) -> Callable[..., tuple[int, Any]]:
    """Start mosn proxying to an upstream port, on the ``h2_engine`` under test;
    returns (listener port, mosn)."""
    def start(upstream_port: int, **kwargs: Any) -> tuple[int, Any]:
        port = free_port()
        kwargs["extend_config"] = with_engine(kwargs.get("extend_config"), h2_engine)
        mosn = start_mosn(proxy_config(port, upstream_port, **kwargs))
        return port, mosn
    return start
