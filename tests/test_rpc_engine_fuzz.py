"""The RPC engine's framing under random input, for each RPC codec: requests,
heartbeats and garbage back to back, in pieces of any size, on the server side; any
response bytes on the client side. Nothing raises; requests reach the proxy whole, in
order, never one that was not sent; a bad frame closes the connection (after its
error reply); every request is answered or reset exactly once."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosn.network.filter import CloseType, ConnectionEvent
from mosn.rpc.codec import FrameCodec, FrameError, FrameKind
from mosn.rpc.engine import rpc_protocol
from mosn.stream.types import RequestHead, ResponseHead, StreamResetReason
from mosn.testing import FakeLoop, Recorder
from mosn_dubbo import DubboCodec
from mosn_sofarpc import BoltCodec, BoltV2Codec
from mosn_xprotocol import CodecConfig, DeclarativeCodec

EXAMPLES = 200
"""Hypothesis examples per test."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MINIRPC = {"name": "minirpc", "header_size": 14, "magic": {"text": "MR"},
           "kind": {"offset": 2, "request": 1, "response": 2, "oneway": 3, "heartbeat": 4,
                    "heartbeat_reply": 5},
           "status": {"offset": 3, "size": 1, "error": 5},
           "request_id": {"offset": 4, "size": 4},
           "length": {"fields": [{"offset": 8, "size": 2}, {"offset": 10, "size": 4}]},
           "routing": {"service": {"offset": 14, "length_field": {"offset": 8, "size": 2}}}}
CODECS: dict[str, FrameCodec] = {
    "bolt": BoltCodec(max_frame_size=64 * 1024), "boltv2": BoltV2Codec(max_frame_size=64 * 1024),
    "dubbo": DubboCodec(max_body_size=64 * 1024),
    "minirpc": DeclarativeCodec(CodecConfig.model_validate(MINIRPC)),
}
HEARTBEATS = {"bolt": bytes.fromhex("01 01 0000 01 00000000 01 ffffffff 0000 0000 00000000"),
              "dubbo": bytes.fromhex("dabb e2 00 0000000000000000 00000001 4e"),
              "minirpc": bytes.fromhex("4d52 04 00 00000000 0000 00000000")}


class MemoryConnection:
    """What the engine uses of a connection: bytes in through its read filters, bytes
    written kept; ``close()`` stops the reading, as mosn's connection does."""

    def __init__(self) -> None:
        self.loop = FakeLoop()
        self.read_filters: list[Any] = []
        self.callbacks: list[Any] = []
        self.written = bytearray()
        self.closed: CloseType | None = None
        self.held = 0
        """Bytes the engine holds against the buffer budget (never negative)."""

    def hold(self, delta: int) -> None:
        self.held += delta
        assert self.held >= 0, "the engine released more than it held"

    def read_disable(self, disable: bool) -> None:
        pass  # backpressure: nothing waits to be written here

    def add_read_filter(self, f: Any) -> None:
        self.read_filters.append(f)

    def add_callbacks(self, cb: Any) -> None:
        self.callbacks.append(cb)

    def write(self, data: bytes) -> None:
        if self.closed is None:
            self.written += data

    def close(self, how: CloseType = CloseType.FLUSH_WRITE) -> None:
        self.closed = self.closed or how

    def feed(self, data: bytes) -> None:
        if self.closed is None:
            for f in self.read_filters:
                f.on_data(data)
        self.loop.run()

    def finish(self) -> None:
        """The connection is gone: its callbacks hear so."""
        for cb in self.callbacks:
            cb.on_event(ConnectionEvent.LOCAL_CLOSE if self.closed else
                        ConnectionEvent.REMOTE_CLOSE)


def expected_frames(codec: FrameCodec, data: bytes) -> tuple[list[Any], FrameError | None]:
    """The frames in ``data`` read one after another, and the error that stops them."""
    buffer, frames = bytearray(data), []
    try:
        while buffer and (frame := codec.decode(buffer)) is not None:
            frames.append(frame)
    except FrameError as exc:
        return frames, exc
    return frames, None


@st.composite
def stream_of(draw: Any, name: str) -> bytes:
    codec = CODECS[name]
    pieces = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 9))
        if kind < 6:
            data = bytearray(codec.request(draw(st.text(max_size=8)) or "s", "m",
                                           draw(st.binary(max_size=24))))
            codec.set_request_id(data, draw(st.integers(0, 2**31)))
            pieces.append(bytes(data))
        elif kind < 8 and name in HEARTBEATS:
            pieces.append(HEARTBEATS[name])
        else:
            pieces.append(draw(st.binary(max_size=24)))
    return b"".join(pieces)


def cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for size in sizes * (len(data) // max(1, sum(sizes)) + 1):
        if at >= len(data):
            break
        out.append(data[at:at + size])
        at += size
    return out


@SETTINGS
@given(st.sampled_from(sorted(CODECS)).flatmap(lambda n: st.tuples(st.just(n), stream_of(n))),
       st.lists(st.integers(1, 40), min_size=1, max_size=6), st.booleans())
def test_server_side_delivers_whole_requests_in_order(named, sizes, answer):
    check_server_side(*named, sizes, answer)


def check_server_side(name: str, data: bytes, sizes: list[int], answer: bool) -> None:
    """``data`` read by the engine's server side in pieces of ``sizes``; the streams
    answered if ``answer`` (also what bench/fuzz runs)."""
    codec = CODECS[name]
    conn = MemoryConnection()
    handlers: list[Recorder] = []

    def new_stream(stream: Any) -> Recorder:
        handlers.append(Recorder(stream))
        return handlers[-1]

    rpc_protocol(codec).server(conn, new_stream)
    for chunk in cuts(data, sizes):
        conn.feed(chunk)
    frames, error = expected_frames(codec, data)
    wanted = [(f.request_id, bytes(f.data)) for f in frames
              if f.kind in (FrameKind.REQUEST, FrameKind.ONEWAY)]
    got = [(h.head.frame.request_id, bytes(h.head.frame.data)) for h in handlers]
    # (frames read in the same piece as a bad one may be lost with it; never others)
    assert got == wanted[:len(got)]

    def respond(h: Recorder) -> None:
        request = h.head.frame
        reply = codec.response(request, b"ok") if request.kind is FrameKind.REQUEST else b""
        head = ResponseHead(200, frame=expected_frames(codec, reply)[0][0] if reply else None)
        h.stream.send_headers(head, True)

    if error is None:
        assert got == wanted and conn.closed is None
    else:
        # The requests read before the bad bytes are answered, then the connection
        # closes; nothing after them is read.
        for h in handlers:
            assert conn.closed is None
            respond(h)
        conn.loop.run()
        assert conn.closed is not None
    if answer and conn.closed is None:
        for h in handlers:
            respond(h)
        answered, _ = expected_frames(codec, bytes(conn.written))
        replies = [f.request_id for f in answered if f.kind is FrameKind.RESPONSE]
        assert replies == [h.head.frame.request_id for h in handlers
                           if h.head.frame.kind is FrameKind.REQUEST]
    conn.finish()
    for h in handlers:
        h.stream.reset(StreamResetReason.LOCAL_RESET)  # after the close: nothing more


@SETTINGS
@given(st.sampled_from(sorted(CODECS)), st.integers(1, 4),
       st.lists(st.one_of(st.binary(max_size=32), st.integers(0, 5)), max_size=8),
       st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_client_side_answers_or_resets_every_request_once(name, count, replies, sizes):
    check_client_side(name, count, replies, sizes)


def check_client_side(name: str, count: int, replies: list[bytes | int],
                      sizes: list[int]) -> None:
    """``count`` requests sent; then responses to them (by their position: an int),
    to ids never sent, and garbage: each request ends once, with its own response or
    a reset (also what bench/fuzz runs)."""
    codec = CODECS[name]
    conn = MemoryConnection()
    client = rpc_protocol(codec).client(conn, lambda: None)
    handlers, ids = [], []
    for i in range(count):
        handler = Recorder()
        request = expected_frames(codec, codec.request("s", "m", b"%d" % i))[0][0]
        client.new_stream(handler).send_headers(RequestHead("m", "", "s", frame=request), True)
        handlers.append(handler)
    conn.loop.run()
    for frame in expected_frames(codec, bytes(conn.written))[0]:
        ids.append(frame.request_id)
    wire = b""
    for reply in replies:
        if isinstance(reply, int):
            template = bytearray(codec.request("s", "m", b""))
            codec.set_request_id(template, ids[reply % len(ids)] + (reply >= len(ids)))
            request = expected_frames(codec, bytes(template))[0][0]
            wire += codec.response(request, b"r%d" % reply)
        else:
            wire += reply
    for chunk in cuts(wire, sizes):
        conn.feed(chunk)
    conn.finish()
    for i, handler in enumerate(handlers):
        assert len(handler.events) == 1, handler.events
        event = handler.events[0]
        if event[0] == "headers":
            assert event[1].frame.request_id == ids[i] and event[2] is True
        else:
            assert event[0] == "reset"
