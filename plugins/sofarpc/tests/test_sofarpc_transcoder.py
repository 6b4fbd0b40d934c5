"""MOSN's ``transcoder`` (``http2bolt_simple``) in a real mosn: curl speaks HTTP/1.1
to mosn, mosn speaks bolt to sofa-rpc-node's RpcServer (protobuf serialization, the
messages written by hand), and the answer comes back as HTTP. MOSN's own
``filter/transcoder`` client config runs with its ports moved."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from mosn.config.loader import ConfigError, validate
from mosn.testing import Peer, free_port

from .sofarpc_peers import ECHO_SERVICE

SAMPLE = (Path(__file__).resolve().parents[3] / "tests" / "data" / "mosn_samples" / "filter"
          / "transcoder" / "client_config.json")
CURL_TIMEOUT = "10"


def echo_request(name: str, group: str) -> bytes:
    """com.example.EchoRequest{name, group} in protobuf (two length-delimited fields)."""
    out = b""
    for number, text in ((1, name), (2, group)):
        raw = text.encode()
        out += bytes([number << 3 | 2, len(raw)]) + raw
    return out


def echo_message(data: bytes) -> tuple[int, str]:
    """(code, message) of a com.example.EchoResponse (a varint, then a string)."""
    pos, code, shift = 1, 0, 0
    assert data[0] == 0x08
    while True:
        byte = data[pos]
        code |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            break
    assert data[pos] == 0x12
    return code, data[pos + 2:pos + 2 + data[pos + 1]].decode()


def sample(listen: int, upstream: int, **transcoder: Any) -> dict[str, Any]:
    """MOSN's sample with its ports moved. Its ``tracing`` block names SOFATracer,
    a driver mosn does not have yet, so it is left out."""
    config = json.loads(SAMPLE.read_text())
    config.pop("tracing")
    listener = config["servers"][0]["listeners"][0]
    listener["address"] = f"127.0.0.1:{listen}"
    listener["stream_filters"][0]["config"].update(transcoder)
    config["cluster_manager"]["clusters"][0]["hosts"] = [{"address": f"127.0.0.1:{upstream}"}]
    return config


def post(port: int, method: str, body: bytes, *extra: str) -> tuple[int, dict[str, str], bytes]:
    done = subprocess.run(["curl", "-sS", "-m", CURL_TIMEOUT, "-D", "-", "--data-binary", "@-",
                           "-H", f"service: {ECHO_SERVICE}",
                           "-H", f"sofa_head_method_name: {method}",
                           "-H", "content-type: application/x-protobuf", "-H", "expect:",
                           *extra,
                           f"http://127.0.0.1:{port}/hello"],
                          input=body, capture_output=True, check=True)
    head, _, data = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), fields, data


@pytest.fixture
def via_transcoder(start_mosn: Callable[..., Any], node_server: Peer) -> int:
    port = free_port()
    start_mosn(sample(port, node_server.port, serialization="protobuf"))
    return port


def test_an_http_request_is_a_bolt_call(via_transcoder: int) -> None:
    status, fields, body = post(via_transcoder, "echoObj", echo_request("mosn", "B"))
    assert status == 200
    assert echo_message(body) == (200, "hello mosn, you are in B")
    assert int(fields["content-length"]) == len(body)


def test_a_chunked_request_is_held_until_its_body_is_whole(via_transcoder: int) -> None:
    status, _, body = post(via_transcoder, "echoObj", echo_request("chunks", "C"),
                           "-H", "transfer-encoding: chunked")
    assert status == 200 and echo_message(body) == (200, "hello chunks, you are in C")


def test_a_failed_call_is_500(via_transcoder: int) -> None:
    status, _, _ = post(via_transcoder, "fail", echo_request("x", "y"))
    assert status == 500


def test_a_body_over_the_limit_is_413(via_transcoder: int) -> None:
    assert post(via_transcoder, "echoObj", b"x" * (1024 * 1024 + 1))[0] == 413


def test_unknown_transcoder_is_refused() -> None:
    config = sample(free_port(), 1, type="json2bolt")
    with pytest.raises(ConfigError) as refused:
        validate(config)
    assert any("stream_filters[0].config.type: unknown transcoder 'json2bolt'" in e
               for e in refused.value.errors), refused.value.errors
