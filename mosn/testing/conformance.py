"""The frame-codec conformance suite: what every codec of the RPC engine must do.

Subclass :class:`CodecConformance` in a test module and give it your codec::

    import pytest
    from mosn.testing import CodecConformance
    from mosn_acme import AcmeCodec


    class TestAcmeCodec(CodecConformance):
        @pytest.fixture
        def codec(self):
            return AcmeCodec()

pytest then runs every ``test_*`` method below against it. Optional fixtures a
subclass may override: ``heartbeat`` (the bytes of a heartbeat request, to test the
heartbeat reply; without it that test is skipped) and ``golden_frames`` (frames
captured from real peers: they join the frames split at every byte and seed the
mutation fuzzer). Class attributes tune the run: ``service``, ``method``,
``bodies`` and ``fuzz_examples``.

The suite holds a codec to the contract of :class:`mosn.rpc.codec.FrameCodec`, which
the engine relies on: a frame decoded whole or in any number of pieces is the same
frame; ``decode`` never eats bytes without returning a frame; anything that is not
a frame is a :class:`FrameError` (and never another exception); a request id can be
patched in place to any id up to ``max_request_id`` and nothing else changes;
replies carry the id of the frame they answer.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any, Iterable

import pytest

from mosn.extensions import source_of
from mosn.rpc.codec import Frame, FrameCodec, FrameError, FrameKind
from mosn.stream.types import MatchResult

IO_MODULES = frozenset({"asyncio", "anyio", "socket", "selectors", "trio", "uvloop"})
"""Modules a sans-IO codec must not import (STYLE.md rule 1)."""
PROXY_FAILURES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (400, ()), (403, ()), (404, ()), (500, ()), (502, ()), (503, ()), (503, ("UO",)),
    (504, ()),
)
"""The failures the proxy answers itself: (HTTP-like status, Envoy response flags)."""
MATCH_PREFIX = 64
"""Bytes the ``Auto`` detector reads at most (``mosn.proxy.filter.MAX_DETECT_BYTES``)."""
FOREIGN_OPENINGS = (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
"""First bytes of other protocols an ``Auto`` listener must not take for ours."""
REQUEST_ID = 4242
"""The id given to requests whose replies are checked."""
MAX_FUZZ_BYTES = 512
"""Size of the arbitrary inputs: enough to cover headers, small enough to run fast."""


def frame_fields(frame: Frame) -> tuple[Any, ...]:
    """What two decodes of the same bytes must agree on."""
    return (frame.kind, frame.request_id, bytes(frame.data), dict(frame.headers), frame.status,
            frame.timeout)


def decode_whole(codec: FrameCodec, data: bytes) -> Frame:
    """Decode ``data`` as exactly one frame (fails the test otherwise)."""
    buffer = bytearray(data)
    frame = codec.decode(buffer)
    assert frame is not None, f"{codec.name}: a whole frame decoded as None: {data[:64]!r}"
    assert isinstance(frame, Frame), f"{codec.name}: decode returned {frame!r}, not a Frame"
    assert not buffer, f"{codec.name}: {len(buffer)} bytes left after one whole frame"
    assert bytes(frame.data) == data, f"{codec.name}: Frame.data is not the frame's bytes"
    return frame


def check_decode(codec: FrameCodec, data: bytes) -> list[Frame]:
    """Decode everything in ``data``; fail unless each call returns a Frame (taking
    exactly its bytes off the front), None (taking nothing) or raises FrameError
    (taking nothing). Every frame decoded must take a patched request id."""
    buffer = bytearray(data)
    frames = []
    while True:
        before = bytes(buffer)
        try:
            frame = codec.decode(buffer)
        except FrameError as exc:
            assert bytes(buffer) == before, (
                f"{codec.name}: decode consumed bytes and raised FrameError on {data!r}")
            if exc.reply is not None:
                reply = decode_whole(codec, bytes(exc.reply))
                assert reply.kind is FrameKind.RESPONSE, (
                    f"{codec.name}: FrameError.reply decodes as {reply.kind}, not a response")
            return frames
        except Exception as exc:  # the contract: a Frame, None or FrameError, nothing else
            raise AssertionError(
                f"{codec.name}: decode raised {type(exc).__name__}: {exc} on {data!r}") from exc
        if frame is None:
            assert bytes(buffer) == before, (
                f"{codec.name}: decode returned None but consumed bytes of {data!r}")
            return frames
        assert isinstance(frame, Frame), f"{codec.name}: decode returned {frame!r}"
        assert isinstance(frame.kind, FrameKind)
        size = len(frame.data)
        assert size > 0 and before[:size] == bytes(frame.data) and bytes(buffer) == before[size:], (
            f"{codec.name}: decode did not take exactly Frame.data off the front of {data!r}")
        new_id = 1 if frame.request_id != 1 else 2
        patched = bytearray(frame.data)
        codec.set_request_id(patched, new_id)
        assert decode_whole(codec, bytes(patched)).request_id == new_id
        frames.append(frame)
        if not buffer:
            return frames


def request_ids(max_request_id: int) -> list[int]:
    """Ids at the edges of every integer width up to the protocol's maximum."""
    edges = {1, 2, 0x7F, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF,
             0x100000000, 0x7FFFFFFFFFFFFFFF, max_request_id - 1, max_request_id}
    return sorted(i for i in edges if 1 <= i <= max_request_id)


def _imports(tree: ast.AST) -> Iterable[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module.split(".")[0]


class CodecConformance:
    """The conformance suite; a subclass provides the ``codec`` fixture."""

    service = "com.example.EchoService:1.0"
    """The service the requests are made for (the routing key)."""
    method = "echo"
    bodies: tuple[bytes, ...] = (b"", b"x", b"hello, mesh", bytes(range(256)) * 4)
    """Bodies of the requests and responses built with ``request()``/``response()``."""
    fuzz_examples = 300
    """Hypothesis examples per fuzz test."""

    # -- fixtures a subclass provides -----------------------------------------------------

    @pytest.fixture
    def codec(self) -> FrameCodec:
        pytest.fail(f"{type(self).__name__}: override the `codec` fixture to return your codec")

    @pytest.fixture
    def heartbeat(self, codec: FrameCodec) -> bytes | None:
        """A heartbeat request frame of the protocol (None: the test is skipped)."""
        return None

    @pytest.fixture
    def golden_frames(self, codec: FrameCodec) -> list[bytes]:
        """Frames captured from real peers, each whole."""
        return []

    # -- the frames the tests use ---------------------------------------------------------

    def requests(self, codec: FrameCodec) -> list[bytes]:
        return [codec.request(self.service, self.method, body) for body in self.bodies]

    def responses(self, codec: FrameCodec) -> list[bytes]:
        out = []
        for data in self.requests(codec):
            request = _with_id(codec, data, REQUEST_ID)
            out += [codec.response(request, body) for body in self.bodies]
        return out

    def error_replies(self, codec: FrameCodec) -> list[bytes]:
        request = _with_id(codec, self.requests(codec)[1], REQUEST_ID)
        return [codec.error_reply(request, codec.error_status(status, flags), "mosn: test")
                for status, flags in PROXY_FAILURES]

    @pytest.fixture
    def all_frames(self, codec: FrameCodec, heartbeat: bytes | None,
                   golden_frames: list[bytes]) -> list[bytes]:
        frames = self.requests(codec) + self.responses(codec)[:3] + self.error_replies(codec)
        if heartbeat is not None:
            frames += [heartbeat, codec.heartbeat_reply(decode_whole(codec, heartbeat))]
        return frames + [bytes(f) for f in golden_frames]

    # -- the codec's description ----------------------------------------------------------

    def test_describes_itself(self, codec: FrameCodec) -> None:
        assert isinstance(codec.name, str) and codec.name, "name: the protocol's name in configs"
        assert isinstance(codec.multiplexed, bool), "multiplexed: True or False"
        assert isinstance(codec.max_request_id, int) and codec.max_request_id >= 1, (
            "max_request_id: the largest id the protocol carries")

    def test_codec_module_is_sans_io(self, codec: FrameCodec) -> None:
        """A codec never touches sockets or an event loop (STYLE.md rule 1)."""
        module = inspect.getmodule(type(codec))
        # a compiled codec (docs/extensions.md) is read from its .py twin
        source = source_of(module) if module is not None else ""
        if source is None:
            pytest.skip("the codec's module has no source to read")
        found = sorted(set(_imports(ast.parse(source))) & IO_MODULES)
        assert not found, f"{module.__name__} imports {', '.join(found)}"

    # -- builders round trip --------------------------------------------------------------

    def test_request_round_trip(self, codec: FrameCodec) -> None:
        for data in self.requests(codec):
            frame = decode_whole(codec, data)
            assert frame.kind is FrameKind.REQUEST
            assert frame.request_id == 0, "request() makes frames with id 0"
            assert frame.headers.get("service") == self.service, (
                "the routing header `service` must carry request()'s service")
            if "method" in frame.headers:
                assert frame.headers["method"] == self.method

    def test_response_round_trip(self, codec: FrameCodec) -> None:
        for data in self.responses(codec):
            frame = decode_whole(codec, data)
            assert frame.kind is FrameKind.RESPONSE
            assert frame.request_id == REQUEST_ID, "a response carries its request's id"
            assert codec.http_status(frame.status) == 200, "response() builds a success"

    def test_set_request_id_patches_only_the_id(self, codec: FrameCodec) -> None:
        for data in self.requests(codec) + self.responses(codec)[:3]:
            original = decode_whole(codec, data)
            new_id = min(REQUEST_ID + 1, codec.max_request_id)
            patched = bytearray(data)
            codec.set_request_id(patched, new_id)
            assert len(patched) == len(data), "set_request_id changed the frame's length"
            frame = decode_whole(codec, bytes(patched))
            assert frame.request_id == new_id
            assert ((frame.kind, dict(frame.headers), frame.status, frame.timeout)
                    == (original.kind, dict(original.headers), original.status,
                        original.timeout)), "set_request_id changed more than the id"
            codec.set_request_id(patched, original.request_id)
            assert bytes(patched) == data, "patching the old id back does not restore the frame"

    def test_request_ids_up_to_the_maximum(self, codec: FrameCodec) -> None:
        """The engine gives each request on a connection the next id, wrapping at
        ``max_request_id``: every id in range must survive patch and decode."""
        template = self.requests(codec)[1]
        for request_id in request_ids(codec.max_request_id):
            data = bytearray(template)
            codec.set_request_id(data, request_id)
            request = decode_whole(codec, bytes(data))
            assert request.request_id == request_id
            reply = decode_whole(codec, codec.response(request, b"ok"))
            assert reply.request_id == request_id, f"the response to id {request_id} lost it"

    # -- replies the engine makes ---------------------------------------------------------

    def test_heartbeat_reply(self, codec: FrameCodec, heartbeat: bytes | None) -> None:
        if heartbeat is None:
            pytest.skip("no `heartbeat` fixture: give one to test heartbeat replies")
        assert decode_whole(codec, heartbeat).kind is FrameKind.HEARTBEAT
        data = bytearray(heartbeat)
        codec.set_request_id(data, min(REQUEST_ID, codec.max_request_id))
        frame = decode_whole(codec, bytes(data))
        reply = decode_whole(codec, codec.heartbeat_reply(frame))
        assert reply.kind in (FrameKind.HEARTBEAT_REPLY, FrameKind.RESPONSE)
        assert reply.request_id == frame.request_id, "a heartbeat reply carries its id"

    def test_error_replies(self, codec: FrameCodec) -> None:
        """Each failure the proxy answers itself (no route, no host, overflow, timeout,
        lost upstream, bad frame) becomes a response with the request's id and the
        status ``error_status`` chose, which does not read back as a success."""
        request = _with_id(codec, self.requests(codec)[1], REQUEST_ID)
        for http_status, flags in PROXY_FAILURES:
            status = codec.error_status(http_status, flags)
            reply = decode_whole(codec, codec.error_reply(request, status, "mosn: test"))
            assert reply.kind is FrameKind.RESPONSE
            assert reply.request_id == REQUEST_ID
            assert reply.status == status, f"error_reply lost the status for {http_status}"
            assert codec.http_status(status) >= 400, (
                f"the status for a proxy failure {http_status} {flags} reads back as "
                f"{codec.http_status(status)}")

    # -- matching (downstream_protocol: Auto) ---------------------------------------------

    def test_matches_its_own_requests(self, codec: FrameCodec, heartbeat: bytes | None) -> None:
        for data in self.requests(codec)[:1] + ([heartbeat] if heartbeat else []):
            assert codec.match(data) is MatchResult.MATCH
            for end in range(1, min(len(data), MATCH_PREFIX)):
                assert codec.match(data[:end]) is not MatchResult.NO_MATCH, (
                    f"the first {end} bytes of a request are refused")

    def test_does_not_match_http(self, codec: FrameCodec) -> None:
        for data in FOREIGN_OPENINGS:
            assert codec.match(data) is MatchResult.NO_MATCH, f"{codec.name} claims {data!r}"

    # -- bytes arriving in pieces ---------------------------------------------------------

    def test_split_at_every_byte(self, codec: FrameCodec, all_frames: list[bytes]) -> None:
        """A frame in two pieces, cut anywhere: the first piece decodes as None and
        stays in the buffer; with the rest it is the same frame as decoded whole."""
        for data in all_frames:
            whole = frame_fields(decode_whole(codec, data))
            for cut in range(len(data)):
                buffer = bytearray(data[:cut])
                assert codec.decode(buffer) is None, f"{cut} of {len(data)} bytes made a frame"
                assert bytes(buffer) == data[:cut], f"decode ate bytes of a partial frame ({cut})"
                buffer += data[cut:]
                frame = codec.decode(buffer)
                assert frame is not None and frame_fields(frame) == whole, (
                    f"cut at byte {cut}, the frame decodes differently")
                assert not buffer

    def test_byte_at_a_time(self, codec: FrameCodec, all_frames: list[bytes]) -> None:
        """Many frames back to back, arriving one byte at a time."""
        expected = [frame_fields(decode_whole(codec, data)) for data in all_frames]
        buffer, got = bytearray(), []
        for byte in b"".join(all_frames):
            buffer.append(byte)
            while (frame := codec.decode(buffer)) is not None:
                got.append(frame_fields(frame))
        assert got == expected
        assert not buffer

    # -- arbitrary bytes ------------------------------------------------------------------

    def test_fuzz_arbitrary_bytes(self, codec: FrameCodec) -> None:
        hypothesis = pytest.importorskip("hypothesis")
        st = hypothesis.strategies

        @hypothesis.settings(max_examples=self.fuzz_examples, deadline=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(st.binary(max_size=MAX_FUZZ_BYTES))
        def run(data: bytes) -> None:
            check_decode(codec, data)

        run()

    def test_fuzz_after_a_valid_start(self, codec: FrameCodec, all_frames: list[bytes]) -> None:
        """Arbitrary bytes after the first bytes of a real frame, so the fuzzer gets
        past the magic into the header's fields."""
        hypothesis = pytest.importorskip("hypothesis")
        st = hypothesis.strategies

        @hypothesis.settings(max_examples=self.fuzz_examples, deadline=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(st.sampled_from(all_frames), st.integers(1, 32),
                          st.binary(max_size=MAX_FUZZ_BYTES))
        def run(frame: bytes, keep: int, rest: bytes) -> None:
            check_decode(codec, frame[:keep] + rest)

        run()

    def test_fuzz_mutated_frames(self, codec: FrameCodec, all_frames: list[bytes]) -> None:
        hypothesis = pytest.importorskip("hypothesis")
        st = hypothesis.strategies

        @hypothesis.settings(max_examples=self.fuzz_examples, deadline=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(st.sampled_from(all_frames),
                          st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
                                   max_size=6),
                          st.integers(0, 1 << 16))
        def run(frame: bytes, flips: list[tuple[int, int]], cut: int) -> None:
            data = bytearray(frame)
            for at, value in flips:
                data[at % len(data)] = value
            check_decode(codec, bytes(data[:cut % (len(data) + 1)]))
            check_decode(codec, bytes(data) + frame)

        run()

    def test_fuzz_request_ids(self, codec: FrameCodec) -> None:
        hypothesis = pytest.importorskip("hypothesis")
        st = hypothesis.strategies
        template = self.requests(codec)[1]

        @hypothesis.settings(max_examples=self.fuzz_examples, deadline=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(st.integers(0, codec.max_request_id))
        def run(request_id: int) -> None:
            data = bytearray(template)
            codec.set_request_id(data, request_id)
            assert decode_whole(codec, bytes(data)).request_id == request_id

        run()


def _with_id(codec: FrameCodec, data: bytes, request_id: int) -> Frame:
    patched = bytearray(data)
    codec.set_request_id(patched, min(request_id, codec.max_request_id))
    return decode_whole(codec, bytes(patched))
