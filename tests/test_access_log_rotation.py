"""Access-log rotation under a running mosn: ``logrotate``'s move-then-SIGUSR1 (with
workers) and MOSN's ``global_log_roller`` (by size, compressed), every line of
every request found in the files afterwards, none twice."""

from __future__ import annotations

import gzip
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from mosn.config import ConfigError, validate
from mosn.config.logroller import Roller, parse_roller
from mosn.observability.roller import next_rotation

DEADLINE = 30.0
"""Seconds to wait for a condition on a loaded machine."""


def config(port: int, log: Path, roller: str = "") -> dict[str, Any]:
    server: dict[str, Any] = {
        "graceful_timeout": "2s",
        "routers": [{"router_config_name": "r", "virtual_hosts": [{
            "domains": ["*"], "routers": [{"match": {"prefix": "/"},
                                           "direct_response": {"status": 200}}]}]}],
        "listeners": [{"name": "web", "address": f"127.0.0.1:{port}",
                       "access_logs": [{"log_path": str(log),
                                        "log_format": "%request_header_x-n% "
                                                      "%request_header_x-pad%"}],
                       "filter_chains": [{"filters": [{"type": "proxy", "config": {
                           "downstream_protocol": "Http1", "router_config_name": "r"}}]}]}],
    }
    if roller:
        server["global_log_roller"] = roller
    return {"servers": [server], "cluster_manager": {"clusters": []}}


def send(port: int, numbers: range, pad: str = "-") -> None:
    with httpx.Client(timeout=10) as client:
        for i in numbers:  # a connection each (closed after it): with workers, both serve
            r = client.get(f"http://127.0.0.1:{port}/", headers={
                "x-n": str(i), "x-pad": pad, "connection": "close"})
            assert r.status_code == 200


def numbers_in(*files: Path) -> list[int]:
    found = []
    for f in files:
        data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        found += [int(line.split(b" ", 1)[0]) for line in data.splitlines()]
    return found


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def tree(pid: int) -> list[int]:
    """``pid`` and its children (the workers)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def holders(pids: list[int], path: Path) -> list[int]:
    """The processes among ``pids`` with ``path`` open."""
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == str(path):
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


def test_logrotate_move_then_sigusr1_loses_no_line(start_mosn, tmp_path):
    log, moved = tmp_path / "access.log", tmp_path / "access.log.1"
    port = free_port()
    mosn = start_mosn(config(port, log), "--workers", "2")
    processes = tree(mosn.proc.pid)
    assert len(processes) == 3  # the parent and two workers
    send(port, range(0, 100))
    os.rename(log, moved)  # logrotate: move, then signal
    send(port, range(100, 150))  # still written, to the moved file
    mosn.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: not holders(processes, moved), "a process still writes the moved file")
    assert log.exists()
    send(port, range(150, 250))
    assert mosn.stop() == 0  # queued lines are written before exit
    assert sorted(numbers_in(moved, log)) == list(range(250))
    assert set(numbers_in(log)) >= set(range(150, 250))  # the reopened file
    assert "still writing" not in mosn.log_path.read_text()


def test_sigusr1_without_a_move_keeps_writing_the_same_file(start_mosn, tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    mosn = start_mosn(config(port, log))
    send(port, range(0, 5))
    mosn.proc.send_signal(signal.SIGUSR1)
    send(port, range(5, 10))
    assert mosn.stop() == 0
    assert numbers_in(log) == list(range(10))


def test_global_log_roller_by_size_moves_compresses_and_loses_no_line(start_mosn, tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    mosn = start_mosn(config(port, log, "size=1 keep=10 compress=on"))
    pad = "p" * 8000  # 128 lines make a MB
    send(port, range(0, 200), pad)
    wait_for(lambda: list(tmp_path.glob("access-*.log.gz")), "no compressed rotated log")
    send(port, range(200, 220), pad)
    assert mosn.stop() == 0
    rotated = sorted(tmp_path.glob("access-*.log*"))
    assert all(p.suffix == ".gz" for p in rotated), rotated  # MOSN's compress=on
    assert sorted(numbers_in(*rotated, log)) == list(range(220))
    assert set(numbers_in(log)) >= set(range(200, 220))


def test_roller_settings_are_mosn_s():
    assert parse_roller("size=100 age=10 keep=10 compress=off") == Roller(
        size_mb=100, age_days=10, keep=10, compress=False)
    assert parse_roller("time=48").time_hours == 24  # MOSN's cap
    for bad, why in [("size=big", "a whole number"), ("sise=1", "not a roller setting"),
                     ("compress=yes", "on or off"), ("time", "key=value")]:
        with pytest.raises(ValueError, match=why):
            parse_roller(bad)


def test_a_bad_roller_is_refused_with_its_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        validate(config(free_port(), tmp_path / "a.log", "keep=ten"))
    assert info.value.errors == ["servers[0].global_log_roller: keep=ten: a whole number"]


def test_time_rotation_falls_on_local_hour_multiples():
    local_noon = time.mktime((2024, 5, 1, 12, 30, 15, 0, 0, -1))
    assert next_rotation(local_noon, 1) == time.mktime((2024, 5, 1, 13, 0, 0, 0, 0, -1))
    assert next_rotation(local_noon, 5) == time.mktime((2024, 5, 1, 15, 0, 0, 0, 0, -1))
    assert next_rotation(local_noon, 24) == time.mktime((2024, 5, 2, 0, 0, 0, 0, 0, -1))
    assert next_rotation(local_noon, 7) == time.mktime((2024, 5, 1, 14, 0, 0, 0, 0, -1))
