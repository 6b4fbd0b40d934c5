"""A config reload with one process, applied in place through the listener, cluster
and route managers: SIGHUP and ``POST /reload`` against a real mosn, real clients
(httpx on one keep-alive connection, a client opening a connection per request), and
the changes that take each path (docs/upgrade.md)."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from typing import Any, Callable

import httpx
import pytest
import yaml

from conftest import free_port
from test_stats import http_config, http_upstream  # noqa: F401 (a fixture)
from mosn.config.routers import parse_routers
from mosn.router import RouteRequest, Routers
from mosn.testing.process import MosnProcess

RELOAD_TIMEOUT = 60.0
"""Seconds for a reload to be applied (in place it takes milliseconds; a loaded
machine starts and runs the clients slowly)."""
POLL_INTERVAL = 0.05
"""Seconds between looks at whether the reload is applied."""
RELOADED = "reloaded\n"


def rewrite(mosn: MosnProcess, change: Callable[[dict[str, Any]], None]) -> None:
    config = yaml.safe_load(mosn.config_path.read_text())
    change(config)
    mosn.config_path.write_text(yaml.safe_dump(config))


def post(mosn: MosnProcess, path: str) -> tuple[int, str]:
    request = urllib.request.Request(mosn.url(path), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def direct_status(config: dict[str, Any]) -> None:
    """``/status/`` answered by mosn itself from now on."""
    routes = config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"]
    routes[0] = {"match": {"prefix": "/status/"},
                 "direct_response": {"status": 200, "body": RELOADED}}


def wait_for(condition: Callable[[], bool], what: str, mosn: MosnProcess) -> None:
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"{what}\n{mosn.output()}"
        time.sleep(POLL_INTERVAL)


class Looper:
    """A client sending requests in a loop until stopped: on one keep-alive connection
    (``keep_alive``), else on a new connection each time."""

    def __init__(self, url: str, keep_alive: bool) -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if keep_alive else 0,
                              max_connections=1)
        self.client = httpx.Client(limits=limits, timeout=10)
        self.url = url
        self.bodies: list[str] = []
        self.errors: list[Exception] = []
        self.ports: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self.client.stream("GET", self.url) as r:
                    stream = r.extensions["network_stream"]
                    self.ports.add(stream.get_extra_info("client_addr")[1])
                    self.bodies.append(r.read().decode())
            except httpx.HTTPError as exc:
                self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


def under_load(start_mosn: Any, upstream: int) -> tuple[MosnProcess, Looper, Looper]:
    """A mosn serving ``http_config`` and two looping clients (keep-alive, fresh) that
    have had a few answers."""
    port = free_port()
    mosn = start_mosn(http_config(port, upstream))
    kept = Looper(f"http://127.0.0.1:{port}/status/200", keep_alive=True)
    fresh = Looper(f"http://127.0.0.1:{port}/status/200", keep_alive=False)
    wait_for(lambda: len(kept.bodies) > 5 and len(fresh.bodies) > 5, "traffic", mosn)
    return mosn, kept, fresh


def test_sighup_applies_routes_in_place_keeping_connections(start_mosn, http_upstream):  # noqa: F811
    mosn, kept, fresh = under_load(start_mosn, http_upstream)
    try:
        rewrite(mosn, direct_status)
        os.kill(mosn.proc.pid, signal.SIGHUP)
        wait_for(lambda: RELOADED in kept.bodies[-1:] and RELOADED in fresh.bodies[-1:],
                 "the new routes served", mosn)
        served = len(kept.bodies)
        wait_for(lambda: len(kept.bodies) > served + 5, "more traffic", mosn)
    finally:
        kept.stop()
        fresh.stop()
    assert kept.errors == [] and fresh.errors == []
    assert set(kept.bodies) == set(fresh.bodies) == {"status\n", RELOADED}
    assert len(kept.ports) == 1  # the keep-alive client kept its one connection
    stats = mosn.stats()
    assert stats["server.reload_success"] == 1
    assert stats["server.reload_in_place"] == 1
    assert stats["server.reload_failed"] == 0
    assert "config reloaded in place" in mosn.output()


def test_changed_listener_takes_over_on_the_same_socket(start_mosn, http_upstream):  # noqa: F811
    mosn, kept, fresh = under_load(start_mosn, http_upstream)
    try:
        def change(config: dict[str, Any]) -> None:
            config["servers"][0]["listeners"][0]["connection_idle_timeout"] = "30s"
            direct_status(config)

        rewrite(mosn, change)
        status, text = post(mosn, "/reload")
        assert status == 200, text
        assert "updated: " in text and "listener http" in text
        wait_for(lambda: RELOADED in fresh.bodies[-1:], "the new listener served", mosn)
        wait_for(lambda: "connections move or drain" in mosn.output(),
                 "the old listener retired", mosn)
        served = len(kept.bodies)
        wait_for(lambda: len(kept.bodies) > served + 20, "more traffic", mosn)
    finally:
        fresh.stop()
        kept.stop()
    assert fresh.errors == [] and kept.errors == []  # no connection attempt refused
    # The keep-alive connection belonged to the old listener: it moved to the new one
    # between two requests, and the client kept it.
    assert len(kept.ports) == 1
    assert mosn.stats()["server.reload_in_place"] == 1


def test_clusters_and_listeners_added_and_removed(start_mosn, http_upstream):  # noqa: F811
    port, second = free_port(), free_port()
    config = http_config(port, http_upstream)
    mosn = start_mosn(config)

    def add(config: dict[str, Any]) -> None:
        server = config["servers"][0]
        routes = server["routers"][0]["virtual_hosts"][0]["routers"]
        routes.insert(0, {"match": {"prefix": "/other/"},
                          "route": {"cluster_name": "other", "prefix_rewrite": "/status/"}})
        config["cluster_manager"]["clusters"].append(
            {"name": "other", "hosts": [{"address": f"127.0.0.1:{http_upstream}"}]})
        server["listeners"].append({**server["listeners"][0], "name": "second",
                                    "address": f"127.0.0.1:{second}"})

    rewrite(mosn, add)
    status, text = post(mosn, "/reload")
    assert status == 200, text
    assert "added: cluster other, listener second" in text
    assert httpx.get(f"http://127.0.0.1:{second}/other/201").status_code == 201
    assert httpx.get(f"http://127.0.0.1:{port}/other/202").status_code == 202
    stats = mosn.stats()
    assert stats["cluster.other.upstream_rq_total"] == 2
    assert stats["listener.second.downstream_rq_total"] == 1

    def remove(config: dict[str, Any]) -> None:
        server = config["servers"][0]
        server["listeners"].pop()
        server["routers"][0]["virtual_hosts"][0]["routers"].pop(0)
        config["cluster_manager"]["clusters"].pop()

    rewrite(mosn, remove)
    status, text = post(mosn, "/reload")
    assert status == 200, text
    assert "removed: listener second, cluster other" in text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{second}/status/200")
    assert httpx.get(f"http://127.0.0.1:{port}/other/200").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").status_code == 200
    stats = mosn.stats()
    assert stats["cluster.other.upstream_rq_total"] == 2  # its counters stay
    assert stats["server.reload_in_place"] == 2


def test_a_bad_config_or_port_keeps_the_old_one(start_mosn, http_upstream):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, http_upstream))
    original = mosn.config_path.read_text()

    def break_it(config: dict[str, Any]) -> None:
        config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["type"] = "nope"
        direct_status(config)

    rewrite(mosn, break_it)
    status, text = post(mosn, "/reload")
    assert status == 400
    assert "servers[0].listeners[0].filter_chains[0].filters[0].type" in text

    taken = free_port()
    blocker = __import__("socket").create_server(("127.0.0.1", taken))
    try:
        def busy(config: dict[str, Any]) -> None:
            server = config["servers"][0]
            server["listeners"].append({**server["listeners"][0], "name": "busy",
                                        "address": f"127.0.0.1:{taken}"})
            direct_status(config)

        mosn.config_path.write_text(original)
        rewrite(mosn, busy)
        status, text = post(mosn, "/reload")
    finally:
        blocker.close()
    assert status == 400
    assert f"cannot listen on 127.0.0.1:{taken}" in text
    assert httpx.get(f"http://127.0.0.1:{port}/status/201").text == "status\n"  # the old routes
    stats = mosn.stats()
    assert stats["server.reload_failed"] == 2
    assert stats["server.reload_success"] == 0


def test_a_change_outside_the_managers_is_not_applied_in_place(start_mosn, http_upstream):  # noqa: F811
    port = free_port()
    mosn = start_mosn(http_config(port, http_upstream))

    def change(config: dict[str, Any]) -> None:
        config["servers"][0]["graceful_timeout"] = "7s"
        direct_status(config)

    rewrite(mosn, change)
    status, text = post(mosn, "/reload")
    assert status == 409
    assert "servers[0].graceful_timeout changed" in text
    assert httpx.get(f"http://127.0.0.1:{port}/status/200").text == "status\n"


def _routers(body: str) -> list[Any]:
    return parse_routers([{"router_config_name": "r", "virtual_hosts": [{
        "name": "v", "domains": ["*"], "routers": [{
            "match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}]}]}])


def test_route_manager_updates_a_table_in_place():
    routers = Routers(_routers("one"))
    table = routers["r"]
    request = RouteRequest(method="GET", path="/x", host="h", headers={})
    assert table.route(request).direct_response.body == "one"
    assert routers.add_or_update(_routers("one")[0]) == "unchanged"
    assert routers.add_or_update(_routers("two")[0]) == "updated"
    assert routers["r"] is table  # what a listener holds sees the change
    assert table.route(request).direct_response.body == "two"
    assert routers.remove("r") and "r" not in routers
    assert not routers.remove("r")
