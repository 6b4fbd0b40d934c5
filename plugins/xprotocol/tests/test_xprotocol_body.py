"""Declared protocols with routing keys inside the body, delimiter-ended frames, ASCII
decimal fields, and the bound on every routing value: what is read, what is refused,
and what no reply echoes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mosn.rpc import FrameError, FrameKind
from mosn_xprotocol import CodecConfig, DeclarativeCodec

BASE: dict[str, Any] = {
    "name": "t", "header_size": 12, "magic": {"text": "TT"},
    "kind": {"offset": 2, "request": 1, "response": 2},
    "status": {"offset": 3, "size": 1, "success": 0, "error": 1, "no_route": 2, "bad_frame": 6},
    "request_id": {"offset": 4, "size": 4},
    "length": {"offset": 8, "size": 4},
}


def declare(**changes: Any) -> DeclarativeCodec:
    return DeclarativeCodec(CodecConfig.model_validate({**BASE, **changes}))


def frame(kind: int, request_id: int, body: bytes, status: int = 0) -> bytes:
    return (b"TT" + bytes([kind, status]) + request_id.to_bytes(4, "big")
            + len(body).to_bytes(4, "big") + body)


LINES = declare(routing={"service": {"body": {"key": "service"}},
                         "method": {"body": {"key": "method"}}})
FIELDS = declare(routing={"service": {"body": {"field": 0, "delimiter": "|"}},
                          "method": {"body": {"field": 2, "delimiter": "|"}}})
OFFSETS = declare(routing={"tenant": {"body": {"offset": 0, "size": 2, "type": "uint"}},
                           "zone": {"body": {"offset": 2, "size": 2, "type": "hex"}},
                           "service": {"body": {"offset": 6, "length_prefix": 1},
                                       "max_size": 100}})


def headers(codec: DeclarativeCodec, body: bytes) -> dict[str, str]:
    return dict(codec.decode(bytearray(frame(1, 3, body))).headers)


# -- key=value lines ---------------------------------------------------------------------------


def test_key_lines_are_found_among_others_and_in_crlf() -> None:
    body = b"trace=1\r\nmethod=get\r\nservice=orders\r\n\r\npayload"
    assert headers(LINES, body) == {"service": "orders", "method": "get"}


def test_an_empty_line_ends_the_key_lines() -> None:
    assert headers(LINES, b"method=get\n\nservice=not-a-key-line") == {"method": "get"}


def test_a_key_is_matched_whole() -> None:
    assert headers(LINES, b"services=x\nservice=y\n\n") == {"service": "y"}


def test_a_last_line_may_end_the_body() -> None:
    assert headers(LINES, b"service=orders") == {"service": "orders"}


def test_a_line_past_the_search_limit_is_absent() -> None:
    codec = declare(routing={"service": {"body": {"key": "service", "search_limit": 16}}})
    assert headers(codec, b"x=0123456789abcdef\nservice=late\n\n") == {}
    assert headers(codec, b"x=1\nservice=early\n\n") == {"service": "early"}


def test_the_tools_write_key_lines_in_front_of_the_payload() -> None:
    data = LINES.request("orders", "get", b"payload")
    assert data[12:] == b"service=orders\nmethod=get\n\npayload"


# -- delimited fields --------------------------------------------------------------------------


def test_delimited_fields() -> None:
    assert headers(FIELDS, b"orders|v1|get|pay|load") == {"service": "orders", "method": "get"}
    assert headers(FIELDS, b"orders|v1|get") == {"service": "orders", "method": "get"}
    assert headers(FIELDS, b"orders") == {"service": "orders"}
    assert FIELDS.request("orders", "get", b"p|q")[12:] == b"orders||get|p|q"


# -- fields at offsets -------------------------------------------------------------------------


def test_fixed_and_length_prefixed_fields_of_the_body() -> None:
    body = (7).to_bytes(2, "big") + b"\xbe\xef" + b"\0\0" + b"\x06orders" + b"payload"
    assert headers(OFFSETS, body) == {"tenant": "7", "zone": "beef", "service": "orders"}


def test_a_field_past_the_end_of_the_body_is_a_bad_frame() -> None:
    with pytest.raises(FrameError, match="runs past the end of the body") as refused:
        OFFSETS.decode(bytearray(frame(1, 3, b"\0\x07\xbe\xef\0\0\x09orders")))
    reply = OFFSETS.decode(bytearray(refused.value.reply))
    assert (reply.kind, reply.request_id, reply.status) == (FrameKind.RESPONSE, 3, 6)


# -- the bound on routing values ---------------------------------------------------------------


@pytest.mark.parametrize("codec, body", [
    (LINES, b"service=" + b"x" * 257 + b"\n\n"),
    (LINES, b"service=" + b"x" * 1_000_000),
    (FIELDS, b"x" * 257 + b"|a|b"),
    (FIELDS, b"x" * 1_000_000),
    (OFFSETS, b"\0\0\0\0\0\0\xff" + b"x" * 255 + b"payload"),
], ids=["line", "unterminated-line", "field", "last-field", "sub-field"])
def test_a_value_over_its_max_size_is_a_bad_frame_echoing_nothing(codec, body) -> None:
    data = bytearray(frame(1, 9, body))
    with pytest.raises(FrameError, match=r"over its limit of \d+ \(routing\.service\.max_size\)") \
            as refused:
        codec.decode(data)
    assert len(data) == len(frame(1, 9, body))  # nothing taken
    reply = refused.value.reply
    assert len(reply) == 12  # the header alone
    assert codec.decode(bytearray(reply)).status == 6


def test_max_size_is_the_limit_exactly() -> None:
    codec = declare(routing={"service": {"body": {"key": "service"}, "max_size": 300}})
    assert headers(codec, b"service=" + b"x" * 300) == {"service": "x" * 300}
    with pytest.raises(FrameError, match="301 bytes, over its limit of 300"):
        codec.decode(bytearray(frame(1, 1, b"service=" + b"x" * 301)))


def test_a_string_after_the_header_is_bounded_too() -> None:
    """The 'whole body as the service' description: a long request is refused."""
    codec = declare(routing={"service": {"offset": 12, "length_field": {"offset": 8, "size": 4}}})
    with pytest.raises(FrameError, match="1000000 bytes, over its limit of 256") as refused:
        codec.decode(bytearray(frame(1, 5, b"x" * 1_000_000)))
    assert len(refused.value.reply) == 12


def test_error_replies_echo_only_keys_of_the_header() -> None:
    codec = declare(routing={"method": {"offset": 12, "length_prefix": 1},
                             "service": {"body": {"key": "service"}}})
    request = codec.decode(bytearray(codec.request("orders", "get", b"x" * 100_000)))
    assert dict(request.headers) == {"service": "orders", "method": "get"}
    reply = codec.error_reply(request, codec.error_status(404, ()), "no route")
    assert reply == b"TT\x02\x02" + bytes(4) + (4).to_bytes(4, "big") + b"\x03get"


def test_a_value_too_long_to_send_is_refused_when_building() -> None:
    with pytest.raises(ValueError, match="cannot build a request: routing key service"):
        LINES.request("x" * 257, "get", b"")


# -- delimited frames, ASCII digits, letters for kinds -------------------------------------------

TEXT = CodecConfig.model_validate({
    "name": "text", "header_size": 11, "header_template": {"text": "Q 0000 000 "},
    "kind": {"offset": 0, "request": "Q", "response": ["A", "E"]},
    "request_id": {"offset": 2, "digits": 4},
    "status": {"offset": 7, "digits": 3, "success": 200, "error": 500, "no_route": 404},
    "timeout": {"offset": 7, "digits": 3, "unit": "s"},
    "delimiter": {"text": "\r\n"},
    "routing": {"service": {"body": {"field": 0, "delimiter": " "}}},
    "max_frame_size": 64,
})


def test_a_text_protocol_round_trips() -> None:
    codec = DeclarativeCodec(TEXT)
    data = codec.request("orders", "", b"get 1")
    assert data == b"Q 0000 000 orders get 1\r\n"
    patched = bytearray(data)
    codec.set_request_id(patched, 9999)
    request = codec.decode(patched)
    assert (request.kind, request.request_id, dict(request.headers)) == (
        FrameKind.REQUEST, 9999, {"service": "orders"})
    assert codec.max_request_id == 9999
    reply = codec.response(request, b"ok")
    assert reply == b"A 9999 200 ok\r\n"
    assert codec.decode(bytearray(b"E 0001 404 \r\n")).status == 404


def test_a_caller_timeout_in_digits() -> None:
    codec = DeclarativeCodec(TEXT)
    assert codec.decode(bytearray(b"Q 0001 005 orders\r\n")).timeout == 5.0


def test_frames_in_one_buffer_end_at_each_delimiter() -> None:
    codec = DeclarativeCodec(TEXT)
    buffer = bytearray(b"Q 0001 000 a\r\nQ 0002 000 b\r\nQ 0003 00")
    assert [dict(codec.decode(buffer).headers)["service"] for _ in range(2)] == ["a", "b"]
    assert codec.decode(buffer) is None and buffer == b"Q 0003 00"


def test_no_delimiter_within_the_frame_limit_is_a_bad_frame() -> None:
    codec = DeclarativeCodec(TEXT)
    with pytest.raises(FrameError, match="no delimiter") as refused:
        codec.decode(bytearray(b"Q 0042 000 " + b"x" * 60))
    assert refused.value.reply == b"A 0042 500 \r\n"  # bad_frame defaults to error
    assert codec.decode(bytearray(b"Q 0042 000 " + b"x" * 40)) is None  # still coming


def test_an_id_that_is_not_digits_closes_without_a_reply() -> None:
    codec = DeclarativeCodec(TEXT)
    with pytest.raises(FrameError, match="is not 4 decimal digits") as refused:
        codec.decode(bytearray(b"Q 00x1 000 a\r\n"))
    assert refused.value.reply is None


def test_a_body_holding_the_delimiter_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="holds its delimiter"):
        DeclarativeCodec(TEXT).request("orders", "", b"a\r\nb")


# -- descriptions refused ----------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"length": None}, "set one of length"),
    ({"delimiter": {"text": "\n"}}, "set one of length"),
    ({"request_id": {"offset": 4, "size": 4, "digits": 4}}, "set one of size"),
    ({"request_id": {"offset": 4, "digits": 20}}, "less than or equal to 19"),
    ({"kind": {"offset": 2, "request": "QQ", "response": 2}}, "a number or one character"),
    ({"header_template": {"text": "short"}}, "header_template is 5 bytes, not header_size (12)"),
    ({"routing": {"service": {"body": {"key": "s"}}, "method": {"body": {"offset": 0,
                                                                          "size": 4}}}},
     "use one form"),
    ({"routing": {"service": {"body": {"key": "s"}}, "method": {"body": {"key": "m",
                                                                          "separator": ":"}}}},
     "share one offset, separator and line_end"),
    ({"routing": {"service": {"body": {"field": 0}}}}, "field and delimiter go together"),
    ({"routing": {"service": {"body": {"key": "s", "size": 4}}}}, "set one of size"),
    ({"routing": {"service": {"body": {"offset": 0, "size": 300}}}}, "over max_size 256"),
    ({"routing": {"service": {"offset": 12, "size": 4, "max_size": 5000}}},
     "less than or equal to 4096"),
    ({"routing": {"service": {"body": {"key": "s"}, "offset": 12}}}, "body: {...} alone"),
    ({"routing": {"a": {"body": {"offset": 0, "length_prefix": 1}},
                  "b": {"body": {"offset": 0, "size": 4}}}}, "starts after the fixed fields"),
    ({"routing": {"a": {"body": {"offset": 0, "size": 4}}, "b": {"body": {"offset": 2,
                                                                           "size": 4}}}},
     "overlap"),
    ({"routing": {"service": {"body": {"field": 0, "delimiter": "|",
                                       "search_limit": 100_000}}}}, "less than or equal to 65536"),
])
def test_bad_descriptions_are_refused(change: dict, message: str) -> None:
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ValidationError) as refused:
        CodecConfig.model_validate(data)
    assert message in str(refused.value)


def test_delimited_frames_have_no_length_fields() -> None:
    data = {**BASE, "delimiter": {"text": "\n"},
            "routing": {"service": {"offset": 12, "length_field": {"offset": 8, "size": 2}}}}
    del data["length"]
    with pytest.raises(ValidationError, match="delimited frames have no length fields"):
        CodecConfig.model_validate(data)


def test_a_connections_codec_searches_each_byte_once() -> None:
    """The proxy's codec of one connection resumes the search for the delimiter where
    the last read left it (a frame arriving a byte at a time costs one pass, not one
    per byte): bytes already searched are not searched again."""
    codec = DeclarativeCodec(TEXT).for_connection()
    buffer = bytearray(b"Q 0001 000 abc")
    assert codec.decode(buffer) is None
    buffer[11:13] = b"\r\n"  # were they searched again, the frame would end here
    buffer += b"d\r\n"
    frame = codec.decode(buffer)
    assert frame.data == b"Q 0001 000 \r\ncd\r\n"
    assert codec.decode(bytearray(b"Q 0002 000 e\r\n")).request_id == 2  # a new frame: anew
