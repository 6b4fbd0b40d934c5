"""hessian2 and Dubbo requests under random input: what the writer writes the reader
reads back (strings of any characters and lengths, ints, maps, binaries stepped
over), random bytes are a HessianError and nothing else, and a request built from
random names and attachments routes by exactly those."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosn.rpc.codec import FrameKind
from mosn_dubbo import DubboCodec
from mosn_dubbo.frames import FLAG_REQUEST, FLAG_TWO_WAY, build_frame, request_body
from mosn_dubbo.hessian2 import (
    STRING_CHUNK,
    HessianError,
    Reader,
    encode_binary,
    encode_int,
    encode_map,
    encode_string,
)

EXAMPLES = 200
"""Hypothesis examples per test."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG_TEXT = st.builds(lambda c, n, tail: c * n + tail, st.characters(exclude_categories=["Cs"]),
                      st.integers(STRING_CHUNK - 2, STRING_CHUNK + 2), st.text(max_size=4))
"""Strings around the 32768-unit chunk boundary (an astral character is two units;
a lone surrogate is no text a Python caller could give)."""
TEXT = st.text(max_size=40) | LONG_TEXT
INT32 = st.integers(-2**31, 2**31 - 1)
ROUTING_KEYS = {"service", "version", "method", "dubbo"}


@settings(SETTINGS, max_examples=EXAMPLES // 2)  # half are 32 K characters long
@given(TEXT)
def test_strings_read_back_as_written(text):
    data = encode_string(text) + b"N"
    reader = Reader(data)
    assert reader.read_string() == text
    assert reader.pos == len(data) - 1
    skipper = Reader(data)
    skipper.skip()
    assert skipper.pos == len(data) - 1


@SETTINGS
@given(INT32, st.binary(max_size=70_000), st.dictionaries(st.text(max_size=12),
                                                         st.text(max_size=12), max_size=6))
def test_ints_binaries_and_maps_read_back_or_step_over(value, blob, mapping):
    reader = Reader(encode_int(value))
    assert reader.read_int() == value and reader.pos == reader.end
    data = encode_binary(blob) + encode_map(mapping) + encode_int(value)
    reader = Reader(data)
    reader.skip()
    assert reader.read_string_map() == mapping
    reader.skip()
    assert reader.pos == len(data)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from(["read_string", "read_string_or_null",
                                                  "read_int", "read_string_map", "skip"]))
def test_random_bytes_are_a_hessian_error_and_nothing_else(data, method):
    check_reader(data, method)


def check_reader(data: bytes, method: str) -> None:
    """``method`` of a Reader over ``data`` again and again: each call moves on or
    raises HessianError (also what bench/fuzz runs)."""
    reader = Reader(data)
    try:
        while reader.pos < reader.end:
            before = reader.pos
            getattr(reader, method)()
            assert reader.pos > before
    except HessianError:
        pass


NAME = st.text(max_size=20)
ATTACHMENTS = st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-.", min_size=1,
                                      max_size=10).filter(lambda k: k not in ROUTING_KEYS),
                              st.text(max_size=20), max_size=5)
ARGUMENTS = st.lists(st.one_of(
    st.tuples(st.just("Ljava/lang/String;"), st.text(max_size=20).map(encode_string)),
    st.tuples(st.just("I"), INT32.map(encode_int)),
    st.tuples(st.just("[B"), st.binary(max_size=40).map(encode_binary)),
    st.tuples(st.just("Ljava/util/Map;"), st.dictionaries(st.text(max_size=5),
                                                          st.text(max_size=5)).map(encode_map)),
), max_size=4)


@SETTINGS
@given(NAME, NAME, NAME, NAME, ARGUMENTS, ATTACHMENTS, st.integers(0, 2**63 - 1),
       st.booleans())
def test_requests_route_by_the_names_they_were_built_with(
        dubbo, path, version, method, arguments, attachments, request_id, two_way):
    descriptor = "".join(d for d, _ in arguments)
    body = request_body(dubbo, path, version, method, descriptor, [a for _, a in arguments],
                        attachments)
    flag = FLAG_REQUEST | (FLAG_TWO_WAY if two_way else 0) | 2
    buffer = bytearray(build_frame(flag, 0, request_id, body))
    frame = DubboCodec(max_body_size=1 << 20).decode(buffer)
    assert frame is not None and not buffer
    assert frame.kind is (FrameKind.REQUEST if two_way else FrameKind.ONEWAY)
    assert frame.request_id == request_id
    headers = dict(frame.headers)
    assert (headers.pop("dubbo"), headers.pop("service"), headers.pop("version"),
            headers.pop("method")) == (dubbo, path, version, method)
    assert headers.pop("interface") == attachments.get("interface", path)
    assert headers == {k: v for k, v in attachments.items() if k != "interface"}


def test_a_string_ending_in_a_multibyte_character_before_a_compact_int():
    """Found by the fuzzer: the string "\\x80" (bytes c2 80) followed by the int 0 (the
    byte 0x90) was read as a string running into the int, and a Dubbo request with
    such arguments was refused as BAD_REQUEST."""
    data = encode_string("\x80") + encode_int(0)
    reader = Reader(data)
    reader.skip()
    assert reader.read_int() == 0 and reader.pos == len(data)
    assert Reader(data).read_string() == "\x80"
    body = request_body("2.0.2", "com.acme.Echo", "", "echo", "Ljava/lang/String;I",
                        [encode_string("\x80"), encode_int(0)], {"group": "g"})
    frame = DubboCodec().decode(bytearray(build_frame(FLAG_REQUEST | FLAG_TWO_WAY | 2, 0, 1,
                                                      body)))
    assert frame.headers["service"] == "com.acme.Echo" and frame.headers["group"] == "g"
