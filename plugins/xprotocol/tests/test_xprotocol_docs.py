"""docs/xprotocol.md as written: every YAML block loads (a whole config validates), each
protocol of "Four shapes, end to end" passes the conformance suite and carries traffic
from ``mosn mock client`` through mosn to ``mosn mock server``, as the page shows."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from mosn.config import validate
from mosn.rpc.tools import codec_named
from mosn.stream.types import MatchResult
from mosn.testing import CodecConformance, code_blocks, free_port, rpc_proxy_config, serving
from mosn_xprotocol import XProtocolConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "xprotocol.md"
BLOCKS = code_blocks(DOC)
EXAMPLES = {b.attrs["example"]: b for b in BLOCKS
            if b.language == "yaml" and "example" in b.attrs}
SHAPES = ("ordr", "kv", "line", "frmd")
SERVICE = "com.example.EchoService"
REPLY_SIZES = {"ordr": 12, "kv": 12, "line": 16, "frmd": 8 + 1 + len("com.example.Unknown") + 4}
"""Bytes of a no-route reply to a request for ``com.example.Unknown``."""


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load(EXAMPLES[name].text)


def codec(name: str) -> Any:
    return codec_named("xprotocol", config=example(name))


def test_the_page_shows_each_shape() -> None:
    assert set(SHAPES) <= set(EXAMPLES)
    assert all(EXAMPLES[name].attrs.get("file") == f"{name}.yaml" for name in SHAPES)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language == "yaml"],
                         ids=lambda b: b.attrs.get("example") or b.attrs.get("file") or
                         ",".join(sorted(b.flags)) or "yaml")
def test_every_yaml_block_loads(block) -> None:
    data = yaml.safe_load(block.text)
    if "validate" in block.flags or block.attrs.get("file") == "mosn.yaml":
        validate(data)
    elif "listeners" in block.flags:
        clusters = {f["config"].get(k) for lst in data for fc in lst["filter_chains"]
                    for f in fc["filters"] for k in ("cluster", "destination")}
        clusters |= {c for lst in data for fc in lst["filter_chains"] for f in fc["filters"]
                     for c in f["config"].get("clusters", [])}
        validate({"servers": [{"listeners": data}], "cluster_manager": {"clusters": [
            {"name": c, "hosts": [{"address": "127.0.0.1:1"}]} for c in sorted(clusters - {None})]}})
    elif "example" in block.attrs:
        XProtocolConfig.model_validate(data)
    else:
        pytest.fail(f"a YAML block the test does not know how to load: {block.text[:80]!r}")


def test_the_proxy_example_speaks_line() -> None:
    proxy = example("line-proxy")["servers"][0]["listeners"][0]["filter_chains"][0]
    assert proxy["filters"][0]["config"]["extend_config"]["xprotocol"] == example("line")


# -- the conformance suite on each shape -----------------------------------------------------


class TestOrdr(CodecConformance):
    service = SERVICE

    @pytest.fixture
    def codec(self) -> Any:
        return codec("ordr")

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return bytes.fromhex("4f52 03 00 00000009 00000000")


class TestKv(CodecConformance):
    service = SERVICE

    @pytest.fixture
    def codec(self) -> Any:
        return codec("kv")

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return b"KVH\0\0\0\0\x09\0\0\0\0"


class TestLine(CodecConformance):
    service = SERVICE
    bodies = (b"", b"x", b"hello, mesh", bytes(range(10)) + bytes(range(11, 256)))
    """Any bytes but the delimiter ``\\n`` (10)."""

    @pytest.fixture
    def codec(self) -> Any:
        return codec("line")

    @pytest.fixture
    def heartbeat(self) -> bytes:
        return b"P 00000009 000 \n"

    def test_matches_its_own_requests(self, codec) -> None:
        """Without a magic the protocol is never matched (a listener names it)."""
        assert codec.match(codec.request("s", "m", b"")) is MatchResult.NO_MATCH


class TestFrmd(CodecConformance):
    service = SERVICE

    @pytest.fixture
    def codec(self) -> Any:
        return codec("frmd")


# -- traffic through mosn, as the page shows -------------------------------------------------


def mosn(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosn", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def description(request, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.yaml"
    path.write_text(EXAMPLES[request.param].text)
    return path


@pytest.fixture
def backend(description: Path) -> Iterator[int]:
    with serving(lambda port: [sys.executable, "-m", "mosn", "mock", "server", "--protocol",
                               "xprotocol", "--protocol-config", str(description), "--listen",
                               f"127.0.0.1:{port}", "--response-bytes", "5"],
                 stdout=subprocess.DEVNULL) as port:
        yield port


def proxy_config(name: str, port: int, backend: int) -> dict[str, Any]:
    if name == "line":  # the page's own mosn.yaml
        text = EXAMPLES["line-proxy"].text
        text = text.replace("12200", str(port)).replace("12220", str(backend))
        return yaml.safe_load(text)
    return rpc_proxy_config(port, "xprotocol", [f"127.0.0.1:{backend}"],
                            service=f"^{SERVICE}$", extend_config={"xprotocol": example(name)})


@pytest.mark.parametrize("description", SHAPES, indirect=True)
def test_traffic_through_mosn(description: Path, backend: int, start_mosn) -> None:
    name = description.stem
    port = free_port()
    start_mosn(proxy_config(name, port, backend))
    tool = ["--protocol", "xprotocol", "--protocol-config", str(description),
            "--target", f"127.0.0.1:{port}"]
    done = mosn("mock", "client", *tool, "--service", SERVICE, "--count", "4", "--wait", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 requests: 4 succeeded, 0 failed" in done.stdout
    refused = mosn("mock", "client", *tool, "--service", "com.example.Unknown", "--json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    [reply] = [json.loads(line) for line in refused.stdout.splitlines()]
    no_route = codec(name).error_status(404, ())
    assert (reply["status"], reply["http_status"]) == (no_route, 404)
    # Only keys of the header are echoed: FRMD's service; the others' live in the body.
    assert reply["bytes"] == REPLY_SIZES[name]


@pytest.mark.parametrize("description", ["line"], indirect=True)
def test_bench_through_mosn(description: Path, backend: int, start_mosn) -> None:
    port = free_port()
    start_mosn(proxy_config("line", port, backend))
    done = mosn("bench", "--protocol", "xprotocol", "--protocol-config", str(description),
                "--target", f"127.0.0.1:{port}", "--service", SERVICE, "--connections", "4",
                "--duration", "1", "--warmup", "0.2", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["requests"] > 0 and result["errors"] == 0


def test_the_no_route_reply_of_line_is_its_header(tmp_path: Path, start_mosn) -> None:
    """What the page shows the reader: ``A 00000001 404 `` and the line's end."""
    path = tmp_path / "line.yaml"
    path.write_text(EXAMPLES["line"].text)
    port = free_port()
    start_mosn(proxy_config("line", port, free_port()))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"Q 00000001 000 com.example.Unknown|echo|hello\n")
        reply = b""
        while not reply.endswith(b"\n"):
            reply += sock.recv(100)
    assert reply == b"A 00000001 404 \n"


def test_a_request_the_description_cannot_hold_is_an_error_line(tmp_path: Path) -> None:
    """No traceback: the reason, on one line, and exit 2 (mock client and bench)."""
    narrow = example("ordr")
    narrow["codec"]["routing"]["service"] = {"body": {"offset": 8, "size": 4}}
    path = tmp_path / "narrow.yaml"
    path.write_text(yaml.safe_dump(narrow))
    tool = ["--protocol", "xprotocol", "--protocol-config", str(path), "--target",
            f"127.0.0.1:{free_port()}", "--service", SERVICE]
    for command in (["mock", "client"], ["bench", "--duration", "1"]):
        done = mosn(*command, *tool)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.splitlines() == [
            f"mosn {command[0]}{' client' if command[0] == 'mock' else ''}: ordr: cannot build "
            f"a request: service: '{SERVICE}' is longer than its 4 bytes"]
