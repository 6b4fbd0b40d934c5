"""``mosn mock client``: requests with any installed codec, each response's status
printed; here bolt (mosn-plugin-sofarpc) against ``mosn mock server``, directly and
through mosn."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import free_port, stop, wait_for_port
from mosn.testing import MosnProcess, rpc_proxy_config

SERVICE = "com.example.EchoService:1.0"


def mosn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosn", *args], capture_output=True, text=True,
                          timeout=60)


def start_mock_server(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mosn", "mock", "server", "--protocol", "bolt",
                             "--listen", f"127.0.0.1:{port}", "--response-bytes", "10"],
                            stdout=subprocess.DEVNULL)


@pytest.fixture
def mock_server() -> Iterator[int]:
    port = free_port()
    proc = start_mock_server(port)
    wait_for_port(port)
    yield port
    stop(proc)


def test_each_response_status_is_printed(mock_server: int) -> None:
    done = mosn("mock", "client", "--protocol", "bolt", "--target", f"127.0.0.1:{mock_server}",
                "--service", SERVICE, "--count", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["request 1", "request 2", "request 3"]
    assert all("status 0 (http 200)" in line for line in lines[:3])
    assert lines[3] == "3 requests: 3 succeeded, 0 failed"


def test_json_output_and_concurrency(mock_server: int) -> None:
    done = mosn("mock", "client", "--protocol", "bolt", "--target", f"127.0.0.1:{mock_server}",
                "--service", SERVICE, "--count", "20", "--concurrency", "5", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 20 and all(r["ok"] and r["status"] == 0 for r in rows)
    assert sorted(r["request_id"] for r in rows) == list(range(1, 21))


def test_errors_through_mosn_are_printed_and_fail_the_exit_code(mock_server: int,
                                                                tmp_path: Path) -> None:
    port = free_port()
    proxy = MosnProcess(rpc_proxy_config(port, "bolt", [f"127.0.0.1:{mock_server}"],
                                         service="^com[.]example[.]"), tmp_path)
    try:
        ok = mosn("mock", "client", "--protocol", "bolt", "--target", f"127.0.0.1:{port}",
                  "--service", SERVICE, "--count", "2")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        no_route = mosn("mock", "client", "--protocol", "bolt", "--target", f"127.0.0.1:{port}",
                        "--service", "org.other.Service:1.0")
        assert no_route.returncode == 1
        assert "request 1: status 6 (http 500)" in no_route.stdout  # bolt NO_PROCESSOR
        assert "1 requests: 0 succeeded, 1 failed" in no_route.stdout
    finally:
        proxy.stop()


def test_wait_for_a_target_that_is_starting() -> None:
    port = free_port()
    client = subprocess.Popen([sys.executable, "-m", "mosn", "mock", "client", "--protocol",
                               "bolt", "--target", f"127.0.0.1:{port}", "--service", SERVICE,
                               "--wait", "20"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    server = start_mock_server(port)
    try:
        out, _ = client.communicate(timeout=30)
        assert client.returncode == 0, out
        assert "1 succeeded" in out
    finally:
        stop(server)


def test_nothing_listening_is_an_error() -> None:
    for command in (["mock", "client"], ["bench", "--duration", "1"]):
        done = mosn(*command, "--protocol", "bolt", "--target", f"127.0.0.1:{free_port()}",
                    "--service", SERVICE)
        assert done.returncode == 1, done.stderr
        assert "cannot connect" in done.stderr and "Traceback" not in done.stderr


def test_the_codec_config_comes_from_a_file(mock_server: int, tmp_path: Path) -> None:
    good = tmp_path / "bolt.yaml"
    good.write_text("max_frame_size: 65536\n")
    done = mosn("mock", "client", "--protocol", "bolt", "--protocol-config", str(good),
                "--target", f"127.0.0.1:{mock_server}", "--service", SERVICE)
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_frame_size: 10\n")
    refused = mosn("mock", "client", "--protocol", "bolt", "--protocol-config", str(bad),
                   "--target", f"127.0.0.1:{mock_server}", "--service", SERVICE)
    assert refused.returncode == 2
    assert "max_frame_size" in refused.stderr


def test_an_unknown_protocol_is_refused() -> None:
    done = mosn("mock", "client", "--protocol", "nope", "--target", "127.0.0.1:1",
                "--service", SERVICE)
    assert done.returncode == 2
    assert "no RPC codec named 'nope'" in done.stderr
