"""The declarative codec under random declarations and random frames: a declaration
with any of its numbers changed is refused by the config model or makes a codec that
keeps the frame-codec contract on any bytes; requests made from random names and
bodies read back with those names."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mosn.testing import check_decode, decode_whole
from mosn_xprotocol import CodecConfig, DeclarativeCodec, LayoutError

from xprotocol_examples import PROTOCOLS, codec

EXAMPLES = 200
"""Hypothesis examples per test."""
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
DECLARATIONS = {name: yaml.safe_load(text) for name, text in PROTOCOLS.items()}


def _numbers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of the ints in a declaration (offsets, sizes, statuses, kinds ...)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, path + (i,))
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _set(value[path[0]], path[1:], new)
    return copy


@st.composite
def declarations(draw: Any) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(DECLARATIONS)))
    declared = DECLARATIONS[name]
    paths = list(_numbers(declared))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        declared = _set(declared, path, draw(st.integers(-2, 70) | st.sampled_from(
            [0xFF, 0x100, 0xFFFF, 2**32, 2**63, -2**31])))
    return name, declared


@SETTINGS
@given(declarations(), st.text(max_size=12), st.binary(max_size=32), st.binary(max_size=128),
       st.integers(0, 64))
def test_changed_declarations_are_refused_or_keep_the_contract(declared, service, body, junk,
                                                                keep):
    check_declaration(declared[1], service, body, junk, keep)


def check_declaration(data: Any, service: str, body: bytes, junk: bytes, keep: int) -> None:
    """A declaration refused, or a codec keeping the contract on a request it made
    followed by ``junk``, cut at ``keep``, and on ``junk`` (also what bench/fuzz runs)."""
    try:
        codec_ = DeclarativeCodec(CodecConfig.model_validate(data))
    except (ValidationError, LayoutError):
        return
    try:
        request = codec_.request(service, "m", body)
    except (ValueError, OverflowError):
        request = b""  # a name or body this layout cannot carry
    check_decode(codec_, request + junk)
    check_decode(codec_, request[:keep] + junk)
    check_decode(codec_, junk)


NAMES = st.text(alphabet=st.characters(codec="ascii", exclude_characters="\x00"), max_size=40)


@SETTINGS
@given(st.sampled_from(sorted(PROTOCOLS)), NAMES, NAMES, st.binary(max_size=200),
       st.integers(1, 2**31))
def test_requests_read_back_with_their_names(name, service, method, body, request_id):
    codec_ = codec(name)
    try:
        data = bytearray(codec_.request(service, method, body))
    except ValueError:
        return  # longer than the layout's length prefix can say
    codec_.set_request_id(data, min(request_id, codec_.max_request_id))
    frame = decode_whole(codec_, bytes(data))
    assert frame.request_id == min(request_id, codec_.max_request_id)
    assert frame.headers.get("service") == service
    if "method" in frame.headers:
        assert frame.headers["method"] == method


def test_a_routing_string_far_past_the_header_is_refused():
    """Found by the fuzzer: a string declared at offset 2**32 was accepted, and every
    frame built for the protocol (an error reply to a bad frame too) was padded with
    zeros up to it: gigabytes for one reply."""
    data = _set(DECLARATIONS["pingpong"], ("routing", "service", "offset"), 2**32)
    with pytest.raises(ValidationError, match=r"routing.service.offset: a string starts at "
                                              r"8192 at the latest"):
        CodecConfig.model_validate(data)
