"""Dubbo-Thrift calls through a mosn process to a small Dubbo-Thrift server, over
127.0.0.1: routing by service, request ids remapped and restored, and mosn's own
exception replies."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from mosn.testing import MosnProcess, free_port
from mosn.testing.process import rpc_proxy_config
from dubbothrift_backend import EchoBackend
from dubbothrift_golden import SERVICE

TIMEOUT = 10.0


def call_frame(service: str, request_id: int, seqid: int, text: bytes) -> bytes:
    """A CALL of ``echo(text)``, assembled from the wire format."""
    svc = service.encode()
    header_tail = struct.pack(">i", len(svc)) + svc + struct.pack(">q", request_id)
    message = (b"\x80\x01\x00\x01" + struct.pack(">i", 4) + b"echo" + struct.pack(">i", seqid)
               + b"\x0b\x00\x01" + struct.pack(">i", len(text)) + text + b"\x00")
    header_size = 9 + len(header_tail)
    size = header_size + len(message)
    return (struct.pack(">I", size) + b"\xda\xbc" + struct.pack(">IHB", size, header_size, 1)
            + header_tail + message)


def read_frames(sock: socket.socket, count: int) -> list[bytes]:
    buffer, frames = b"", []
    while len(frames) < count:
        chunk = sock.recv(65536)
        assert chunk, "mosn closed the connection"
        buffer += chunk
        while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">I", buffer[:4])[0]:
            size = struct.unpack(">I", buffer[:4])[0]
            frames.append(buffer[:4 + size])
            buffer = buffer[4 + size:]
    return frames


def request_id(frame: bytes) -> int:
    header_size = struct.unpack(">H", frame[10:12])[0]
    return struct.unpack(">q", frame[4 + header_size - 8:4 + header_size])[0]


@pytest.fixture(scope="module")
def backend() -> Iterator[EchoBackend]:
    server = EchoBackend()
    yield server
    server.close()


@pytest.fixture(scope="module")
def via_mosn(tmp_path_factory: pytest.TempPathFactory, backend: EchoBackend) -> Iterator[int]:
    port = free_port()
    config = rpc_proxy_config(port, "dubbo-thrift", [f"127.0.0.1:{backend.port}"],
                              service=r"^com\.example\.")
    mosn = MosnProcess(config, tmp_path_factory.mktemp("mosn"))
    yield port
    mosn.stop()


def test_calls_are_answered_with_their_ids(via_mosn: int, backend: EchoBackend) -> None:
    before = backend.calls
    with socket.create_connection(("127.0.0.1", via_mosn), timeout=TIMEOUT) as sock:
        ids = [9_000_000_000 + i for i in range(20)]  # larger than any 32-bit id
        sock.sendall(b"".join(call_frame(SERVICE, rid, i, f"hello {i}".encode())
                              for i, rid in enumerate(ids)))
        frames = read_frames(sock, len(ids))
    by_id = {request_id(f): f for f in frames}
    assert sorted(by_id) == ids
    for i, rid in enumerate(ids):
        assert f"hello {i}".encode() in by_id[rid]
        assert b"\x80\x01\x00\x02" in by_id[rid]  # a REPLY
    assert backend.calls - before == len(ids)


def test_unrouted_service_gets_unknown_method(via_mosn: int, backend: EchoBackend) -> None:
    before = backend.calls
    with socket.create_connection(("127.0.0.1", via_mosn), timeout=TIMEOUT) as sock:
        sock.sendall(call_frame("org.other.Svc$Iface", 77, 3, b"x"))
        [frame] = read_frames(sock, 1)
    assert request_id(frame) == 77
    assert b"\x80\x01\x00\x03" in frame                      # an EXCEPTION
    assert b"\x08\x00\x02\x00\x00\x00\x01" in frame          # type UNKNOWN_METHOD
    assert b"404|" in frame
    assert backend.calls == before


def test_auto_detects_dubbo_thrift(tmp_path, backend: EchoBackend) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    mosn = MosnProcess(rpc_proxy_config(port, "Auto", [f"127.0.0.1:{backend.port}"]), tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(call_frame(SERVICE, 5, 1, b"auto"))
            [frame] = read_frames(sock, 1)
        assert request_id(frame) == 5 and b"auto" in frame
    finally:
        mosn.stop()
