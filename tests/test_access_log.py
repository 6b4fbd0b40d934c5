"""Access logs end to end: mosn with a listener's ``access_logs``, httpx and the mock
bolt client as clients, uvicorn (examples/http_upstream.py) and the mock bolt server
as backends; the log file read back."""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest

from conftest import ROOT, free_port
from mosn.config.loader import ConfigError, validate
from mosn.observability.accesslog import (
    DEFAULT_FORMAT,
    MAX_PENDING_LINES,
    AccessLog,
    LogWriter,
    compile_format,
    go_duration,
    open_log,
)
from mosn.observability.stats import StatsStore
from mosn.testing.mock import call
from mosn.testing.process import rpc_proxy_config, serving
from test_upstream_e2e import http_config as proxy_config

HTTP_UPSTREAM = ROOT / "examples" / "http_upstream.py"
LINE_WAIT = 5.0
"""Seconds to wait for lines: the writer flushes every second."""


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    with serving(lambda port: [sys.executable, str(HTTP_UPSTREAM), "--port", str(port),
                               "--name", "blue"]) as port:
        yield port


def http_config(port: int, backend: int, access_logs: list[dict[str, Any]],
                **tracing: Any) -> dict[str, Any]:
    """A listener with these routes: /slow/ (a 0.3 s timeout), /dead/ (a cluster whose
    host refuses connections), /empty/ (a cluster without hosts), /ok/ (the backend)
    and /retry/KEY (one retry of a 503); /none/ matches nothing."""
    dead = free_port()
    routes = [
        {"match": {"prefix": "/slow/"}, "route": {"cluster_name": "backend", "timeout": "0.3s",
                                                  "prefix_rewrite": "/delay/"}},
        {"match": {"prefix": "/dead/"}, "route": {"cluster_name": "dead"}},
        {"match": {"prefix": "/empty/"}, "route": {"cluster_name": "empty"}},
        {"match": {"prefix": "/ok/"}, "route": {"cluster_name": "backend", "prefix_rewrite": "/"}},
        {"match": {"prefix": "/retry/"}, "route": {
            "cluster_name": "backend", "prefix_rewrite": "/fail-then-ok/",
            "retry_policy": {"retry_on": "5xx", "num_retries": 1}}},
    ]
    config = proxy_config(port, [
        {"name": "backend", "hosts": [{"address": f"127.0.0.1:{backend}"}]},
        {"name": "dead", "hosts": [{"address": f"127.0.0.1:{dead}"}]},
        {"name": "empty", "hosts": []},
    ], routes)
    config["servers"][0]["listeners"][0]["access_logs"] = access_logs
    if tracing:
        config["tracing"] = tracing
    return config


def read_lines(path: Path, count: int, timeout: float = LINE_WAIT) -> list[str]:
    """The file's lines once it has ``count`` (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


# -- HTTP ------------------------------------------------------------------------------------

TEMPLATE = ("%response_code% %response_flag% %bytes_sent% %bytes_received% %upstream_host% "
            "%upstream_cluster% %request_method% %request_path% %protocol% "
            "%request_header_x-test% %response_header_x-upstream% %duration%")


def test_lines_equal_requests_with_codes_flags_bytes_and_host(start_mosn, backend, tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    start_mosn(http_config(port, backend, [{"log_path": str(log), "log_format": TEMPLATE}]))
    expected = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for i in range(3):
            r = client.get(f"/ok/bytes/{1000 + i}", headers={"x-test": f"t{i}"})
            assert r.status_code == 200 and len(r.content) == 1000 + i
            expected.append(("200", "-", str(1000 + i), "0", f"127.0.0.1:{backend}", "backend",
                             "GET", f"/bytes/{1000 + i}", "Http1", f"t{i}", "blue"))
        r = client.post("/ok/upload", content=b"x" * 123)
        assert r.status_code == 200
        expected.append(("200", "-", str(len(r.content)), "123", f"127.0.0.1:{backend}",
                         "backend", "POST", "/upload", "Http1", "-", "blue"))
        assert client.get("/none/").status_code == 404
        expected.append(("404", "NR", "9", "0", "-", "-", "GET", "/none/", "Http1", "-", "-"))
        assert client.get("/empty/").status_code == 503
        expected.append(("503", "UH", None, "0", "-", "empty", "GET", "/empty/", "Http1", "-",
                         "-"))
        assert client.get("/dead/").status_code == 503
        expected.append(("503", "UF", None, "0", None, "dead", "GET", "/dead/", "Http1", "-",
                         "-"))
        assert client.get("/slow/2").status_code == 504
        expected.append(("504", "UT", None, "0", f"127.0.0.1:{backend}", "backend", "GET",
                         "/delay/2", "Http1", "-", "-"))
    lines = read_lines(log, len(expected))
    time.sleep(1.2)  # one more flush: nothing beyond one line per request
    lines = log.read_text().splitlines()
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected):
        fields = line.split(" ")
        assert len(fields) == 12, line
        for got, value in zip(fields, want):
            if value is not None:
                assert got == value, line
        assert re.fullmatch(r"[0-9.]+(ns|µs|ms|s)", fields[11]), line
    slow = lines[-1].split(" ")
    assert slow[11].endswith("ms") and float(slow[11][:-2]) >= 300  # the route timeout


def test_default_format_is_mosns(start_mosn, backend, tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    start_mosn(http_config(port, backend, [{"log_path": str(log)}]))
    with httpx.Client(timeout=5) as client:
        assert client.get(f"http://127.0.0.1:{port}/ok/bytes/10").status_code == 200
    (line,) = read_lines(log, 1)
    fields = line.split(" ")
    assert len(fields) == len(DEFAULT_FORMAT.split(" ")) + 1  # start_time has a space
    day, clock = fields[0], fields[1]
    assert re.fullmatch(r"\d{4}/\d\d/\d\d", day) and re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", clock)
    assert fields[4:11] == ["10", "0", "Http1", "200", fields[8], "-", "200"]
    assert all(re.fullmatch(r"[0-9.]+(ns|µs|ms|s)", f) for f in (fields[2], fields[3], fields[8]))
    assert fields[12] == f"127.0.0.1:{port}"
    assert fields[14] == f"127.0.0.1:{backend}"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", fields[11])  # the upstream connection's side


def test_json_lines_parse_with_typed_values(start_mosn, backend, tmp_path):
    log = tmp_path / "access.json"
    custom = tmp_path / "custom.json"
    port = free_port()
    start_mosn(http_config(port, backend, [
        {"log_path": str(log), "log_format": "json"},
        {"log_path": str(custom), "json_format": {
            "code": "%response_code%", "id": "%request_header_x-request-id%",
            "route": "%request_method% %request_path%", "took": "%duration%"}},
    ]))
    with httpx.Client(timeout=5) as client:
        client.get(f"http://127.0.0.1:{port}/ok/bytes/7", headers={"x-request-id": "abc"})
        client.get(f"http://127.0.0.1:{port}/none/")
    records = [json.loads(line) for line in read_lines(log, 2)]
    assert [r["response_code"] for r in records] == [200, 404]
    assert [r["response_flag"] for r in records] == [None, "NR"]
    assert records[0]["bytes_sent"] == 7 and records[0]["upstream_host"] == f"127.0.0.1:{backend}"
    assert isinstance(records[0]["duration"], float) and records[0]["duration"] > 0
    assert records[1]["request_received_duration"] is None  # never went upstream
    ours = [json.loads(line) for line in read_lines(custom, 2)]
    assert ours[0]["code"] == 200 and ours[0]["id"] == "abc"
    assert ours[0]["route"] == "GET /bytes/7" and ours[1]["route"] == "GET /none/"
    assert isinstance(ours[0]["took"], float)


def test_mosn_request_variables_and_the_upstream_failure_reason(start_mosn, backend, tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    start_mosn(http_config(port, backend, [{"log_path": str(log), "log_format": (
        "%request_scheme% %request_uri% %upstream_transport_failure_reason%")}]))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        assert client.get("/ok/echo?a=1").status_code == 200
        assert client.get("/dead/").status_code == 503
    assert read_lines(log, 2) == ["http /echo?a=1 -", "http /dead/ connection_failure"]


def test_stdout_log(start_mosn, backend, tmp_path):
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [
        {"log_path": "stdout", "log_format": "ACCESS %response_code% %request_path%"}]))
    with httpx.Client(timeout=5) as client:
        client.get(f"http://127.0.0.1:{port}/ok/x")
    deadline = time.monotonic() + LINE_WAIT
    while "ACCESS 200 /x" not in mosn.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "ACCESS 200 /x\n" in mosn.output()


def test_lines_written_on_sigterm(start_mosn, backend, tmp_path):
    """A request still in flight when SIGTERM comes finishes during the drain; its
    line is written before the process exits."""
    log = tmp_path / "access.log"
    port = free_port()
    mosn = start_mosn(http_config(port, backend, [
        {"log_path": str(log), "log_format": "%response_code% %request_path%"}]))
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(httpx.get, f"http://127.0.0.1:{port}/ok/delay/0.5",
                           headers={"connection": "close"}, timeout=5)
        stats = mosn.wait_stat("listener.http.downstream_rq_active", 1)  # it is in flight
        assert stats["listener.http.downstream_rq_active"] == 1
        assert not log.read_text()
        mosn.proc.terminate()
        assert late.result().status_code == 200
        assert mosn.proc.wait(10) == 0
    assert log.read_text() == "200 /delay/0.5\n"


def test_workers_write_whole_lines(start_mosn, backend, tmp_path):
    log = tmp_path / "access.log"
    port = free_port()
    start_mosn(http_config(port, backend, [{"log_path": str(log), "json_format": {
        "n": "%request_header_x-n%", "pad": "%request_header_x-pad%"}}]), "--workers", "2")
    count, pad = 300, "p" * 3000  # lines of 3 KiB: a torn write would show

    def one(i: int) -> int:  # a connection each (closed after it): both workers serve
        return client.get(f"http://127.0.0.1:{port}/ok/", headers={
            "x-n": str(i), "x-pad": pad, "connection": "close"}).status_code

    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(16) as pool:
        assert set(pool.map(one, range(count))) == {200}
    lines = read_lines(log, count)
    records = [json.loads(line) for line in lines]  # every line whole
    assert sorted(int(r["n"]) for r in records) == list(range(count))
    assert all(r["pad"] == pad for r in records)


# -- RPC -------------------------------------------------------------------------------------


def test_bolt_requests_logged(start_mosn, mock_rpc_server, tmp_path):
    from mosn_sofarpc import BoltCodec

    log = tmp_path / "access.log"
    codec = BoltCodec()
    server = mock_rpc_server(codec, response_bytes=64)
    port = free_port()
    config = rpc_proxy_config(port, "bolt", [server.address])
    config["servers"][0]["listeners"][0]["access_logs"] = [{"log_path": str(log), "log_format": (
        "%protocol% %response_code% %request_header_service% %request_method% "
        "%bytes_received% %bytes_sent% %upstream_host%")}]
    start_mosn(config)
    results = call(codec, port, service="com.example.Echo:1.0", method="hello", body=b"b" * 10,
                   count=5)
    assert all(r.ok for r in results)
    request_size = len(codec.request("com.example.Echo:1.0", "hello", b"b" * 10))
    lines = read_lines(log, 5)
    assert len(lines) == 5
    for line in lines:
        protocol, code, service, method, received, sent, host = line.split(" ")
        assert (protocol, code, service, method) == ("bolt", "200", "com.example.Echo:1.0",
                                                     "hello")
        assert int(received) == request_size and int(sent) > 64
        assert host == server.address


# -- config ----------------------------------------------------------------------------------


def test_unknown_variable_refused_with_its_path(backend):
    raw = http_config(free_port(), backend, [
        {"log_path": "/tmp/x.log", "log_format": "%start_time% %no_such_thing%"},
        {"log_path": "/tmp/y.log", "json_format": {"a": "%response_code%", "b": "%bogus%"}}])
    with pytest.raises(ConfigError) as info:
        validate(raw)
    errors = info.value.errors
    assert any(e.startswith("servers[0].listeners[0].access_logs[0].log_format:")
               and "%no_such_thing%" in e for e in errors), errors
    assert any(e.startswith("servers[0].listeners[0].access_logs[1].json_format:")
               and "%bogus%" in e for e in errors), errors


def test_unwritable_log_refused_at_start(start_mosn, backend, tmp_path):
    config = http_config(free_port(), backend, [
        {"log_path": str(tmp_path / "missing-dir" / "access.log")}])
    with pytest.raises(RuntimeError, match=r"access_logs\[0\]\.log_path: cannot open"):
        start_mosn(config)


def test_go_durations():
    assert [go_duration(s) for s in (0, 5e-7, 0.000123, 0.0012345, 1.5, 90.25, 3725)] == [
        "0s", "500ns", "123µs", "1.2345ms", "1.5s", "1m30.25s", "1h2m5s"]


# -- TCP -------------------------------------------------------------------------------------


def test_tcp_sessions_logged(start_mosn, echo_server, tmp_path):
    from conftest import tcp_proxy_config

    log = tmp_path / "access.log"
    port, dead_port = free_port(), free_port()
    config = tcp_proxy_config(port, [f"127.0.0.1:{echo_server}"], listener={"access_logs": [{
        "log_path": str(log), "log_format": ("%protocol% %bytes_received% %bytes_sent% "
                                             "%upstream_host% %response_flag% "
                                             "%downstream_local_address% %upstream_local_address%")}]})
    dead = tcp_proxy_config(dead_port, [f"127.0.0.1:{free_port()}"])
    config["servers"][0]["listeners"].append({**dead["servers"][0]["listeners"][0],
                                              "name": "dead", "access_logs": [{
                                                  "log_path": str(log),
                                                  "log_format": "%protocol% %response_flag%"}]})
    config["servers"][0]["listeners"][1]["filter_chains"][0]["filters"][0]["config"][
        "cluster"] = "dead"
    config["cluster_manager"]["clusters"].append({**dead["cluster_manager"]["clusters"][0],
                                                  "name": "dead"})
    start_mosn(config)
    for size in (5, 70000):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"z" * size)
            s.shutdown(socket.SHUT_WR)
            echoed = b""
            while chunk := s.recv(65536):
                echoed += chunk
            assert len(echoed) == size
    with socket.create_connection(("127.0.0.1", dead_port), timeout=5) as s:
        assert s.recv(1) == b""  # closed: nothing to connect to
    lines = read_lines(log, 3)
    assert len(lines) == 3 and "TCP UF" in lines
    sessions = sorted((line for line in lines if line != "TCP UF"),
                      key=lambda line: int(line.split(" ")[1]))
    for line, size in zip(sessions, (5, 70000)):
        protocol, received, sent, host, flag, local, upstream_local = line.split(" ")
        assert (protocol, int(received), int(sent)) == ("TCP", size, size)
        assert (host, flag, local) == (f"127.0.0.1:{echo_server}", "-", f"127.0.0.1:{port}")
        assert re.fullmatch(r"127\.0\.0\.1:\d+", upstream_local)


# -- the writer (pure logic over a real file) ----------------------------------------------


class HeldWriter(LogWriter):
    """A writer whose thread never starts: lines stay queued until ``flush``."""

    def _start(self) -> None:
        pass


def test_a_full_queue_drops_and_counts_lines(tmp_path, caplog):
    path = tmp_path / "access.log"
    writer = HeldWriter(str(path), open_log(str(path)))
    for i in range(MAX_PENDING_LINES + 7):
        writer.append(f"{i}\n")
    assert writer.dropped == 7 and len(writer.queue) == MAX_PENDING_LINES
    with caplog.at_level(logging.WARNING, logger="mosn.accesslog"):
        writer.close()
    lines = path.read_text().splitlines()
    assert lines == [str(i) for i in range(MAX_PENDING_LINES)]  # the oldest kept, in order
    assert f"{path}: 7 lines dropped" in caplog.text
    writer.append("again\n")  # room again once written
    writer.flush()
    assert path.read_text().endswith("again\n") and writer.dropped == 7


def test_dropped_lines_are_counted_in_the_listener_stat(tmp_path):
    path = tmp_path / "access.log"
    store = StatsStore()
    dropped = store.register("listener.http.access_log_dropped")
    store.allocate(1)
    writer = HeldWriter(str(path), open_log(str(path)))
    access_log = AccessLog(compile_format("%response_code%"), writer, store, dropped)
    stream = SimpleNamespace(response_code=200)
    for _ in range(MAX_PENDING_LINES + 3):
        access_log.on_stream_end(stream)  # type: ignore[arg-type]
    assert store.snapshot()["listener.http.access_log_dropped"] == 3
    writer.close()
