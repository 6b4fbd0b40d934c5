"""HTTP/1.1 messages as bytes (RFC 9112): heads, chunks, trailers, the codec's own
error replies. Parsing is llhttp's (through httptools); this is the writing half.

Header values are ``str`` holding the wire's bytes as Latin-1 (the codecs decode
them so), so writing them back is ``encode("latin-1")``; a value outside Latin-1,
set by a filter, is written as UTF-8.
"""

from __future__ import annotations

from typing import Iterable

from mosn_http1.mapping import reason_phrase

CRLF = b"\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
_END_AND_LAST_CHUNK = b"\r\n0\r\n\r\n"

_STATUS_LINES: dict[int, str] = {}


def status_line(status: int, reason: str) -> str:
    if reason:
        return f"HTTP/1.1 {status} {reason}\r\n"
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
    return line


def field_lines(fields: Iterable[tuple[str, str]], skip: str = "",
                ) -> tuple[list[str], bool, str | None]:
    """The lines to write for ``fields``, whether ``content-length`` is among them,
    and the ``connection`` field's value (lower case). ``transfer-encoding`` is left
    out: the codec frames the body itself and adds its own."""
    lines = []
    has_length = False
    connection = None
    for name, value in fields:
        if name == "content-length":
            has_length = True
        elif name == "transfer-encoding" or name == skip:
            continue
        elif name == "connection":
            connection = value.lower()
        lines.append(f"{name}: {value}\r\n")
    return lines, has_length, connection


def head(first_line: str, lines: list[str]) -> bytes:
    """A head: its first line, its field lines, the empty line."""
    text = first_line + "".join(lines) + "\r\n"
    # A CR or LF inside a name or value would end the head early and let the rest
    # be read as another message (response splitting): such fields are dropped.
    if text.count("\n") != len(lines) + 2 or text.count("\r") != len(lines) + 2:
        text = _without_broken_lines(first_line, lines)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _without_broken_lines(first_line: str, lines: list[str]) -> str:
    def clean(line: str) -> bool:
        body = line[:-2]
        return "\r" not in body and "\n" not in body

    if not clean(first_line):
        first_line = first_line[:-2].replace("\r", " ").replace("\n", " ") + "\r\n"
    return first_line + "".join(line for line in lines if clean(line)) + "\r\n"


def chunk(data: bytes, end_stream: bool) -> bytes:
    """``data`` as one chunk; with ``end_stream`` the last chunk follows."""
    if not data:
        return LAST_CHUNK if end_stream else b""
    return b"".join((b"%x\r\n" % len(data), data, _END_AND_LAST_CHUNK if end_stream else CRLF))


def trailers(fields: Iterable[tuple[str, str]]) -> bytes:
    """The last chunk carrying a trailer section (RFC 9112 7.1.2)."""
    lines, _, _ = field_lines(fields)
    return head("0\r\n", lines)


def error_response(status: int) -> bytes:
    """The codec's own reply to a request it cannot read; the connection closes after."""
    return head(status_line(status, ""), ["content-length: 0\r\n", "connection: close\r\n"])
