"""Frames the codec makes itself, sent to real clients and servers over 127.0.0.1:
heartbeat acks and error replies are understood by sofa-bolt-node and anthunder, and
a request made from scratch is answered by sofa-rpc-node's server."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from collections.abc import Iterator

import pytest

from mosn.rpc.codec import FrameKind
from mosn.testing import Peer
from mosn.testing.process import START_TIMEOUT
from mosn_sofarpc import BoltCodec, ResponseStatus
from .sofarpc_peers import (
    ECHO_SERVICE,
    anthunder,
    bolt_steps,
    hessian_string,
    rpc_call,
)

CODEC = BoltCodec()
RECV = 65536  # bytes per read


class CodecServer:
    """A bolt server on the codec alone: heartbeats acked, every request answered
    with ``error_reply(status)``."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.frames: list[FrameKind] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            while data := conn.recv(RECV):
                buffer += data
                while (frame := CODEC.decode(buffer)) is not None:
                    self.frames.append(frame.kind)
                    if frame.kind is FrameKind.HEARTBEAT:
                        conn.sendall(CODEC.heartbeat_reply(frame))
                    elif frame.kind is FrameKind.REQUEST:
                        conn.sendall(CODEC.error_reply(frame, self.status, "test"))

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def no_processor() -> Iterator[CodecServer]:
    server = CodecServer(ResponseStatus.NO_PROCESSOR)
    yield server
    server.close()


ECHO = {"call": "request", "method": "echo", "args": [hessian_string("hi")]}


@pytest.mark.parametrize("options", [
    {}, {"protocol": "bolt2", "bolt_version": 1}, {"protocol": "bolt2", "bolt_version": 2, "crc": True},
], ids=["v1", "v2", "v2-crc"])
def test_sofa_bolt_node_takes_the_heartbeat_ack(node_peers: None, no_processor: CodecServer,
                                                options: dict) -> None:
    results = bolt_steps(no_processor.port, [{"call": "heartbeat"}, {"call": "heartbeat"}],
                         **options)
    assert [r["type"] for r in results] == ["heartbeat_ack", "heartbeat_ack"]
    assert no_processor.frames == [FrameKind.HEARTBEAT, FrameKind.HEARTBEAT]


@pytest.mark.parametrize("options", [
    {}, {"protocol": "bolt2", "bolt_version": 2, "crc": True},
], ids=["v1", "v2-crc"])
def test_sofa_bolt_node_takes_the_error_reply(node_peers: None, no_processor: CodecServer,
                                              options: dict) -> None:
    """sofa-bolt-node turns any non-success status with no content into an error."""
    (result,) = bolt_steps(no_processor.port, [ECHO], **options)
    assert result["type"] == "response" and result["ok"] is False


def test_sofa_rpc_node_takes_the_error_reply(node_peers: None, no_processor: CodecServer) -> None:
    result = rpc_call(no_processor.port, "protobuf", "echoObj", [{"name": "x"}])
    assert result["ok"] is False


def test_anthunder_reads_the_status(anthunder_python: Path, no_processor: CodecServer) -> None:
    result = anthunder(anthunder_python, "call", f"127.0.0.1:{no_processor.port}",
                       ECHO_SERVICE, "echoObj", "x")
    assert result["ok"] is False
    assert "RESPSTATUS=6, NO_PROCESSOR" in result["error"]


def test_anthunder_takes_the_heartbeat_ack(anthunder_python: Path,
                                           no_processor: CodecServer) -> None:
    result = anthunder(anthunder_python, "heartbeat", f"127.0.0.1:{no_processor.port}")
    assert result == {"ok": True, "status": 0, "cmdcode": 0}


def exchange(port: int, frame: bytes) -> bytes:
    """Send one frame, return the one frame answered."""
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=START_TIMEOUT) as s:
        s.sendall(frame)
        while (answer := CODEC.decode(buffer)) is None:
            data = s.recv(RECV)
            assert data, "connection closed"
            buffer += data
    return answer.data


def echo_request(name: str) -> bytes:
    """com.example.EchoRequest{name}, protobuf, written by hand."""
    return b"\x0a" + bytes([len(name)]) + name.encode()


def test_a_tool_request_is_served_by_sofa_rpc_node(node_server: Peer) -> None:
    frame = bytearray(CODEC.request(ECHO_SERVICE, "echoObj", echo_request("tool")))
    CODEC.set_request_id(frame, 5)
    answer = CODEC.decode(bytearray(exchange(node_server.port, bytes(frame))))
    assert (answer.kind, answer.request_id, answer.status) == (FrameKind.RESPONSE, 5, 0)
    assert b"hello tool" in answer.data
