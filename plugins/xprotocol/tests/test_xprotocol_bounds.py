"""Through a real mosn: a 1 MB request is never echoed back. Declaring the whole body
as the ``service`` (the way routing on a body was once faked) is refused at the
bound; a key inside the body routes it, and mosn's no-route reply is the header alone."""

from __future__ import annotations

import socket
from typing import Any

import yaml

from mosn.rpc.tools import codec_named
from mosn.testing import free_port, rpc_proxy_config

from test_xprotocol_docs import EXAMPLES

MEGABYTE = 1024 * 1024
WHOLE_BODY_AS_SERVICE = """
codec:
  name: ordr
  header_size: 12
  magic: {text: "OR"}
  kind: {offset: 2, request: 1, response: 2}
  status: {offset: 3, size: 1, success: 0, error: 1, no_route: 2, bad_frame: 6}
  request_id: {offset: 4, size: 4}
  length: {offset: 8, size: 4}
  routing:
    service: {offset: 12, length_field: {offset: 8, size: 4}}
"""


def exchange(port: int, frames: list[bytes], replies: int) -> tuple[list[Any], bool]:
    """Send ``frames``; read ``replies`` ORDR frames; also whether mosn then closed."""
    codec = codec_named("xprotocol", config=yaml.safe_load(EXAMPLES["ordr"].text))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(frames))
        buffer, got = bytearray(), []
        while len(got) < replies:
            data = sock.recv(65536)
            assert data, f"closed after {len(got)} replies"
            buffer += data
            while (frame := codec.decode(buffer)) is not None:
                got.append(frame)
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
    return got, closed


def request(request_id: int, body: bytes) -> bytes:
    return (b"OR\x01\x00" + request_id.to_bytes(4, "big") + len(body).to_bytes(4, "big")
            + body)


def test_the_whole_body_as_a_service_is_refused_not_echoed(start_mosn) -> None:
    port = free_port()
    start_mosn(rpc_proxy_config(port, "xprotocol", ["127.0.0.1:1"], service="^small$",
                                extend_config={"xprotocol": yaml.safe_load(WHOLE_BODY_AS_SERVICE)}))
    [reply], closed = exchange(port, [request(7, b"x" * MEGABYTE)], 1)
    assert (reply.request_id, reply.status, len(reply.data)) == (7, 6, 12)  # bad_frame, header
    assert closed
    [reply], _ = exchange(port, [request(8, b"unrouted")], 1)
    assert (reply.status, reply.data[12:]) == (2, b"unrouted")  # no route: the short key echoed


def test_a_key_in_the_body_routes_and_nothing_of_the_body_is_echoed(start_mosn,
                                                                    mock_rpc_server) -> None:
    codec = codec_named("xprotocol", config=yaml.safe_load(EXAMPLES["ordr"].text))
    backend = mock_rpc_server(codec, response_bytes=2)
    port = free_port()
    start_mosn(rpc_proxy_config(port, "xprotocol", [backend.address],
                                service="^com[.]example[.]",
                                extend_config={"xprotocol": yaml.safe_load(EXAMPLES["ordr"].text)}))

    def ordr(request_id: int, service: str) -> bytes:
        data = bytearray(codec.request(service, "", b"x" * MEGABYTE))
        codec.set_request_id(data, request_id)
        return bytes(data)

    (unrouted, routed), closed = exchange(
        port, [ordr(1, "org.other.Service"), ordr(2, "com.example.EchoService")], 2)
    assert (unrouted.request_id, unrouted.status, len(unrouted.data)) == (1, 2, 12)
    assert (routed.request_id, routed.status, routed.data[12:]) == (2, 0, b"yy")
    assert not closed
    [seen] = backend.requests
    assert seen.headers["service"] == "com.example.EchoService" and len(seen.data) > MEGABYTE
