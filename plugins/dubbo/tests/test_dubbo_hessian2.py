"""The hessian2 reader: values as hessian.js writes them, the writer's output, and
bytes that are not hessian2."""

from __future__ import annotations

import json

import pytest

from mosn_dubbo.hessian2 import (
    MAX_DEPTH,
    HessianError,
    Reader,
    encode_binary,
    encode_int,
    encode_map,
    encode_string,
)
from dubbo_peers import DATA

VALUES = json.loads((DATA / "hessian_values.json").read_text())


@pytest.mark.parametrize("value", VALUES, ids=[v["name"] for v in VALUES])
def test_skip_steps_over_a_value_written_by_hessian_js(value: dict) -> None:
    data = bytes.fromhex(value["hex"]) + b"N"
    reader = Reader(data)
    reader.skip()
    assert reader.pos == len(data) - 1


@pytest.mark.parametrize("value", [v for v in VALUES if "text" in v], ids=lambda v: v["name"])
def test_read_string_written_by_hessian_js(value: dict) -> None:
    assert Reader(bytes.fromhex(value["hex"])).read_string() == value["text"]


@pytest.mark.parametrize("value", VALUES, ids=[v["name"] for v in VALUES])
def test_a_truncated_value_is_an_error(value: dict) -> None:
    data = bytes.fromhex(value["hex"])
    for cut in {0, 1, len(data) // 2, len(data) - 1} - {len(data)}:
        with pytest.raises(HessianError):
            Reader(data, 0, cut).skip()


@pytest.mark.parametrize("text", [
    "", "a", "x" * 31, "x" * 32, "x" * 1023, "x" * 1024, "é" * 40000, "😀" * 20000,
    "mixed ✓ 😀 \u0000 end"])
def test_string_round_trip(text: str) -> None:
    data = encode_string(text)
    reader = Reader(data)
    assert reader.read_string() == text
    assert reader.pos == len(data)
    skipper = Reader(data)
    skipper.skip()
    assert skipper.pos == len(data)


def test_an_astral_character_is_written_as_java_does() -> None:
    """Two UTF-16 units, each a 3-byte sequence (Java's modified UTF-8 for chars)."""
    assert encode_string("😀") == b"\x02" + "\ud83d\ude00".encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("value", [0, -16, 47, 48, -2048, 2047, -262144, 262143, 2**31 - 1, -2**31])
def test_int_round_trip(value: int) -> None:
    reader = Reader(encode_int(value))
    assert reader.read_int() == value


@pytest.mark.parametrize("size", [0, 15, 16, 1023, 1024, 65535, 65536, 200000])
def test_binary_is_skipped_whole(size: int) -> None:
    data = encode_binary(b"\x07" * size)
    reader = Reader(data)
    reader.skip()
    assert reader.pos == len(data)


def test_string_map_keeps_string_pairs() -> None:
    data = (b"H" + encode_string("a") + encode_string("1") + encode_int(2) + encode_string("x")
            + encode_string("b") + encode_int(3) + encode_string("c") + encode_string("3") + b"Z")
    assert Reader(data).read_string_map() == {"a": "1", "c": "3"}
    assert Reader(encode_map({"k": "v"})).read_string_map() == {"k": "v"}
    assert Reader(b"N").read_string_map() == {}
    assert Reader(b"M" + encode_string("java.util.HashMap") + encode_map({"k": "v"})[1:]
                  ).read_string_map() == {"k": "v"}


def test_a_string_that_is_not_utf8_is_an_error() -> None:
    with pytest.raises(HessianError):
        Reader(b"\x02\xff\xfe").read_string()


@pytest.mark.parametrize("tag", [0x40, 0x45, 0x47, 0x50, 0x5A])
def test_reserved_tags_are_errors(tag: int) -> None:
    with pytest.raises(HessianError):
        Reader(bytes([tag, 0, 0, 0, 0])).skip()


def test_an_object_of_an_undefined_class_is_an_error() -> None:
    with pytest.raises(HessianError):
        Reader(b"\x60").skip()


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    deep = b"\x79" * (MAX_DEPTH + 2) + b"N"
    with pytest.raises(HessianError):
        Reader(deep).skip()
    shallow = b"\x79" * (MAX_DEPTH - 1) + b"N"
    reader = Reader(shallow)
    reader.skip()
    assert reader.pos == len(shallow)


def test_a_huge_list_length_on_a_short_body_ends_in_an_error() -> None:
    with pytest.raises(HessianError):
        Reader(b"X" + b"I\x7f\xff\xff\xff" + b"NN").skip()
