"""The Tars encoding (JCE), the part the codec needs: sans-IO reading and writing of
tagged fields.

Every field starts with a head byte: the tag in the high four bits and the type in
the low four; tag 15 means the real tag follows in the next byte. Integers are
big-endian and signed, written in the fewest bytes that hold them (``ZERO`` for 0).
Facts from the Tars protocol document (TarsDocs ``base/tars-protocol.md``) and the
reference implementations (TarsGo ``protocol/codec``, ``@tars/stream``).
"""

from __future__ import annotations

import enum
import struct


class Type(enum.IntEnum):
    INT1 = 0
    INT2 = 1
    INT4 = 2
    INT8 = 3
    FLOAT = 4
    DOUBLE = 5
    STRING1 = 6
    """A string after a one-byte length."""
    STRING4 = 7
    """A string after a four-byte length."""
    MAP = 8
    LIST = 9
    STRUCT_BEGIN = 10
    STRUCT_END = 11
    ZERO = 12
    """An integer 0, no value bytes."""
    SIMPLE_LIST = 13
    """``vector<byte>``: a head of type INT1, a length (an integer field), the bytes."""


MAX_NESTING = 32
"""Structs, lists and maps nested deeper than this are refused: a skip is recursive,
and no Tars request packet nests beyond a few levels."""

_INT_SIZES = {Type.INT1: 1, Type.INT2: 2, Type.INT4: 4, Type.INT8: 8}
_FIXED_SIZES = {**_INT_SIZES, Type.FLOAT: 4, Type.DOUBLE: 8, Type.ZERO: 0,
                Type.STRUCT_END: 0}
_SIGNED = {1: struct.Struct(">b"), 2: struct.Struct(">h"), 4: struct.Struct(">i"),
           8: struct.Struct(">q")}
_U32 = struct.Struct(">I")
_I32 = _SIGNED[4]


class JceError(ValueError):
    """Bytes that are not the Tars encoding expected."""


class Reader:
    """Reads fields from ``data[pos:end]``; every read checks the bounds."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0,
                 end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def _take(self, size: int) -> int:
        start = self.pos
        if size < 0 or start + size > self.end:
            raise JceError(f"field runs past the end ({size} bytes at {start} of {self.end})")
        self.pos = start + size
        return start

    def head(self) -> tuple[int, int]:
        """The next field's (tag, type)."""
        byte = self.data[self._take(1)]
        tag, kind = byte >> 4, byte & 0x0F
        if tag == 15:
            tag = self.data[self._take(1)]
        if kind > Type.SIMPLE_LIST:
            raise JceError(f"unknown type {kind} at tag {tag}")
        return tag, kind

    def int_value(self, kind: int) -> int:
        if kind == Type.ZERO:
            return 0
        size = _INT_SIZES.get(kind)
        if size is None:
            raise JceError(f"type {kind} where an integer was expected")
        return int(_SIGNED[size].unpack_from(self.data, self._take(size))[0])

    def read_int(self, tag: int) -> int:
        self.expect(tag)
        _, kind = self.head()
        return self.int_value(kind)

    def string_value(self, kind: int) -> str:
        if kind == Type.STRING1:
            size = self.data[self._take(1)]
        elif kind == Type.STRING4:
            size = _U32.unpack_from(self.data, self._take(4))[0]
        else:
            raise JceError(f"type {kind} where a string was expected")
        start = self._take(size)
        try:
            return bytes(self.data[start:start + size]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JceError(f"string is not UTF-8: {e}") from None

    def read_string(self, tag: int) -> str:
        self.expect(tag)
        _, kind = self.head()
        return self.string_value(kind)

    def read_bytes(self, tag: int) -> tuple[int, int]:
        """A ``vector<byte>`` at ``tag``: its (start, end) in the data, not copied."""
        self.expect(tag)
        _, kind = self.head()
        if kind == Type.SIMPLE_LIST:
            _, inner = self.head()
            if inner != Type.INT1:
                raise JceError(f"vector<byte> of element type {inner}")
            size = self._length()
            start = self._take(size)
            return start, start + size
        if kind == Type.LIST:  # some encoders write vector<byte> as a plain list
            start = self.pos
            self.skip_value(kind, 0)
            return start, self.pos
        raise JceError(f"type {kind} where vector<byte> was expected")

    def read_string_map(self, tag: int) -> dict[str, str]:
        self.expect(tag)
        _, kind = self.head()
        if kind != Type.MAP:
            raise JceError(f"type {kind} where map<string, string> was expected")
        out = {}
        for _ in range(self._length()):
            key = self.read_string(0)
            out[key] = self.read_string(1)
        return out

    def _length(self) -> int:
        _, kind = self.head()
        size = self.int_value(kind)
        if size < 0 or size > self.end - self.pos:
            raise JceError(f"length {size} is negative or runs past the end")
        return size

    def expect(self, tag: int) -> None:
        """Required fields come in tag order; peek that the next one is ``tag``."""
        if self.pos >= self.end:
            raise JceError(f"tag {tag} missing: the packet ends")
        byte = self.data[self.pos]
        found = byte >> 4
        if found == 15 and self.pos + 1 < self.end:
            found = self.data[self.pos + 1]
        if found != tag:
            raise JceError(f"tag {tag} expected, found tag {found}")

    def skip_value(self, kind: int, depth: int) -> None:
        if depth > MAX_NESTING:
            raise JceError(f"nested deeper than {MAX_NESTING}")
        fixed = _FIXED_SIZES.get(kind)
        if fixed is not None:
            self._take(fixed)
        elif kind in (Type.STRING1, Type.STRING4):
            size = self.data[self._take(1)] if kind == Type.STRING1 else \
                _U32.unpack_from(self.data, self._take(4))[0]
            self._take(size)
        elif kind == Type.MAP:
            for _ in range(self._length() * 2):
                self.skip_value(self.head()[1], depth + 1)
        elif kind == Type.LIST:
            for _ in range(self._length()):
                self.skip_value(self.head()[1], depth + 1)
        elif kind == Type.SIMPLE_LIST:
            self.head()
            self._take(self._length())
        elif kind == Type.STRUCT_BEGIN:
            while True:
                _, inner = self.head()
                if inner == Type.STRUCT_END:
                    return
                self.skip_value(inner, depth + 1)


# -- writing -------------------------------------------------------------------------------


def head(tag: int, kind: int) -> bytes:
    return bytes([(tag << 4) | kind]) if tag < 15 else bytes([0xF0 | kind, tag])


def int_field(tag: int, value: int) -> bytes:
    """An integer in the fewest bytes, as every Tars encoder writes it."""
    if value == 0:
        return head(tag, Type.ZERO)
    for size, kind in ((1, Type.INT1), (2, Type.INT2), (4, Type.INT4), (8, Type.INT8)):
        bound = 1 << (size * 8 - 1)
        if -bound <= value < bound:
            return head(tag, kind) + _SIGNED[size].pack(value)
    raise ValueError(f"integer {value} does not fit in 8 bytes")


def int4_field(tag: int, value: int) -> bytes:
    """An integer always in four bytes (a field mosn patches in place)."""
    return head(tag, Type.INT4) + _I32.pack(value)


def string_field(tag: int, value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) < 256:
        return head(tag, Type.STRING1) + bytes([len(raw)]) + raw
    return head(tag, Type.STRING4) + _U32.pack(len(raw)) + raw


def bytes_field(tag: int, value: bytes) -> bytes:
    return head(tag, Type.SIMPLE_LIST) + head(0, Type.INT1) + int_field(0, len(value)) + value


def string_map_field(tag: int, value: dict[str, str]) -> bytes:
    parts = [head(tag, Type.MAP), int_field(0, len(value))]
    for key, item in value.items():
        parts += [string_field(0, key), string_field(1, item)]
    return b"".join(parts)
