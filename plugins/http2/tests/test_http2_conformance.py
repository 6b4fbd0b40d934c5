"""HTTP/2 conformance of mosn's downstream side, after h2spec's cases: a client that
writes raw frames (built here byte by byte, header blocks as HPACK literals) sends
what a peer must get right or must refuse, and reads what mosn answers, on each
engine, through mosn to hypercorn. Section numbers are RFC 9113's.

Where the RFC allows a stream error or a connection error, either passes; where it
names one, only that one does."""

from __future__ import annotations

import socket
import struct
import time
from typing import Iterator

import pytest

from h2_fixtures import h2_engine, h2_upstream, proxy_config, with_engine  # noqa: F401 (pytest fixtures)
from mosn.testing.process import MosnProcess, free_port
from mosn_http2 import PREFACE

TIMEOUT = 10.0  # seconds to wait for mosn's answer on a loaded CI machine

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x6
ENHANCE_YOUR_CALM = 0xB
INITIAL_WINDOW_SIZE, ENABLE_PUSH, MAX_FRAME_SIZE = 0x4, 0x2, 0x5


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", sid) + payload


def _integer(value: int, prefix: int) -> bytes:
    """An HPACK integer with a ``prefix``-bit prefix and no flags (RFC 7541 5.1)."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([value])
    out, value = [limit], value - limit
    while value >= 128:
        out.append(value % 128 | 128)
        value //= 128
    return bytes(out + [value])


def block(fields: list[tuple[str, str]]) -> bytes:
    """A header block of literals without indexing, new names, no Huffman (RFC 7541 6.2.2)."""
    out = b""
    for name, value in fields:
        n, v = name.encode(), value.encode()
        out += b"\x00" + _integer(len(n), 7) + n + _integer(len(v), 7) + v
    return out


def request(path: str = "/echo", method: str = "GET") -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "http"), (":authority", "test"), (":path", path)]


def settings(**values: int) -> bytes:
    ids = {"initial_window_size": INITIAL_WINDOW_SIZE, "enable_push": ENABLE_PUSH,
           "max_frame_size": MAX_FRAME_SIZE}
    return b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items())


class FrameClient:
    """A blocking client on a socket speaking HTTP/2 frame by frame; the server's
    SETTINGS are acknowledged as they come."""

    def __init__(self, port: int, first_settings: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""
        self.closed = False
        self.received: list[tuple[int, int, int, bytes]] = []
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, first_settings))

    def send(self, *frames: bytes) -> None:
        self.sock.sendall(b"".join(frames))

    def next_frame(self, deadline: float) -> tuple[int, int, int, bytes] | None:
        while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(self.buffer[:3], "big"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from mosn")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return None
            self.buffer += data
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags, sid = self.buffer[3], self.buffer[4], int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
        payload, self.buffer = self.buffer[9:9 + length], self.buffer[9 + length:]
        if kind == SETTINGS and not flags & ACK:
            self.send(frame(SETTINGS, ACK, 0))
        got = (kind, flags, sid, payload)
        self.received.append(got)
        return got

    def wait(self, kind: int, sid: int | None = None) -> tuple[int, int, int, bytes]:
        """The next frame of ``kind`` (on ``sid``); fails if the connection ends first."""
        deadline = time.monotonic() + TIMEOUT
        while (got := self.next_frame(deadline)) is not None:
            if got[0] == kind and (sid is None or got[2] == sid):
                return got
        raise AssertionError(f"closed before a frame of type {kind}: got {self.received}")

    def error(self, sid: int) -> tuple[str, int]:
        """Wait for mosn to end stream ``sid`` or the connection with an error:
        ("stream", code) for RST_STREAM, ("connection", code) for GOAWAY."""
        deadline = time.monotonic() + TIMEOUT
        while (got := self.next_frame(deadline)) is not None:
            kind, _, got_sid, payload = got
            if kind == RST_STREAM and got_sid == sid:
                return "stream", int.from_bytes(payload, "big")
            if kind == GOAWAY:
                return "connection", int.from_bytes(payload[4:8], "big")
        raise AssertionError(f"closed without RST_STREAM or GOAWAY: got {self.received}")

    def goaway(self) -> int:
        """Wait for GOAWAY, then for the connection to close; the GOAWAY's code."""
        kind, code = self.error(0)
        assert kind == "connection"
        deadline = time.monotonic() + TIMEOUT
        while self.next_frame(deadline) is not None:
            pass
        return code

    def response(self, sid: int) -> bytes:
        """The DATA of a response on ``sid``, to its END_STREAM."""
        body = b""
        deadline = time.monotonic() + TIMEOUT
        while (got := self.next_frame(deadline)) is not None:
            kind, flags, got_sid, payload = got
            if got_sid == sid and kind in (DATA, HEADERS) and flags & END_STREAM:
                return body + (payload if kind == DATA else b"")
            if got_sid == sid and kind == DATA:
                body += payload
            if got_sid == sid and kind == RST_STREAM:
                raise AssertionError(f"stream {sid} reset: {payload.hex()}")
        raise AssertionError(f"closed before the response on {sid}: got {self.received}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def mosn_port(h2_upstream, h2_engine, tmp_path_factory) -> Iterator[int]:
    """One mosn for the module (on each engine): every case opens its own connection."""
    port = free_port()
    mosn = MosnProcess(proxy_config(port, h2_upstream, extend_config=with_engine(None, h2_engine)),
                       tmp_path_factory.mktemp("conformance"))
    yield port
    mosn.stop()


@pytest.fixture
def client(mosn_port) -> Iterator[FrameClient]:
    port = mosn_port
    c = FrameClient(port)
    c.wait(SETTINGS)
    c.port = port  # type: ignore[attr-defined]
    yield c
    c.close()


def get(c: FrameClient, sid: int, path: str = "/echo") -> bytes:
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block(request(path))))
    return c.response(sid)


# -- 6.5 SETTINGS ---------------------------------------------------------------------


def test_settings_acknowledged(client):
    """6.5.3: the server acknowledges the client's SETTINGS with an empty ACK."""
    kind, flags, sid, payload = client.wait(SETTINGS)
    while not flags & ACK:
        kind, flags, sid, payload = client.wait(SETTINGS)
    assert (sid, payload) == (0, b"")


@pytest.mark.parametrize("bad, code", [
    (frame(SETTINGS, ACK, 0, settings(enable_push=0)), FRAME_SIZE_ERROR),  # 6.5: ACK with a payload
    (frame(SETTINGS, 0, 0, b"\x00\x02\x00"), FRAME_SIZE_ERROR),  # 6.5: not a multiple of 6
    (frame(SETTINGS, 0, 1, settings(enable_push=0)), PROTOCOL_ERROR),  # 6.5: on a stream
    (frame(SETTINGS, 0, 0, settings(enable_push=2)), PROTOCOL_ERROR),  # 6.5.2
    (frame(SETTINGS, 0, 0, settings(initial_window_size=2**31)), FLOW_CONTROL_ERROR),  # 6.5.2
    (frame(SETTINGS, 0, 0, settings(max_frame_size=16383)), PROTOCOL_ERROR),  # 6.5.2
])
def test_invalid_settings_are_connection_errors(client, bad, code):
    client.send(bad)
    assert client.goaway() == code


# -- 4.2 frame sizes -------------------------------------------------------------------


def test_frame_over_max_frame_size_is_frame_size_error(client):
    """4.2: a DATA frame over SETTINGS_MAX_FRAME_SIZE (16384 by default)."""
    client.send(frame(HEADERS, END_HEADERS, 1, block(request("/echo", "POST"))),
                frame(DATA, 0, 1, b"x" * 16385))
    kind, code = client.error(1)
    assert code == FRAME_SIZE_ERROR


def test_ping_of_the_wrong_size_is_frame_size_error(client):
    client.send(frame(PING, 0, 0, b"1234567"))  # 6.7: 8 bytes exactly
    assert client.goaway() == FRAME_SIZE_ERROR


def test_ping_answered_with_its_payload(client):
    client.send(frame(PING, 0, 0, b"mosn-h2!"))
    kind, flags, sid, payload = client.wait(PING)
    assert flags & ACK and payload == b"mosn-h2!"


# -- 6.9 flow control ------------------------------------------------------------------


def test_response_respects_the_client_window(mosn_port):
    """6.9.1: with SETTINGS_INITIAL_WINDOW_SIZE 100, mosn sends 100 bytes of the body,
    then waits for WINDOW_UPDATE before the rest."""
    c = FrameClient(mosn_port, settings(initial_window_size=100))
    try:
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block(request("/bytes/1000"))))
        got = 0
        while got < 100:
            kind, flags, sid, payload = c.wait(DATA, 1)
            got += len(payload)
        assert got == 100
        c.send(frame(PING, 0, 0, b"barrier!"))  # answered after anything already due
        while c.wait(PING)[3] != b"barrier!":
            pass
        assert sum(len(f[3]) for f in c.received if f[0] == DATA and f[2] == 1) == 100
        c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 900)))
        rest = c.response(1)
        assert got + len(rest) == 1000
    finally:
        c.close()


def test_window_update_of_zero_is_protocol_error(client):
    client.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))  # 6.9
    assert client.goaway() == PROTOCOL_ERROR


def test_connection_window_overflow_is_flow_control_error(client):
    client.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1)))  # 6.9.1
    assert client.goaway() == FLOW_CONTROL_ERROR


def test_stream_window_overflow_is_flow_control_error(client):
    client.send(frame(HEADERS, END_HEADERS, 1, block(request("/delay/1", "POST"))),
                frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1)))
    kind, code = client.error(1)
    assert code == FLOW_CONTROL_ERROR


# -- 6.10 CONTINUATION ----------------------------------------------------------------


def test_continuation_flood_closes_the_connection(client):
    """A header block that never ends, one CONTINUATION frame after another
    (CVE-2024-28182): the connection is closed after a few, not read forever. Other
    connections are served."""
    client.send(frame(HEADERS, 0, 1, block(request())))
    frames = [frame(CONTINUATION, 0, 1, block([("x-flood", "y" * 10)])) for _ in range(1000)]
    try:
        client.send(*frames)
    except OSError:
        pass  # closed under the flood
    assert client.goaway() in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)
    other = FrameClient(client.port)
    try:
        other.wait(SETTINGS)
        assert b'"path": "/echo"' in get(other, 1)
    finally:
        other.close()


def test_header_block_split_in_continuations_is_served(client):
    fields = block(request())
    client.send(frame(HEADERS, END_STREAM, 1, fields[:5]), frame(CONTINUATION, 0, 1, fields[5:12]),
                frame(CONTINUATION, END_HEADERS, 1, fields[12:]))
    assert b'"path": "/echo"' in client.response(1)


def test_frame_inside_a_header_block_is_protocol_error(client):
    """6.10: nothing but CONTINUATION of the same stream until END_HEADERS."""
    client.send(frame(HEADERS, END_STREAM, 1, block(request())), frame(PING, 0, 0, b"12345678"))
    assert client.goaway() == PROTOCOL_ERROR


# -- 5.1 stream states -----------------------------------------------------------------


def test_even_stream_id_from_a_client_is_protocol_error(client):
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 2, block(request())))  # 5.1.1
    assert client.goaway() == PROTOCOL_ERROR


def test_data_on_an_idle_stream_is_protocol_error(client):
    client.send(frame(DATA, END_STREAM, 1, b"x"))  # 5.1: idle
    assert client.goaway() == PROTOCOL_ERROR


def test_rapid_reset_is_enhance_your_calm(client):
    """Streams reset as soon as they are opened, hundreds of them (CVE-2023-44487):
    GOAWAY ENHANCE_YOUR_CALM (Envoy's premature-reset rule)."""
    frames = []
    for i in range(600):
        sid = 2 * i + 1
        frames += [frame(HEADERS, END_HEADERS | END_STREAM, sid, block(request("/delay/1"))),
                   frame(RST_STREAM, 0, sid, struct.pack(">I", 8))]
    try:
        client.send(*frames)
    except OSError:
        pass  # closed under it
    assert client.goaway() == ENHANCE_YOUR_CALM


# -- 5.3 / 6.3 priority ---------------------------------------------------------------


def test_priority_frames_are_accepted_and_ignored(client):
    """RFC 9113 deprecates RFC 7540's priorities; PRIORITY frames and the PRIORITY flag
    are still read (6.3) and change nothing."""
    client.send(frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 200)),  # on an idle stream
                frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 1,
                      struct.pack(">IB", 0, 16) + block(request())))
    assert b'"path": "/echo"' in client.response(1)


def test_priority_of_the_wrong_size_is_frame_size_error(client):
    client.send(frame(PRIORITY, 0, 1, b"\x00\x00\x00\x00"))  # 6.3: 5 bytes
    kind, code = client.error(1)
    assert code == FRAME_SIZE_ERROR


def test_stream_depending_on_itself_is_protocol_error(client):
    client.send(frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 16)))  # 5.3.1
    kind, code = client.error(1)
    assert code == PROTOCOL_ERROR


# -- 5.5 extensions --------------------------------------------------------------------


def test_unknown_frame_type_is_ignored(client):
    client.send(frame(0x42, 0, 0, b"whatever"))
    assert b'"path": "/echo"' in get(client, 1)


# -- keepalive -------------------------------------------------------------------------


def test_keepalive_closes_a_silent_client(h2_upstream, h2_engine, start_mosn):
    """``connection_keepalive``: mosn PINGs an idle client; one that answers nothing
    (gone without a FIN) has its connection closed once ``timeout`` has passed."""
    port = free_port()
    start_mosn(proxy_config(port, h2_upstream, extend_config=with_engine(
        {"Http2": {"connection_keepalive": {"interval": "0.2s", "timeout": "0.3s"}}}, h2_engine)))
    c = FrameClient(port)
    try:
        kind, flags, sid, payload = c.wait(PING)
        assert not flags & ACK
        deadline = time.monotonic() + TIMEOUT
        while c.next_frame(deadline) is not None:  # no answer: closed in 0.3 s
            pass
        assert c.closed
    finally:
        c.close()


# -- 8.1 a response complete before its request ---------------------------------------


def test_end_stream_after_the_whole_content_length_is_awaited(h2_upstream, h2_engine, start_mosn):
    """A response that ends before its request does is followed by RST_STREAM NO_ERROR
    (8.1), unless every byte of the request's content-length has come: then only its
    END_STREAM is missing, which a client (httpx does) sends in a DATA frame of its own
    and must be able to. The HTTP/1.1 upstream answers once it has the 3 bytes."""
    port = free_port()
    start_mosn(proxy_config(port, h2_upstream, upstream="Http1",
                            extend_config=with_engine(None, h2_engine)))
    c = FrameClient(port)
    try:
        c.wait(SETTINGS)
        fields = request("/echo", "POST") + [("content-length", "3")]
        c.send(frame(HEADERS, END_HEADERS, 1, block(fields)), frame(DATA, 0, 1, b"abc"))
        assert b'"POST"' in c.response(1)
        c.send(frame(DATA, END_STREAM, 1), frame(PING, 0, 0, b"12345678"))
        while not c.wait(PING)[1] & ACK:  # all mosn sent before its answer to the PING
            pass
        resets = [f for f in c.received if f[0] == RST_STREAM and f[2] == 1]
        assert resets == [], resets
        assert get(c, 3) and not c.closed  # the connection carries on
    finally:
        c.close()
