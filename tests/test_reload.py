"""Config reload on SIGHUP against a real mosn with workers: the new config served on
the same listening sockets, requests in flight finished by the old workers, and the
stats (counters and histograms) carried over by name, nothing lost or doubled."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx
import yaml

from conftest import free_port
from test_stats import http_config, http_upstream  # noqa: F401 (a fixture)
from mosn.observability.stats import StatsStore
from mosn.testing.process import MosnProcess

GRACEFUL_TIMEOUT_S = 5.0
"""Longer than the request held in flight, so the old worker finishes it."""
GRACEFUL_TIMEOUT = f"{GRACEFUL_TIMEOUT_S:g}s"
IN_FLIGHT_DELAY = 1.0
"""Seconds the upstream holds the request in flight across the reload."""
BEFORE = 10
"""Requests sent before the reload."""
RELOAD_TIMEOUT = 10.0
"""Seconds for a reload to be served (forking the new workers takes well under one)."""
RELOADED = "reloaded\n"
POLL_INTERVAL = 0.05
"""Seconds between requests asking whether the new config is served."""
AFTER_RELOAD = 0.2
"""Seconds the looping client goes on against the new workers."""


def served_config(port: int, upstream: int) -> dict[str, Any]:
    config = http_config(port, upstream)
    config["servers"][0]["graceful_timeout"] = GRACEFUL_TIMEOUT
    config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"].append(
        {"match": {"prefix": "/delay/"}, "route": {"cluster_name": "backend"}})
    return config


def rewrite(mosn: MosnProcess, change: Any) -> None:
    config = yaml.safe_load(mosn.config_path.read_text())
    change(config)
    mosn.config_path.write_text(yaml.safe_dump(config))


def get(url: str) -> httpx.Response:
    """One request on a connection of its own (so each is accepted anew)."""
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as c:
        return c.get(url)


def reloaded_config(config: dict[str, Any], second_port: int) -> None:
    server = config["servers"][0]
    routes = server["routers"][0]["virtual_hosts"][0]["routers"]
    routes[0] = {"match": {"prefix": "/status/"},
                 "direct_response": {"status": 200, "body": RELOADED}}
    second = {**server["listeners"][0], "name": "second",
              "address": f"127.0.0.1:{second_port}"}
    server["listeners"].append(second)


def test_reload_serves_the_new_config_and_keeps_the_stats(start_mosn, http_upstream):  # noqa: F811
    port, second_port = free_port(), free_port()
    mosn = start_mosn(served_config(port, http_upstream), "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    for _ in range(BEFORE):
        assert get(f"{url}/status/200").text == "status\n"
    in_flight: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: in_flight.append(
        get(f"{url}/delay/{IN_FLIGHT_DELAY}")), daemon=True)
    holder.start()
    assert mosn.wait_stat("listener.http.downstream_rq_active", 1)[
        "listener.http.downstream_rq_active"] == 1

    looped: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                looped.append(get(f"{url}/status/200").status_code)
            except httpx.HTTPError as exc:
                errors.append(exc)

    looper = threading.Thread(target=loop, daemon=True)
    looper.start()
    try:
        rewrite(mosn, lambda config: reloaded_config(config, second_port))
        os.kill(mosn.proc.pid, signal.SIGHUP)
        polls = 0
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while True:
            polls += 1
            if get(f"{url}/status/200").text == RELOADED:
                break
            assert time.monotonic() < deadline, mosn.output()
            time.sleep(POLL_INTERVAL)
        holder.join()
        time.sleep(AFTER_RELOAD)
    finally:
        stop.set()
    looper.join()

    assert errors == [], errors  # the port accepted throughout
    assert set(looped) == {200}
    assert [r.status_code for r in in_flight] == [200]  # finished by its old worker
    assert get(f"http://127.0.0.1:{second_port}/status/200").text == RELOADED
    while "their counters and histograms kept" not in mosn.output():
        assert time.monotonic() < deadline + GRACEFUL_TIMEOUT_S, mosn.output()
        time.sleep(0.1)
    total = BEFORE + 1 + len(looped) + polls
    stats = mosn.wait_stat("listener.http.downstream_rq_total", total)
    assert stats["listener.http.downstream_rq_total"] == total
    assert stats["listener.http.downstream_rq_active"] == 0
    assert stats["listener.second.downstream_rq_total"] == 1
    assert stats["server.reload_success"] == 1
    assert stats["server.reload_failed"] == 0
    hist = mosn.admin("/stats?format=json").json()["histograms"]
    assert hist["listener.http.downstream_rq_time"]["count"] == total
    assert "config reloaded" in mosn.output()


def test_invalid_config_keeps_the_old_one(start_mosn, http_upstream):  # noqa: F811
    port = free_port()
    mosn = start_mosn(served_config(port, http_upstream), "--workers", "2")

    def break_it(config: dict[str, Any]) -> None:
        config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["type"] = "nope"

    rewrite(mosn, break_it)
    os.kill(mosn.proc.pid, signal.SIGHUP)
    stats = mosn.wait_stat("server.reload_failed", 1)
    assert stats["server.reload_failed"] == 1
    assert stats["server.reload_success"] == 0
    refused = [line for line in mosn.output().splitlines() if "reload refused" in line]
    assert refused and all(" ERROR " in line for line in refused)
    assert any("servers[0].listeners[0].filter_chains[0].filters[0].type" in line
               for line in refused), refused
    assert get(f"http://127.0.0.1:{port}/status/201").status_code == 201


def test_a_new_store_follows_then_keeps_counters_not_gauges():
    old, new = StatsStore(), StatsStore()
    for store in (old, new):
        store.scope("listener.http", ("downstream_rq_total", "downstream_rq_active"))
        store.histogram("listener.http.downstream_rq_time")
    old.slot_scopes("cluster.backend.host", ("rq_total",), 1)[0]  # a host took it
    new.slot_scopes("cluster.backend.host", ("rq_total",), 1)[0]
    old.allocate(1)
    new.allocate(1)
    assert old.values is not None and new.values is not None
    old.values[0], old.values[1] = 5, 2  # requests counted; requests still open
    old.values[2] += 5  # the lowest bucket
    old.values[len(old.names) - 1] = 7  # the old host slot's requests
    new.follow(old)
    new.values[0] += 1
    live = new.snapshot()
    assert (live["listener.http.downstream_rq_total"], live["listener.http.downstream_rq_active"]
            ) == (6, 2)  # the old workers' open requests shown while they drain
    new.release(old)
    old.values[0] += 100  # read no more
    kept = new.snapshot()
    assert kept["listener.http.downstream_rq_total"] == 6
    assert kept["listener.http.downstream_rq_active"] == 0
    assert new.histogram_totals()["listener.http.downstream_rq_time"]["count"] == 5
    assert new.total(len(new.names) - 1) == 0  # a host slot is not carried
