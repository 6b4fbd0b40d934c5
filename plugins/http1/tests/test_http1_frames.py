"""Writing messages: heads, chunks, statuses."""

from __future__ import annotations

from mosn_http1 import frames, mapping


def test_chunk():
    assert frames.chunk(b"a" * 26, False) == b"1a\r\n" + b"a" * 26 + b"\r\n"
    assert frames.chunk(b"xy", True) == b"2\r\nxy\r\n0\r\n\r\n"
    assert frames.chunk(b"", True) == b"0\r\n\r\n"
    assert frames.chunk(b"", False) == b""


def test_head_values_keep_their_bytes():
    # Values are the wire's bytes as Latin-1 text: written back byte for byte.
    lines, _, _ = frames.field_lines([("x", "caf\xe9")])
    assert frames.head("HTTP/1.1 200 OK\r\n", lines) == b"HTTP/1.1 200 OK\r\nx: caf\xe9\r\n\r\n"


def test_head_value_outside_latin1_is_written_as_utf8():
    lines, _, _ = frames.field_lines([("x", "\u2713")])
    assert frames.head("HTTP/1.1 200 OK\r\n", lines).endswith(b"x: \xe2\x9c\x93\r\n\r\n")


def test_reason_with_a_line_break_is_flattened():
    assert frames.head("HTTP/1.1 200 a\r\nb\r\n", []) == b"HTTP/1.1 200 a  b\r\n\r\n"


def test_field_lines_report_length_and_connection():
    lines, has_length, connection = frames.field_lines(
        [("content-length", "1"), ("Connection", "x"), ("connection", "Keep-Alive, Upgrade")])
    assert has_length and connection == "keep-alive, upgrade"
    assert len(lines) == 3


def test_status_mapping_is_identity():
    assert mapping.http_status(503) == 503 and mapping.protocol_status(504) == 504
    assert mapping.reason_phrase(431) == "Request Header Fields Too Large"
    assert mapping.reason_phrase(799) == "Unknown"
